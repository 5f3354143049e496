"""Who may read and who may write through a served dashboard (docs/review.md, "Threat
model").

What a reviewer's decision is worth (hours of judgment) and what it changes (the labels the
next run trains on) decide the rules, the same however the app is served (``relabscope
serve``, ``apps/wsgi.py`` under gunicorn or waitress, behind a reverse proxy):

- **Writes need a signed-in reviewer** (``--auth USER:PASS``, ``--auth-file`` of several,
  or ``RELABSCOPE_AUTH`` / ``RELABSCOPE_AUTH_FILE`` for ``apps/wsgi.py``), unless the server
  is bound to a loopback address and the request came straight to it: a request carrying a
  proxy header (``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``, ``Via``) may come from
  anyone the proxy serves, and a WSGI server's address is unknown here, so both count as
  shared. Each decision is recorded under the signed-in name.
- **A loopback server answers only loopback host names** (``localhost``, ``127.0.0.1``,
  ``[::1]`` and what the operator adds with ``--allow-host``): a page elsewhere that
  rebinds its own DNS name to 127.0.0.1 (DNS rebinding) gets 403, not the runs.
- **Only same-origin writes**: a POST whose ``Origin`` is another site's, or that the browser
  marks ``Sec-Fetch-Site: cross-site``, gets 403 (a page elsewhere cannot make a signed-in
  reviewer's browser decide).
- **No framing**: every response says ``X-Frame-Options: DENY`` and ``Content-Security-Policy:
  frame-ancestors 'none'``, so no page can overlay the review page and turn a click into a
  key press (one key drops a sample).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable

from flask import Flask, Response, current_app, g, request

from relabscope.dashboard.users import Users

#: headers a reverse proxy adds: their presence means the client is not this machine
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP", "Via")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
FRAMING = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff"}
_CONFIG = "RELABSCOPE_SECURITY"


def is_loopback(host: str | None) -> bool:
    """Whether a bind address (or a Host name) is this machine only."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Security:
    """How a dashboard is served: ``bound`` the address its server listens on (None: not
    known, a WSGI server's), ``users`` who may sign in (None: nobody has to), and the host
    names a loopback server accepts besides the loopback ones."""

    bound: str | None = None
    users: Users | None = None
    allowed_hosts: frozenset[str] = frozenset()

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bound)

    def write_refusal(self, headers: Any) -> str | None:
        """Why a request with ``headers`` may not write (one line), or None."""
        if self.users is not None:
            return None  # every request was signed in (``install``)
        if not self.loopback:
            where = f"reachable from other machines ({self.bound})" if self.bound else \
                "served by a WSGI server (its address is unknown here)"
            return (f"Read-only: this server is {where} without a password, so it takes no decisions (serve it "
                    "with --auth USER:PASS or --auth-file FILE, or on 127.0.0.1).")
        proxied = [h for h in PROXY_HEADERS if h in headers]
        if proxied:
            return (f"Read-only: this request came through a proxy ({proxied[0]}), so anyone the proxy serves could "
                    "send it; give the server a password (--auth USER:PASS or --auth-file FILE) to take decisions.")
        return None


def install(server: Flask, security: Security) -> None:
    """Put ``security``'s rules on every route of ``server`` (Dash's own included)."""
    server.config[_CONFIG] = security
    hosts = {*LOOPBACK_HOSTS, *(h.lower() for h in security.allowed_hosts)}

    @server.before_request
    def _guard() -> Response | None:
        if security.loopback and _host_name(request.host) not in hosts:
            return Response(f"relabscope: {request.host[:100]!r} is not a name of this server (a loopback "
                            "server answers localhost, 127.0.0.1 and [::1]; serve with --allow-host NAME to add "
                            "one)", 403)
        if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin():
            return Response("relabscope: a write from another site is refused", 403)
        g.relabscope_user = None
        if security.users is not None:
            given = request.authorization
            if given is None or given.type != "basic" or \
                    not security.users.verify(given.username or "", given.password or ""):
                return Response("authentication required", 401, {"WWW-Authenticate": 'Basic realm="relabscope"'})
            g.relabscope_user = given.username
        return None

    @server.after_request
    def _headers(response: Response) -> Response:
        response.headers.update(FRAMING)
        return response


def signed_in() -> str | None:
    """The reviewer signed in for this request (None: the server has no users)."""
    user: str | None = getattr(g, "relabscope_user", None)
    return user


def write_refusal() -> str | None:
    """Why this request may not write (one line), or None (inside a request)."""
    security = current_app.config.get(_CONFIG)
    if not isinstance(security, Security):
        return "Read-only: this server's write rule is unknown."
    return security.write_refusal(request.headers)


def _host_name(host: str) -> str:
    """A Host header without its port (``[::1]:8050`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:host.find("]")].lower() if "]" in host else host.lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _same_origin() -> bool:
    """Whether a writing request comes from this server's own pages: its ``Origin`` (when
    the browser sends one) names this host, and the browser does not mark it cross-site."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return False
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or a same-origin GET-like request: nothing to compare
        return True
    return any(hmac.compare_digest(origin.lower(), f"{scheme}://{request.host}".lower())
               for scheme in ("http", "https"))


def allowed_hosts(values: Iterable[str]) -> frozenset[str]:
    """``--allow-host`` values as host names (a port or brackets given with one dropped)."""
    return frozenset(_host_name(v.strip()) for v in values if v.strip())
