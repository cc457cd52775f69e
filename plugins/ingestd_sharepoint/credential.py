"""What a SharePoint source accepts as a credential, and how each is checked.

Two registry types work with Microsoft Graph app-only access:

- `azure_client_secret`: `tenant_id`, `client_id`, `client_secret`.
- `azure_certificate`: `tenant_id`, `client_id`, `certificate` (PEM text, or the path of
  a PEM file holding the certificate and, unless `private_key` is given, its key),
  optional `private_key` (PEM text or path), optional `password` for an encrypted key.

Azure ACS app-only credentials (AppRegNew client id + secret) stopped working for every
tenant on 2026-04-02; they are refused up front with the replacement named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import Credential

SECRET = "azure_client_secret"
CERTIFICATE = "azure_certificate"
ACCEPTED = (SECRET, CERTIFICATE)
ACS_TYPES = {"acs", "azure_acs", "sharepoint_acs", "sharepoint_app_only", "sharepoint_app", "sharepoint_client_secret"}
REQUIRED = {SECRET: ("tenant_id", "client_id", "client_secret"), CERTIFICATE: ("tenant_id", "client_id", "certificate")}
EXPIRY_WARNING_DAYS = 30
FIX = (
    "register an app in Microsoft Entra ID with the Microsoft Graph application permission Sites.Selected "
    "(granted read on this site), then use a credential of type azure_client_secret (tenant_id, client_id, "
    "client_secret) or azure_certificate (tenant_id, client_id, certificate)"
)


def is_acs(cred: Credential) -> bool:
    """ACS app-only credentials: an ACS type name, or the ACS realm/endpoint in a field."""
    if cred.type.lower() in ACS_TYPES:
        return True
    if "realm" in cred.fields:
        return True
    return any("accesscontrol.windows.net" in (cred.get(k) or "").lower() for k in cred.fields
               if k not in ("client_secret", "password", "certificate", "private_key"))


@dataclass(frozen=True)
class Problem:
    """One finding about a credential. A warning (a certificate close to expiry) is shown
    and logged but never stops a job; anything else makes the credential unusable."""

    credential: str
    text: str
    severity: str = "error"  # "error" | "warning"

    @property
    def fatal(self) -> bool:
        return self.severity != "warning"

    def __str__(self) -> str:
        """The line `check-config` prints (core tells warnings by their `warning:` word)."""
        mark = "" if self.fatal else "warning: "
        return f"credential {self.credential!r}: {mark}{self.text}"


def problems(cred: Credential, now: datetime | None = None) -> list[Problem]:
    """Everything wrong with `cred` for SharePoint, errors and warnings alike."""

    def error(text: str) -> list[Problem]:
        return [Problem(cred.name, text)]

    if is_acs(cred):
        return error(f"type {cred.type!r} is Azure ACS app-only auth, which Microsoft switched off on "
                     f"2026-04-02 and SharePoint no longer accepts; {FIX}")
    if cred.type not in ACCEPTED:
        return error(f"type {cred.type!r} does not work with SharePoint; use {SECRET} or {CERTIFICATE}")
    missing = [k for k in REQUIRED[cred.type] if not cred.get(k)]
    if missing:
        return error(f"missing {', '.join(missing)} (type {cred.type} needs {', '.join(REQUIRED[cred.type])})")
    if cred.type != CERTIFICATE:
        return []
    try:
        material = load_certificate(cred)
    except ConnectorError as exc:
        return error(exc.message)
    return expiry_notes(cred.name, material, now)


def expiry_notes(name: str, material: "CertificateMaterial", now: datetime | None = None) -> list[Problem]:
    now = now or datetime.now(timezone.utc)
    left = material.not_after - now
    if left.total_seconds() <= 0:
        return [Problem(name, f"certificate expired on {material.not_after:%Y-%m-%d}; upload a new one to the "
                              "Entra app and update the registry")]
    if left.days < EXPIRY_WARNING_DAYS:
        return [Problem(name, f"certificate expires on {material.not_after:%Y-%m-%d} ({left.days} days left); "
                              "upload a new one to the Entra app and update the registry before then",
                        severity="warning")]
    return []


def expiry(cred: Credential) -> datetime | None:
    """When the credential stops working, where that is known: a certificate's notAfter
    (None for a client secret, whose expiry only Entra knows, or an unreadable certificate)."""
    if cred.type != CERTIFICATE or is_acs(cred):
        return None
    try:
        return load_certificate(cred).not_after
    except ConnectorError:
        return None


def fingerprint(cred: Credential) -> str:
    """Changes whenever any field does: a rotated secret must replace the cached client."""
    fields = {k: cred.get(k) for k in sorted(cred.fields)}
    return hashlib.sha256(json.dumps([cred.type, fields]).encode()).hexdigest()


# -- certificates ---------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateMaterial:
    certificate_pem: str  # the leaf certificate only
    private_key_pem: str
    password: str | None
    not_after: datetime
    sha256_thumbprint: str

    def __repr__(self) -> str:
        return f"CertificateMaterial(thumbprint={self.sha256_thumbprint}, not_after={self.not_after:%Y-%m-%d})"


def _pem(cred: Credential, key: str) -> str | None:
    """A PEM field: the PEM text itself, or the path of a file holding it.

    Anything else (a key pasted without its `-----BEGIN` line) is refused without being
    quoted or made into a `Path`: it is a secret, and `Path()` would fold its `//` into a
    string no masking recognises.
    """
    value = cred.get(key)
    if not value:
        return None
    if "-----BEGIN" in value:
        return value
    if not _names_a_file(value):
        raise ConnectorError(Code.AUTH, f"{key}: neither PEM text (it must include its -----BEGIN line) nor the "
                                        "path of a PEM file; the value is not shown")
    path = Path(value).expanduser()
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConnectorError(Code.AUTH, f"{key}: file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectorError(Code.AUTH, f"{key}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _names_a_file(value: str) -> bool:
    """A path, written the way paths are: absolute, home- or dot-relative, one line. Key
    material in base64 starts with `MI` (DER) and never looks like this."""
    return value.startswith(("/", "~", "./", "../")) and "\n" not in value and "//" not in value and len(value) < 4096


def load_certificate(cred: Credential) -> CertificateMaterial:
    """Parse and cross-check the certificate and key, so a mismatch is reported here
    with its cause rather than as an opaque AADSTS error from the token endpoint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    cert_text = _pem(cred, "certificate") or ""
    key_text = _pem(cred, "private_key") or cert_text
    blocks = [b for b in cert_text.split("-----END CERTIFICATE-----") if "-----BEGIN CERTIFICATE-----" in b]
    if not blocks:
        raise ConnectorError(Code.AUTH, "certificate: no PEM certificate found (-----BEGIN CERTIFICATE-----)")
    leaf_pem = blocks[0][blocks[0].index("-----BEGIN CERTIFICATE-----"):] + "-----END CERTIFICATE-----\n"
    try:
        cert = x509.load_pem_x509_certificate(leaf_pem.encode())
    except ValueError:
        raise ConnectorError(Code.AUTH, "certificate: not a valid PEM certificate") from None
    key_pem = _key_block(key_text)
    password = cred.get("password")
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password.encode() if password else None)
    except TypeError:
        raise ConnectorError(Code.AUTH, "private key is encrypted: set password in the credential"
                             if not password else "private key is not encrypted: remove password") from None
    except ValueError:
        raise ConnectorError(Code.AUTH, "private key cannot be read (wrong password, or not a PEM key)") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != cert.public_key().public_bytes(encoding, public):
        raise ConnectorError(Code.AUTH, "private key does not belong to the certificate")
    return CertificateMaterial(
        certificate_pem=leaf_pem, private_key_pem=key_pem, password=password,
        not_after=cert.not_valid_after_utc, sha256_thumbprint=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _key_block(text: str) -> str:
    for kind in ("ENCRYPTED PRIVATE KEY", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"):
        begin, end = f"-----BEGIN {kind}-----", f"-----END {kind}-----"
        if begin in text and end in text:
            start = text.index(begin)
            return text[start:text.index(end, start) + len(end)] + "\n"
    raise ConnectorError(Code.AUTH, "no PEM private key found: put it in the certificate file or set private_key")
