"""A pause after a few console sign-in attempts, per client address and per key prefix.

Every sign-in attempt costs a database lookup of the key's hash. Keys are 256
random bits, so guessing one is hopeless; the throttle is about cost: a script
posting sign-ins would otherwise load the database and fill the log with
``console.sign_in_refused``. An attempt over the limit is refused before any
lookup. Two sets of buckets (:mod:`gateway.token_buckets`), taken in order:

* **per client address**: :data:`ADDRESS_BURST` attempts at once, then one
  every :data:`ADDRESS_INTERVAL` seconds. An IPv6 address counts by its /64,
  the block one host or site is usually given (RFC 6177 §3), so a host cannot
  take a fresh bucket for each of its addresses.
* **per key prefix** (the first :data:`~gateway.callers.KEY_PREFIX_LENGTH`
  characters, the part stored in clear beside the key's hash):
  :data:`KEY_BURST` attempts, then one every :data:`KEY_INTERVAL` seconds, so
  many addresses cannot take turns at one credential. The flip side: someone
  who knows a key's first characters can keep its holder's sign-in paused,
  one attempt per interval from each address they hold.

An attempt the address refuses takes nothing from the key's bucket. Buckets
live in the process (N replicas allow N times the rate) and hold digests of
the prefixes, never key material.

**The address** is the ASGI client host. uvicorn (``linkgate serve``) replaces
it with the last untrusted ``X-Forwarded-For`` entry only when the connection
comes from an address listed in uvicorn's ``FORWARDED_ALLOW_IPS`` environment
variable (default: the loopback addresses); from anywhere else the header is
ignored, since a client can write anything there. Behind a proxy that is not
listed, every sign-in arrives from the proxy's address and all share one
bucket: list the proxy (``FORWARDED_ALLOW_IPS=10.0.0.5``) so that each
browser counts on its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.callers import KEY_PREFIX_LENGTH
from gateway.token_buckets import DEFAULT_MAX_TRACKED, TokenBuckets

__all__ = [
    "ADDRESS_BURST",
    "ADDRESS_INTERVAL",
    "KEY_BURST",
    "KEY_INTERVAL",
    "SignInThrottle",
    "Throttled",
]

ADDRESS_BURST = 10
ADDRESS_INTERVAL = 6.0  # seconds: ten a minute from one address, after the burst
KEY_BURST = 5
KEY_INTERVAL = 30.0  # seconds: two a minute at one key prefix, after the burst

_IPV6_SITE = 64  # prefix length an IPv6 address is counted by


@dataclass(frozen=True, slots=True)
class Throttled:
    """An attempt refused: which limit, and whole seconds until the next is accepted."""

    limit: Literal["address", "key"]
    retry_after: int


def address_key(host: str | None) -> str:
    """What an address is counted by: IPv4 as is, IPv6 by its /64, anything else verbatim."""
    if not host:
        return ""  # no peer address (a Unix socket): all such attempts share one bucket
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, _IPV6_SITE), strict=False))
    return str(address)


class SignInThrottle:
    """Admits or refuses each sign-in attempt before its credential is looked up."""

    def __init__(
        self,
        *,
        address_burst: int = ADDRESS_BURST,
        address_interval: float = ADDRESS_INTERVAL,
        key_burst: int = KEY_BURST,
        key_interval: float = KEY_INTERVAL,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._addresses: TokenBuckets[str] = TokenBuckets(
            rate=1 / address_interval, burst=address_burst, max_tracked=max_tracked, clock=clock
        )
        self._keys: TokenBuckets[bytes] = TokenBuckets(
            rate=1 / key_interval, burst=key_burst, max_tracked=max_tracked, clock=clock
        )

    def attempt(self, host: str | None, credential: str) -> Throttled | None:
        """Count one attempt from ``host`` with ``credential``; None if it may be checked."""
        wait = self._addresses.take(address_key(host))
        if wait > 0:
            return Throttled("address", max(1, math.ceil(wait)))
        prefix = credential.strip()[:KEY_PREFIX_LENGTH]
        wait = self._keys.take(hashlib.sha256(prefix.encode()).digest())
        if wait > 0:
            return Throttled("key", max(1, math.ceil(wait)))
        return None
