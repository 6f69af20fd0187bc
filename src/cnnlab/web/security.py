"""Who may talk to the lab: the Host and Origin checks, the token, and the security headers of every response.

A browser is a confused deputy: any web page it shows may send requests to 127.0.0.1. Like Jupyter's
server, the lab therefore

* answers only requests whose Host names the lab (loopback names, plus what `--host`/`--allow-host`
  gave): a DNS-rebinding page reaches the lab under its own name, which is refused;
* refuses requests that carry a foreign Origin (a page elsewhere calling fetch() or posting a form),
  or that fetch metadata marks as cross-site and not a navigation (an <img> or <script> pointed here);
* when started with a token (always beyond loopback), wants it on every request: `?token=` once (then
  an HttpOnly, SameSite=Strict cookie), or an `Authorization: token <t>` header;
* sends a strict Content-Security-Policy and friends on every response.

All of this is one pure ASGI middleware, so it also covers static files, /files/ and error answers.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # listening on every interface

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),  # the token may be in the address bar
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
)


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the lab on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _normal(name: str) -> str:
    """A host name or IP address as compared: lower case, an IP address in its canonical form."""
    name = name.strip().lower()
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def split_host(value: str) -> str | None:
    """The host of a Host header ("name:port", "[v6]:port"), normalized; None when it is malformed."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdecimal()):
            return None
    elif value.count(":") > 1:
        return None  # an IPv6 address must come in brackets
    else:
        host, colon, port = value.partition(":")
        if colon and not port.isdecimal():
            return None
    return _normal(host) or None


@dataclass(frozen=True)
class HostPolicy:
    """The Host names the lab answers to: names, and IP networks (from a wildcard bind or --allow-host)."""

    names: frozenset[str]
    networks: tuple = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> HostPolicy:
        names, networks = set(), []
        for entry in entries:
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry, strict=False))
            else:
                names.add(_normal(entry))
        return cls(frozenset(names), tuple(networks))

    def allows(self, host: str) -> bool:
        if host in self.names:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address.version == net.version and address in net for net in self.networks)

    def describe(self) -> str:
        if any(net.prefixlen == 0 for net in self.networks):
            return ", ".join(sorted(self.names) + ["any IP address"])
        return ", ".join(sorted(self.names) + [f"addresses in {net}" for net in self.networks])


def hosts_for(bind: str, extra: Iterable[str] = ()) -> list[str]:
    """The Host names a lab listening on `bind` answers to: loopback names, the bound name itself, `extra`; a
    wildcard bind adds this machine's name and any IP address (an address cannot be rebound by DNS)."""
    import socket

    hosts = [*LOOPBACK_HOSTS, *extra]
    if bind in WILDCARD_HOSTS:
        hosts += [socket.gethostname(), "0.0.0.0/0", "::/0"]
    else:
        hosts.append(bind.strip("[]"))
    return hosts


def _same(token: str, presented: str | None) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and a request may send anything.
    return presented is not None and secrets.compare_digest(token.encode(), presented.encode("utf-8", "replace"))


class Guard:
    """ASGI middleware: refuse what fails the Host, Origin, fetch-metadata or token checks (403, one line),
    and add the security headers to every response that goes out."""

    def __init__(self, app, hosts: HostPolicy, token: str | None = None):
        self.app, self.hosts, self.token = app, hosts, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":  # the lab has none: refused before anything looks at it
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)  # lifespan
        request = HTTPConnection(scope)
        refusal, from_query = self._check(request)
        cookie = self._cookie(request) if from_query else None

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS if k.encode() not in present]
                if cookie:
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if refusal:
            return await _refuse(refusal, send_with_headers)
        await self.app(scope, receive, send_with_headers)

    def _check(self, request: HTTPConnection) -> tuple[str | None, bool]:
        """(why the request is refused, or None; whether it was let in by ?token=)."""
        host = split_host(request.headers.get("host", ""))
        if host is None or not self.hosts.allows(host):
            shown = (host or request.headers.get("host", ""))[:100]
            return (
                f"host {shown!r} is not a name this lab answers to ({self.hosts.describe()}); "
                "start cnnlab serve with --allow-host NAME to add one"
            ), False
        origin = request.headers.get("origin")
        if origin is not None and not self._own_origin(origin, request):
            return f"cross-origin request refused: {origin[:100]!r} is not this lab's origin", False
        if (
            request.headers.get("sec-fetch-site") in ("cross-site", "same-site")
            and request.headers.get("sec-fetch-mode") != "navigate"
        ):
            return "cross-site request refused: only the lab's own pages may call it", False
        if self.token is None:
            return None, False
        if _same(self.token, request.query_params.get("token")):
            return None, True
        if _same(self.token, request.cookies.get(self._cookie_name(request))) or _same(
            self.token, _authorization(request)
        ):
            return None, False
        return (
            "this lab wants its token: open the URL cnnlab serve printed (…/?token=…), "
            "or send the header 'Authorization: token <token>'"
        ), False

    @staticmethod
    def _own_origin(origin: str, request: HTTPConnection) -> bool:
        """Whether Origin is the lab itself: http(s) and exactly the host and port the request was sent to.
        Another port of the same host is another origin (and the same site, so SameSite cookies go there)."""
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and parts.netloc.lower() == request.headers.get("host", "").lower()

    @staticmethod
    def _cookie_name(request: HTTPConnection) -> str:
        # Cookies ignore ports: two labs on one host must not overwrite each other's.
        server = request.scope.get("server") or ("", "")
        return f"cnnlab-token-{server[1]}"

    def _cookie(self, request: HTTPConnection) -> str:
        return f"{self._cookie_name(request)}={self.token}; HttpOnly; SameSite=Strict; Path=/"


def _authorization(request: HTTPConnection) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("token", "bearer") else None


async def _refuse(reason: str, send) -> None:
    body = json.dumps({"detail": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
