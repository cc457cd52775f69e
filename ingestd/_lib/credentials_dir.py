"""systemd's `LoadCredential=` directory, named `${CREDENTIALS_DIRECTORY}` in a configured
path (the registry, the API token file, a registry `{"file": …}` value).

systemd sets the variable only inside the service, so a shell's `ingestd check-config`
meets a path it cannot resolve: the message says why and what to do instead.
"""

from __future__ import annotations

import os

PLACEHOLDER = "${CREDENTIALS_DIRECTORY}"
UNSET = (
    "${CREDENTIALS_DIRECTORY} is not set: systemd sets it only inside the service, for the files its "
    "LoadCredential= lines name; from a shell, check the config as the service sees it "
    "(`sudo systemctl reload ingestd`, then `journalctl -u ingestd`; docs/operations.md), or set "
    "CREDENTIALS_DIRECTORY to a folder holding copies of those files"
)


def expand(path: str) -> str:
    """`path` with the placeholder replaced; ValueError(UNSET) outside the service."""
    if PLACEHOLDER not in path:
        return path
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ValueError(UNSET)
    return path.replace(PLACEHOLDER, directory.rstrip("/"))
