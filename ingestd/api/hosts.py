"""Which `Host` headers the API answers: the defence against DNS rebinding.

A web page on evil.example can make its own name resolve to 127.0.0.1 and then script
requests to the daemon, which the browser treats as same-origin: only the Host header
still says `evil.example`. So a request is answered only when Host names a loopback
address, `localhost`, the listen address, or a name in `[http] allowed_hosts` ("*" turns
the check off). When the daemon listens on every address (0.0.0.0 or ::), any IP literal
passes too: a rebinding attack needs a name, and clients reaching the host by IP are
what such a listen address is for. A request without Host (HTTP/1.0) cannot come from a
browser and passes.
"""

from __future__ import annotations

import ipaddress
import re

_HOST = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]/@]+))(?::[0-9]{1,5})?")
WILDCARDS = ("0.0.0.0", "::")


class HostCheck:
    def __init__(self, listen_host: str, allowed: list[str] = ()):
        self.anything = "*" in allowed
        self.wildcard = listen_host in WILDCARDS
        self.names = {"localhost", *(_normal(a) for a in allowed if a != "*")}
        if not self.wildcard:
            self.names.add(_normal(listen_host))

    def allows(self, header: str | None) -> bool:
        if self.anything or header is None:
            return True
        match = _HOST.fullmatch(header.strip())
        if match is None:
            return False
        name = _normal(match.group(1) or match.group(2))
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or self.wildcard


def _normal(name: str) -> str:
    """Compare names as DNS does: case-insensitive, with or without the final dot."""
    return name.strip("[]").rstrip(".").lower()
