"""Building a source's boto3 client: its own Session, explicit retries and timeouts.

Clients are thread-safe and expensive to build (service model, connection pool), so a
source keeps one across jobs; it is rebuilt only when the credential behind it changes,
which the connector notices by comparing a keyed digest, never the secret values.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import boto3
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.credentials import CredentialProvider, RefreshableCredentials

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import Credential, __version__
from ingestd.plugin.kit import mask_secret

from . import credentials as cred_types
from .options import S3Options

ATTEMPTS = 5  # in total, the first included (botocore's "total_max_attempts")
DEFAULT_CUSTOM_REGION = "us-east-1"  # SigV4 needs some region; S3-compatible stores accept this one


def fingerprint(cred: Credential | None, salt: bytes) -> str:
    """A digest that changes when the credential does; useless to anyone without `salt`."""
    mac = hmac.new(salt, digestmod=hashlib.sha256)
    if cred is not None:
        mac.update(cred.type.encode())
        for key in sorted(cred.fields):
            mac.update(b"\0" + key.encode() + b"\0" + (cred.get(key) or "").encode("utf-8", "surrogatepass"))
    return mac.hexdigest()


def build(options: S3Options, cred: Credential | None, source_name: str):
    """The S3 client for a source; credentials are checked by the first request, not here
    (except an assumed role, whose STS call happens now)."""
    region = _region(options)
    session = _session(cred, region, source_name, options)
    client = session.client("s3", endpoint_url=options.endpoint_url, config=_config(options, region))
    remember_keys(client, source_name)
    return client


def remember_keys(client, source_name: str) -> None:
    """Keys from a profile, the default chain or STS never pass through the registry:
    mask them in messages too. Called at every job, so keys an instance role or STS
    refreshed since are masked as well (only the newest pair per source is kept)."""
    credentials = client._request_signer._credentials  # botocore keeps no public handle on them
    if credentials is None:
        return
    frozen = credentials.get_frozen_credentials()
    mask_secret(frozen.secret_key, slot=f"s3:{source_name}:secret_key")
    mask_secret(frozen.token, slot=f"s3:{source_name}:token")


def _region(options: S3Options) -> str | None:
    if options.region:
        return options.region
    return DEFAULT_CUSTOM_REGION if options.endpoint_url else None


def _config(options: S3Options, region: str | None) -> Config:
    settings = dict(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        max_pool_connections=options.concurrency + 2,
        s3={"addressing_style": options.addressing_style},
        user_agent_extra=f"ingestd/{__version__}",
        tcp_keepalive=True,
        # ingestd builds every request's parameters itself; validating them again cost
        # ~0.5 ms of CPU per GET, a quarter of the client's share on small objects
        parameter_validation=False,
    )
    if options.endpoint_url:
        # botocore >= 1.36 sends CRC checksums by default; many S3-compatible stores refuse them
        settings.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return Config(**settings)


def parse_timestamp(value):
    """botocore's timestamp parser, without dateutil on the common formats.

    botocore hands every timestamp to dateutil, which cost more than the rest of parsing
    a 1,000-key listing page put together. S3 sends ISO 8601 in listings and an HTTP
    date in headers; both have exact, fast parsers in the standard library.
    """
    if isinstance(value, str):
        try:
            if value[:4].isdigit():
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            else:
                parsed = parsedate_to_datetime(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        except (TypeError, ValueError, IndexError):
            pass
    return botocore.utils.parse_timestamp(value)


def _core_session(profile: str | None = None) -> botocore.session.Session:
    core = botocore.session.Session(profile=profile)
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return core


def _session(cred: Credential | None, region: str | None, source_name: str,
             options: S3Options) -> boto3.session.Session:
    if cred is None:
        return boto3.session.Session(botocore_session=_core_session(), region_name=region)
    problems = cred_types.problems(cred)
    if problems:
        raise ConnectorError(Code.CONFIG, problems[0])
    if cred.type == "aws":
        return boto3.session.Session(
            botocore_session=_core_session(),
            aws_access_key_id=cred.require("access_key_id"),
            aws_secret_access_key=cred.require("secret_access_key"),
            aws_session_token=cred.get("session_token"),
            region_name=region,
        )
    if cred.type == "aws_profile":
        return boto3.session.Session(botocore_session=_core_session(cred.require("profile")), region_name=region)
    return _assumed_role_session(cred, region, source_name, options)


def _assumed_role_session(cred: Credential, region: str | None, source_name: str,
                          options: S3Options) -> boto3.session.Session:
    """A session whose credentials come from STS AssumeRole and refresh before they expire.

    The base credentials for the STS call come from `source_profile` or the default chain.
    """
    base = boto3.session.Session(profile_name=cred.get("source_profile"), region_name=region)
    sts = base.client("sts", endpoint_url=cred.get("sts_endpoint_url"), config=Config(
        region_name=region or DEFAULT_CUSTOM_REGION, retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
        connect_timeout=options.connect_timeout, read_timeout=options.read_timeout,
    ))
    params = {"RoleArn": cred.require("role_arn"),
              "RoleSessionName": (cred.get("session_name") or f"ingestd-{source_name}")[:64]}
    if cred.get("external_id"):
        params["ExternalId"] = cred.get("external_id")

    def fetch() -> dict:
        issued = sts.assume_role(**params)["Credentials"]
        mask_secret(issued["SecretAccessKey"], slot=f"s3:{source_name}:secret_key")
        mask_secret(issued["SessionToken"], slot=f"s3:{source_name}:token")
        return {"access_key": issued["AccessKeyId"], "secret_key": issued["SecretAccessKey"],
                "token": issued["SessionToken"], "expiry_time": issued["Expiration"].isoformat()}

    core = _core_session()
    core.get_component("credential_provider").insert_before("env", _RoleProvider(fetch))
    return boto3.session.Session(botocore_session=core, region_name=region)


class _RoleProvider(CredentialProvider):
    """Put first in a botocore session's chain: credentials from AssumeRole, auto-refreshed."""

    METHOD = "ingestd-assume-role"
    CANONICAL_NAME = "ingestd-assume-role"

    def __init__(self, fetch):
        super().__init__()
        self._fetch = fetch

    def load(self):
        return RefreshableCredentials.create_from_metadata(
            metadata=self._fetch(), refresh_using=self._fetch, method=self.METHOD
        )
