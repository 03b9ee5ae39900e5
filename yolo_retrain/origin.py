"""Whether an HTTP request may come from a web page the operator visits rather than from a client of ours.

A page can POST a form to a loopback service (a "simple" request: no CORS preflight, so the service acts on it
even though the page cannot read the answer), and through DNS rebinding it can even read the answer. Browsers
say where a request comes from (``Origin``, ``Sec-Fetch-Site``); clients that are not browsers (curl, scripts,
Label Studio calling its ML backend) send neither header.
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers


def from_a_web_page(headers: Headers, loopback_only: bool) -> str | None:
    """Why the request may come from a web page of another origin, or None.

    An ``Origin`` must be the request's own (``http(s)://<Host>``, e.g. the /docs page); ``Sec-Fetch-Site`` must
    say same-origin or none; with ``loopback_only``, Host must name loopback too (DNS rebinding sends the
    attacker's host name, so the page's origin then looks like the request's own).
    """
    host = headers.get("host", "")
    if loopback_only and not is_loopback(_host_name(host)):
        return f"Host {host or '(none)'} is not loopback (a web page's DNS rebinding, or a proxy)"
    origin = headers.get("origin")
    if origin is not None and origin.lower() not in {f"http://{host}".lower(), f"https://{host}".lower()}:
        return f"cross-origin request from {origin} (a web page)"
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"{site} request (Sec-Fetch-Site: {site}: a web page)"
    return None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name may resolve to anything."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """The name or address of a Host header, without its port (``[::1]:8000`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
