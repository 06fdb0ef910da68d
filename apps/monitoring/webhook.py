"""Outgoing webhooks: one signed POST to a URL a lead typed in, without letting that URL reach the server's
own network.

The host is resolved once; unless private addresses are allowed, every address it resolves to must be
public (:func:`is_public`: global, not reserved, multicast, unspecified, loopback, link-local or private,
and for an IPv6 address that carries an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo)
the IPv4 address must be public too), and the connection goes to the address that was checked (so a DNS
answer that changes between the check and the connection, "DNS rebinding", cannot redirect it). A refusal
names the host as it was given, never the address it resolved to (the lead who reads it must not learn
the server's internal addresses). TLS still
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
    """The URL's host resolves to a non-public address and private addresses are not allowed. The message
    names the host as given, never the address it resolved to."""

    def __init__(self, host: str):
        super().__init__(f"the webhook's host {host!r} does not resolve to a public address")
        self.host = host


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the IPv4 address is the last 32 bits
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use translation: never public
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 (deprecated): ::a.b.c.d, and :: and ::1


def _public_ipv4(address: ipaddress.IPv4Address) -> bool:
    return address.is_global and not (address.is_private or address.is_reserved or address.is_multicast
                                      or address.is_unspecified or address.is_loopback or address.is_link_local)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped (::ffff:0:0/96), IPv4-compatible (::/96),
    NAT64 (64:ff9b::/96), 6to4 (2002::/16, the 32 bits after the prefix) and Teredo (2001::/32, its server
    and its client); empty for any other address."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _IPV4_COMPATIBLE or address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def is_public(address: str) -> bool:
    """Whether a webhook may connect to ``address``: a global unicast address (not private, reserved,
    multicast, unspecified, loopback, link-local or site-local), where every IPv4 address an IPv6 one
    carries (:func:`embedded_ipv4`) is public as well. An IPv4-mapped, IPv4-compatible or NAT64 address is
    only a wrapper of its IPv4 address, which decides; the local-use NAT64 prefix is never public."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_ipv4(ip)
    if ip in _NAT64_LOCAL:
        return False
    embedded = embedded_ipv4(ip)
    if ip.ipv4_mapped is not None or ip in _IPV4_COMPATIBLE or ip in _NAT64:
        return all(_public_ipv4(v4) for v4 in embedded)
    own = ip.is_global and not (ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified
                                or ip.is_loopback or ip.is_link_local or ip.is_site_local)
    return own and all(_public_ipv4(v4) for v4 in embedded)


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for ``host``: the first one ``getaddrinfo`` gives. Raises
    :class:`WebhookRefused` when any of them is not public (:func:`is_public`; unless ``allow_private``),
    and ``OSError`` when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise OSError(f"bad host name: {exc}") from exc
    addresses = [info[4][0].split("%")[0] for info in infos]
    if not addresses:
        raise OSError(f"{host} did not resolve")
    if not allow_private and not all(is_public(a) for a in addresses):
        raise WebhookRefused(host)
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
