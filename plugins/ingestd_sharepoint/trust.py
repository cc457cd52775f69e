"""The CA file every request of a SharePoint source is verified against.

`requests` replaces a session's `verify` with `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE` when
those are set in the environment (and MSAL's `verify=` is a session setting), so a
machine-wide variable could silently drop the CA a source was configured with. Every
request here therefore passes an explicit file: the system bundle, plus the source's
`ca_bundle` appended when set (extra CAs for a TLS-inspecting proxy, not a replacement).
"""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path

from ingestd.errors import Code, ConnectorError
from ingestd.plugin.kit import write_bytes

PEM_MARK = b"-----BEGIN CERTIFICATE-----"


def system_bundle() -> str:
    """The operating system's CA file (OpenSSL's compiled-in default), else certifi's.

    OpenSSL's *default* path is used rather than `SSL_CERT_FILE`, so the answer does not
    depend on the environment the daemon happens to start in.
    """
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.isfile(candidate):
            return candidate
    import certifi  # a dependency of requests

    return certifi.where()


def extra_problem(path: Path) -> str | None:
    """Why `path` cannot serve as `ca_bundle`, or None when it can."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if PEM_MARK not in data:
        return f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return None


def trust_file(extra: Path | None, state_dir: Path) -> str:
    """The path to pass as `verify=`: the system bundle alone, or a combined file.

    The combined file lives in the source's state directory and is rewritten only when
    its content would change.
    """
    base = system_bundle()
    if extra is None:
        return base
    problem = extra_problem(extra)
    if problem:
        raise ConnectorError(Code.CONFIG, f"ca_bundle: {problem}")
    data = Path(base).read_bytes().rstrip(b"\n") + b"\n" + extra.read_bytes()
    target = state_dir / "trust.pem"
    digest = hashlib.sha256(data).digest()
    try:
        current = hashlib.sha256(target.read_bytes()).digest()
    except FileNotFoundError:
        current = None
    if current != digest:
        write_bytes(target, data)
    return str(target)
