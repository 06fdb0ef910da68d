"""apps.monitoring.webhook: one POST to a lead's URL, to the address that was checked, without redirects."""
from __future__ import annotations

import base64
import json
import socket

import pytest

from apps.monitoring import webhook
from tests.apps.helpers import Receiver

BODY = json.dumps({"event": "looplab.drift.detected"}).encode()
HEADERS = {"Content-Type": "application/json", "X-Looplab-Event": "drift.detected"}


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver():
    r = Receiver(statuses=(204,))
    yield r
    r.close()


def _resolver(monkeypatch, answers: dict[str, list[list[str]]]):
    """Make getaddrinfo answer ``answers[host]`` in turn (the last one repeats); returns the calls made."""
    real, calls = socket.getaddrinfo, []

    def fake(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        calls.append(host)
        seq = answers[host]
        addresses = seq.pop(0) if len(seq) > 1 else seq[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return calls


def test_delivers_and_reports_the_status(receiver):
    assert webhook.post(receiver.url + "?v=2", BODY, HEADERS, timeout=5, allow_private=True) == ""
    (hit,) = receiver.got
    assert hit["path"] == "/hooks/drift?v=2" and hit["raw"] == BODY
    assert hit["headers"]["X-Looplab-Event"] == "drift.detected" and hit["headers"]["Content-Length"] == str(len(BODY))
    receiver.statuses = [500]
    assert webhook.post(receiver.url, BODY, HEADERS, timeout=5, allow_private=True) == "the receiver answered 500"


def test_refuses_private_addresses_before_connecting(receiver):
    with pytest.raises(webhook.WebhookRefused) as refused:
        webhook.post(receiver.url, BODY, HEADERS, timeout=5, allow_private=False)
    assert refused.value.host == "127.0.0.1" and receiver.got == []


def test_connects_to_the_checked_address_with_the_host_name(monkeypatch, receiver):
    calls = _resolver(monkeypatch, {"alerts.example.test": [["127.0.0.1"]]})
    url = f"http://alerts.example.test:{receiver.port}/hooks/drift"
    assert webhook.post(url, BODY, HEADERS, timeout=5, allow_private=True) == ""
    assert calls == ["alerts.example.test"]  # resolved once
    (hit,) = receiver.got
    assert hit["headers"]["Host"] == f"alerts.example.test:{receiver.port}"


def test_a_dns_answer_that_changes_after_the_check_is_not_followed(monkeypatch, receiver):
    # DNS rebinding: public when checked, loopback a moment later. The connection goes to the checked address.
    calls = _resolver(monkeypatch, {"rebind.example.test": [["93.184.216.34"], ["127.0.0.1"]]})
    connected = []

    def no_network(address, timeout=None, source_address=None):
        connected.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", no_network)
    url = f"http://rebind.example.test:{receiver.port}/hooks/drift"
    error = webhook.post(url, BODY, HEADERS, timeout=5, allow_private=False)
    assert error.startswith("ConnectionRefusedError")
    assert connected == [("93.184.216.34", receiver.port)] and calls == ["rebind.example.test"]
    assert receiver.got == []


def test_any_private_address_among_the_answers_is_refused(monkeypatch):
    _resolver(monkeypatch, {"mixed.example.test": [["93.184.216.34", "10.1.2.3"]]})
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("must not connect"))
    with pytest.raises(webhook.WebhookRefused) as refused:
        webhook.post("https://mixed.example.test/hook", BODY, HEADERS, timeout=5, allow_private=False)
    assert refused.value.host == "mixed.example.test" and "10.1.2.3" not in str(refused.value)
    for private in ("169.254.169.254", "::1", "fd00::1", "100.64.0.1"):
        _resolver(monkeypatch, {"p.example.test": [[private]]})
        with pytest.raises(webhook.WebhookRefused):
            webhook.resolve("p.example.test", 443, allow_private=False)


def test_redirects_are_not_followed():
    inner = Receiver(statuses=(204,))
    outer = Receiver(statuses=(302,), location=inner.url)
    try:
        error = webhook.post(outer.url, BODY, HEADERS, timeout=5, allow_private=True)
        assert error == "the receiver answered 302 (redirects are not followed)"
        assert len(outer.got) == 1 and inner.got == []
    finally:
        inner.close()
        outer.close()


def test_unresolvable_hosts_and_bad_urls_are_errors_not_exceptions(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert "Name or service not known" in webhook.post("http://nowhere.example.test/", BODY, HEADERS, timeout=5,
                                                       allow_private=False)
    assert webhook.post("ftp://example.com/x", BODY, HEADERS, timeout=5, allow_private=True).startswith("not an http")
    assert webhook.post("http://example.com:99999/", BODY, HEADERS, timeout=5, allow_private=True).startswith("bad port")


def test_https_verifies_the_certificate_against_the_host_name(monkeypatch, receiver):
    # a plain-HTTP server behind an https URL: the TLS handshake fails, and nothing is sent in clear
    _resolver(monkeypatch, {"tls.example.test": [["127.0.0.1"]]})
    error = webhook.post(f"https://tls.example.test:{receiver.port}/hooks/drift", BODY, HEADERS, timeout=5,
                         allow_private=True)
    assert error.startswith("SSL") and receiver.got == []


def test_an_egress_proxy_from_the_environment_is_used(monkeypatch, receiver):
    # http through a proxy: an absolute-URI request to the proxy; the host is still checked here first
    _resolver(monkeypatch, {"alerts.example.test": [["93.184.216.34"]], "inside.example.test": [["10.0.0.7"]]})
    monkeypatch.setenv("HTTP_PROXY", f"http://relay:s%40cret@127.0.0.1:{receiver.port}")
    assert webhook.post("http://alerts.example.test:8080/hooks/drift?x=1", BODY, HEADERS, timeout=5,
                        allow_private=False) == ""
    (hit,) = receiver.got
    assert hit["path"] == "http://alerts.example.test:8080/hooks/drift?x=1"
    assert hit["headers"]["Host"] == "alerts.example.test:8080"
    assert hit["headers"]["Proxy-Authorization"] == "Basic " + base64.b64encode(b"relay:s@cret").decode()
    with pytest.raises(webhook.WebhookRefused):  # a name that resolves inside is refused before the proxy
        webhook.post("http://inside.example.test/", BODY, HEADERS, timeout=5, allow_private=False)
    assert len(receiver.got) == 1
    # NO_PROXY: straight to the checked address
    monkeypatch.setenv("NO_PROXY", "direct.example.test")
    _resolver(monkeypatch, {"direct.example.test": [["127.0.0.1"]]})
    assert webhook.post(f"http://direct.example.test:{receiver.port}/d", BODY, HEADERS, timeout=5,
                        allow_private=True) == ""
    assert receiver.got[-1]["path"] == "/d"


def test_https_through_a_proxy_opens_a_tunnel(monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Proxy(BaseHTTPRequestHandler):
        def do_CONNECT(self):  # noqa: N802 (http.server's name)
            seen.append((self.path, self.headers.get("Proxy-Authorization")))
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _resolver(monkeypatch, {"alerts.example.test": [["93.184.216.34"]]})
        monkeypatch.setenv("HTTPS_PROXY", f"http://u:p@127.0.0.1:{server.server_port}")
        error = webhook.post("https://alerts.example.test/hooks/drift", BODY, HEADERS, timeout=5, allow_private=False)
        assert "Tunnel connection failed: 403" in error, error
        assert seen == [("alerts.example.test:443", "Basic " + base64.b64encode(b"u:p").decode())]
    finally:
        server.shutdown()
        server.server_close()


# Each of these reaches the server's own network (or is no unicast address at all) and must be refused.
INTERNAL = [
    "127.0.0.1", "10.0.0.7", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "240.0.0.1", "224.0.0.1", "255.255.255.255",
    "::1", "::", "fd00::1", "fe80::1", "fec0::1", "ff02::1", "2001:db8::1",
    "::7f00:1",  # IPv4-compatible ::127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible ::169.254.169.254
    "::ffff:127.0.0.1", "::ffff:10.0.0.1",  # IPv4-mapped
    "64:ff9b::7f00:1", "64:ff9b::a00:1",  # NAT64 of 127.0.0.1 and 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215), whatever it carries
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::1",  # 6to4 of 127.0.0.1, 169.254.169.254, 192.168.1.1
    "2001:0:7f00:1::1",  # Teredo with a loopback server
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1 (obfuscated)
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
          "64:ff9b::808:808", "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_in_any_encoding_are_refused(monkeypatch, address):
    _resolver(monkeypatch, {"inside.example.test": [[address]]})
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("must not connect"))
    assert not webhook.is_public(address)
    with pytest.raises(webhook.WebhookRefused) as refused:
        webhook.post("https://inside.example.test/hook", BODY, HEADERS, timeout=5, allow_private=False)
    # the lead who set the URL learns that it was refused, not where the name points inside
    assert str(refused.value) == "the webhook's host 'inside.example.test' does not resolve to a public address"
    assert address not in str(refused.value) and refused.value.host == "inside.example.test"


@pytest.mark.parametrize("literal", ["[::7f00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[::ffff:7f00:1]"])
def test_ipv6_literals_that_carry_loopback_are_refused(receiver, literal):
    # the URLs of the finding, with the address written in the URL: refused before any connection
    with pytest.raises(webhook.WebhookRefused):
        webhook.post(f"http://{literal}:{receiver.port}/hooks/drift", BODY, HEADERS, timeout=5, allow_private=False)
    assert receiver.got == []


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass_the_check(monkeypatch, address):
    _resolver(monkeypatch, {"public.example.test": [[address]]})
    assert webhook.is_public(address)
    assert webhook.resolve("public.example.test", 443, allow_private=False) == address


def test_embedded_ipv4_follows_each_encoding():
    import ipaddress

    v4 = ipaddress.IPv4Address
    cases = {"::ffff:7f00:1": [v4("127.0.0.1")], "::7f00:1": [v4("127.0.0.1")], "64:ff9b::a00:1": [v4("10.0.0.1")],
             "2002:7f00:1::": [v4("127.0.0.1")], "2001:0:4136:e378:8000:63bf:80ff:fffe": [v4("65.54.227.120"),
                                                                                          v4("127.0.0.1")],
             "2606:4700:4700::1111": []}
    for address, expected in cases.items():
        assert webhook.embedded_ipv4(ipaddress.IPv6Address(address)) == expected, address
