"""Outgoing webhooks: one signed POST to a URL a lead typed in, without letting that URL reach the server's
own network.

The host is resolved once; unless private addresses are allowed, every address it resolves to must be
public (``ipaddress.is_global``), and the connection goes to the address that was checked (so a DNS answer
that changes between the check and the connection, "DNS rebinding", cannot redirect it). TLS still
verifies the certificate against the host name, and the ``Host`` header carries the name. Redirects are
not followed: a 3xx answer is a failed delivery, since its target was never checked.

Behind an egress proxy (the standard ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` variables), the
request goes through it (CONNECT for https); the host is still checked here first, but the proxy resolves
it again, so pinning the address is then the proxy's job.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class WebhookRefused(Exception):
    """The URL's host resolves to a non-public address and private addresses are not allowed."""

    def __init__(self, address: str):
        super().__init__(address)
        self.address = address


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for ``host``: the first one ``getaddrinfo`` gives. Raises
    :class:`WebhookRefused` when any of them is loopback, private, link-local or otherwise not public
    (unless ``allow_private``), and ``OSError`` when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise OSError(f"bad host name: {exc}") from exc
    addresses = [info[4][0].split("%")[0] for info in infos]
    if not addresses:
        raise OSError(f"{host} did not resolve")
    if not allow_private:
        for a in addresses:
            if not ipaddress.ip_address(a).is_global:
                raise WebhookRefused(a)
    return addresses[0]


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> str:
    """POST ``body`` to ``url`` once. Returns "" when the receiver answered 2xx, else why not (a status, a
    redirect that was not followed, a connection or TLS error). Raises :class:`WebhookRefused` (see
    :func:`resolve`) before connecting anywhere."""
    import http.client
    import ssl

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {url[:200]}"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return f"bad port: {exc}"
    try:
        address = resolve(parts.hostname, port, allow_private=allow_private)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"

    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {**headers, "Content-Length": str(len(body))}
    proxy = _proxy_for(parts.scheme, parts.hostname)
    if proxy is not None:
        conn, path, headers = _through_proxy(proxy, parts, port, path, headers, timeout)
    else:
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)

        def connect_to_checked_address(addr, timeout=None, source_address=None):
            return socket.create_connection((address, addr[1]), timeout, source_address)

        conn._create_connection = connect_to_checked_address  # http.client's hook for opening the socket
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(65536)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    if 200 <= status < 300:
        return ""
    if 300 <= status < 400:
        return f"the receiver answered {status} (redirects are not followed)"
    return f"the receiver answered {status}"


def _proxy_for(scheme: str, host: str):
    """The egress proxy URL for ``scheme`` from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``), or None
    (none set, or ``NO_PROXY`` covers the host)."""
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme)
    if not proxy or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _through_proxy(proxy, parts, port: int, path: str, headers: dict, timeout: float):
    """(connection, request target, headers) for a request through an HTTP proxy: a CONNECT tunnel for
    https (TLS end to end, verified against the host name), an absolute-URI request for http."""
    import base64
    import http.client
    import ssl
    from urllib.parse import unquote

    auth = {}
    if proxy.username:
        pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        auth = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}
    proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(proxy.hostname, proxy_port, timeout=timeout,
                                           context=ssl.create_default_context())
        conn.set_tunnel(parts.hostname, port, headers=auth)
        return conn, path, headers
    conn = http.client.HTTPConnection(proxy.hostname, proxy_port, timeout=timeout)
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return conn, f"http://{host}:{port}{path}", {**headers, **auth, "Host": parts.netloc.rsplit("@", 1)[-1]}
