"""The client's address, as far as the reverse proxies in front of us can vouch for it.

django-axes locks sign-ins per (username, address). Behind a proxy every request reaches
gunicorn from the proxy, so ``REMOTE_ADDR`` is the same for everyone and the lock becomes per
username: anyone could lock an annotator out. ``STEPWISE_TRUSTED_PROXIES`` says how many proxies
sit in front of the app. Each appends the address it was connected from to X-Forwarded-For, so
with N proxies the N-th entry from the right was written by the outermost one and is the
client's address; entries further left came from the client and prove nothing.

Whenever that entry is not there to read (fewer than N entries: a request that bypassed the
proxies, or fewer proxies than configured) or is not an IP address, the answer is
``REMOTE_ADDR``: a client cannot choose it, and at worst the lock degrades to per username, as
with no proxy setting at all. An invalid entry is never returned (the database keeps addresses).

The count must be right and, with N > 0, the app's own port reachable only through the
proxies: with N larger than the real number of proxies, or a client connecting directly, the
entry read is one the client wrote.
"""

import ipaddress
import re

from django.conf import settings
from django.http import HttpRequest

# One X-Forwarded-For entry: "[v6]" or "[v6]:port", "v4:port", or a bare address (a bare IPv6
# address has two or more colons, so it never looks like "v4:port").
ENTRY = re.compile(
    r"""\[ (?P<bracketed>[^]]*) \] (?::[0-9]{1,5})?
    | (?P<with_port>[^:]*) :[0-9]{1,5}
    | (?P<bare>.*)""",
    re.VERBOSE,
)


def client_ip(request: HttpRequest) -> str | None:
    """The address the outermost trusted proxy saw; ``REMOTE_ADDR`` with none configured."""
    remote_addr: str | None = request.META.get("REMOTE_ADDR") or None
    proxies: int = settings.STEPWISE_TRUSTED_PROXIES
    if proxies == 0:
        return remote_addr
    # Repeated headers arrive joined by commas; empty items are kept so they cannot shift a
    # client-written entry into the proxies' part of the list.
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if len(forwarded) < proxies:
        return remote_addr
    return address_parse(forwarded[-proxies]) or remote_addr


def address_parse(entry: str) -> str | None:
    """``"1.2.3.4"``, ``"1.2.3.4:5678"``, ``"[::1]:80"``, ``"::1"`` → the address, normalised.

    None for anything that is not an IP address (``"unknown"``, a hostname, an empty entry).
    """
    match = ENTRY.fullmatch(entry.strip())  # always matches: the last branch takes anything
    host = next((group for group in match.groups() if group is not None), "") if match else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # A dual-stack proxy reports IPv4 clients as ::ffff:a.b.c.d: count them as a.b.c.d.
        # A zone (fe80::1%eth0) names the proxy's interface, not the client; the database's
        # address column has no room for it.
        address = address.ipv4_mapped or ipaddress.IPv6Address(int(address))
    return str(address)
