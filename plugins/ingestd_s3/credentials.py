"""Which registry credential types an s3 source accepts, and what each must hold.

Pure data and checks (no boto3), so `check-config` can name the fix for a wrong type
or a misspelt field before any job runs.
"""

from __future__ import annotations

from ingestd.plugin import Credential

# type -> (required fields, optional fields)
TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aws": (("access_key_id", "secret_access_key"), ("session_token",)),
    "aws_profile": (("profile",), ()),
    "aws_assume_role": (("role_arn",), ("external_id", "session_name", "source_profile", "sts_endpoint_url")),
}


def usage() -> str:
    parts = []
    for name, (required, optional) in TYPES.items():
        fields = ", ".join([*required, *(f"{o}?" for o in optional)])
        parts.append(f'"{name}" ({fields})')
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def problems(cred: Credential) -> list[str]:
    """What is wrong with `cred` for S3, each message naming the fix; empty when usable."""
    if cred.type not in TYPES:
        return [f'credential "{cred.name}" has type "{cred.type}", which an s3 source cannot use; '
                f'give it "type": {usage()}']
    required, optional = TYPES[cred.type]
    out = [f'credential "{cred.name}" (type "{cred.type}") lacks "{field}"; add it to the registry'
           for field in required if not cred.get(field)]
    for field in sorted(set(cred.fields) - set(required) - set(optional)):
        allowed = ", ".join([*required, *optional])
        out.append(f'credential "{cred.name}" (type "{cred.type}") has unknown field "{field}" (allowed: {allowed})')
    return out
