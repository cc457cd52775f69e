"""Loading `ingestd.toml`: parse → validate core tables → validate each source with its
connector's option model, collecting every problem before reporting any.

Errors come out one per line as `FILE: KEY.PATH: message`, which is what an operator
reading journal output after a failed start needs to fix the file in one pass.
"""

from __future__ import annotations

import difflib
import json
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ingestd._lib import credentials_dir
from ingestd.errors import ConfigError

DEFAULT_PATH = Path("/etc/ingestd/ingestd.toml")
SOURCE_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        value = Path(os.path.normpath(Path(base) / value))
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A path option: relative values resolve against the config file's directory."""


def _expand_credentials_dir(value: Any) -> Any:
    return credentials_dir.expand(value) if isinstance(value, str) else value


SecretPath = Annotated[Path, BeforeValidator(_expand_credentials_dir), AfterValidator(_resolve_path)]
"""A path to a file holding a secret: may start with `${CREDENTIALS_DIRECTORY}`, so a
file given to the service with systemd's `LoadCredential=` can be named."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: str | int | float) -> float:
    """`"30s"`, `"5m"`, `"1h"`, `"1d"` or plain seconds."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("expected a duration like '30s', '5m', '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '5m', '1h', '1d'")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A duration option: `"30s"`, `"5m"`, `"1h"` or a number of seconds."""


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable. Their
    validators are built when first used (`defer_build`): every connector's options
    model is defined when its plugin loads, and a command builds only those its config
    names."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class DaemonConfig(Strict):
    state_dir: ConfigPath = Path("/var/lib/ingestd")
    workers: int = Field(default=2, ge=1, le=64)
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: float = Field(default=30.0, gt=0, le=3600)
    workspace_retention: Duration = 7 * 86400.0
    originals_retention: Duration = 0.0  # 0: processed originals are kept for ever
    job_retention: Duration = 0.0  # 0: job records are kept for ever
    change_retention: Duration = 0.0  # 0: the change feed keeps every change
    # what a file being stored must leave free on the state disk (the larger of the two)
    min_free_bytes: int = Field(default=64 << 20, ge=0)
    min_free_percent: float = Field(default=0.0, ge=0, le=50)


class HttpConfig(Strict):
    enabled: bool = True
    listen: str = Field(default="127.0.0.1:8765", pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$")
    token_file: SecretPath | None = None
    max_requests_per_second: float = Field(default=200.0, ge=0)
    max_connections_per_client: int = Field(default=32, ge=1, le=256)  # of 256: one address's share
    # names besides loopback ones and the listen address that clients may put in Host
    # (the DNS-rebinding guard, ingestd/api/hosts.py); "*" accepts any
    allowed_hosts: list[Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9.:-]{1,253})$")]] = []

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @model_validator(mode="after")
    def _public_needs_token(self):
        """Anyone who can reach a non-loopback port could trigger jobs and read records:
        refuse that without a token, here, so `check-config` and startup both say so."""
        if not self.enabled:
            return self
        if self.port > 65535:
            raise ValueError(f"listen: port {self.port} is out of range (0-65535)")
        if self.token_file is None and not is_loopback(self.host):
            raise ValueError(
                f"listen address {self.listen!r} is not loopback, so the API needs a token: set "
                "http.token_file to a file holding one (e.g. `openssl rand -hex 32 > /etc/ingestd/http-token`), "
                "or listen on 127.0.0.1"
            )
        return self

    @field_validator("token_file")
    @classmethod
    def _token_readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("enabled", True):
            from ingestd._lib.token_file import read_token

            try:
                read_token(value)  # ValueError names the file and the fix
            except PermissionError:
                pass  # another user's `ingestd status`: the daemon checks it again at start
        return value


def is_loopback(host: str) -> bool:
    """Only literal loopback addresses and `localhost` count: any other name may resolve anywhere."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CredentialsConfig(Strict):
    registry: SecretPath | None = None


INSTANCE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


def _host_name() -> str:
    """The default instance id: the host name up to its first dot, as an instance id."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0])[:63].lstrip("._-")
    return name or "ingestd"


class ClusterConfig(Strict):
    """`[cluster]`: several instances sharing PostgreSQL and S3-compatible storage
    (docs/cluster.md). Absent, ingestd runs embedded: SQLite and files in `state_dir`."""

    database_url: str = Field(min_length=1, max_length=4096)  # a libpq URL or key=value string
    database_credentials: str | None = None  # a registry entry (type "postgres") with the password
    blob_store: str  # s3://BUCKET[/PREFIX]
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    region: str | None = None
    credentials: str | None = None  # a registry entry for the blob store, as for S3 sources
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    conditional_writes: Literal["auto", "on", "off"] = "auto"  # If-None-Match: * (auto: probe)
    instance_id: str = Field(default_factory=_host_name, pattern=INSTANCE_ID)
    lease_ttl: Duration = Field(default=30.0, ge=2.0, le=3600.0)

    @field_validator("database_url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        """ingestd.toml is meant to be readable by anyone who may read the config; the
        password goes to the registry, where secrets live (and are masked)."""
        if _has_password(value):
            raise ValueError("holds a password; put it in the credential registry (an entry of type "
                             '"postgres" with a "password") and name that entry in cluster.database_credentials')
        return value

    @field_validator("blob_store")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        if not _BLOB_STORE.match(value):
            raise ValueError("expected s3://BUCKET or s3://BUCKET/PREFIX (a bucket name of 3-63 lower-case "
                             "letters, digits, '.' and '-'; a prefix without control characters)")
        return value

    @property
    def bucket(self) -> str:
        return self.blob_store.removeprefix("s3://").partition("/")[0]

    @property
    def prefix(self) -> str:
        return self.blob_store.removeprefix("s3://").partition("/")[2].strip("/")


_BLOB_STORE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\x00-\x1f\x7f]{0,512})?$")


def _has_password(dsn: str) -> bool:
    if re.match(r"^postgres(ql)?://", dsn):
        parts = urlsplit(dsn)
        return bool(parts.password) or "password" in parse_qs(parts.query)
    return re.search(r"(^|\s)password\s*=", dsn) is not None


class ExtractConfig(Strict):
    """`[extract]`: text extraction (docs/extraction.md). It runs in `workers` child
    processes at a lower priority than ingestion, each file within `timeout` and
    `memory_mib` of address space; `max_chars` caps a text, and files over
    `max_file_size` are recorded `too_large` without being opened."""

    enabled: bool = True
    workers: int = Field(default=1, ge=1, le=32)
    timeout: Duration = Field(default=60.0, gt=0, le=3600)
    memory_mib: int = Field(default=1024, ge=256, le=65536)
    max_chars: int = Field(default=20_000_000, ge=1000)
    max_file_size: int = Field(default=256 << 20, ge=1)


MimePattern = Annotated[str, StringConstraints(pattern=r"^[a-z0-9*][a-z0-9.+*_-]*/[a-z0-9*][a-z0-9.+*_-]*$")]


class SourceExtract(Strict):
    """A source's own extraction keys: `extract` (default: on when an extractor is
    installed), `extract_mime` (only these MIME types; `*` globs, e.g. `text/*`) and
    `extract_skip_mime` (never these)."""

    extract: bool | None = None
    extract_mime: list[MimePattern] = []
    extract_skip_mime: list[MimePattern] = []


class _Top(Strict):
    daemon: DaemonConfig = DaemonConfig()
    http: HttpConfig = HttpConfig()
    credentials: CredentialsConfig = CredentialsConfig()
    extract: ExtractConfig = ExtractConfig()
    cluster: ClusterConfig | None = None
    sources: list[dict[str, Any]] = []
    sinks: list[dict[str, Any]] = []


class _SourceHead(SourceExtract):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=SOURCE_NAME)
    kind: str
    enabled: bool = True
    node: str | None = Field(default=None, pattern=INSTANCE_ID)


CORE_KEYS = ("name", "kind", "enabled", "node", *SourceExtract.model_fields)  # every source's; the rest are its connector's


class Source(BaseModel):
    """One configured source: the keys every source has, plus its connector's options.
    `node`, in cluster mode, is the instance that runs it (a drop folder is on one host)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    name: str
    kind: str
    enabled: bool
    options: Any
    extract: SourceExtract = SourceExtract()
    node: str | None = None


class _SinkHead(Strict):
    """The keys every `[[sinks]]` table has; the rest are its kind's options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=SOURCE_NAME)
    kind: str
    enabled: bool = True
    sources: list[Annotated[str, StringConstraints(pattern=SOURCE_NAME)]] | None = None
    batch_max: int = Field(default=100, ge=1, le=10_000)
    retry_max: Duration = Field(default=60.0, gt=0, le=86400)  # the longest wait between two attempts


SINK_KEYS = tuple(_SinkHead.model_fields)


class SinkConfig(BaseModel):
    """One configured sink: the keys every sink has, plus its kind's options."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    name: str
    kind: str
    enabled: bool
    sources: tuple[str, ...] | None  # None: every source
    batch_max: int
    retry_max: float
    options: Any


class Config(BaseModel):
    model_config = ConfigDict(frozen=True)
    path: Path | None  # the file it was read from (None when parsed from data)
    daemon: DaemonConfig
    http: HttpConfig
    credentials: CredentialsConfig
    extract: ExtractConfig = ExtractConfig()
    sources: tuple[Source, ...]
    sinks: tuple[SinkConfig, ...] = ()
    cluster: ClusterConfig | None = None

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)

    def sink(self, name: str) -> SinkConfig | None:
        return next((s for s in self.sinks if s.name == name), None)


def locate(explicit: str | os.PathLike[str] | None) -> Path:
    """`--config`, else `$INGESTD_CONFIG`, else the system path."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("INGESTD_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def load(path: Path, option_models: Mapping[str, type[BaseModel]],
         sink_models: Mapping[str, type[BaseModel]] | None = None) -> Config:
    """Read and validate `path`; raise ConfigError listing every problem."""
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{label}: file not found (pass --config or set INGESTD_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error(label, exc)) from None
    return parse(data, option_models, base_dir=path.resolve().parent, label=label, path=path,
                 sink_models=sink_models)


def parse(
    data: dict[str, Any],
    option_models: Mapping[str, type[BaseModel]],
    *,
    base_dir: Path,
    label: str = "<config>",
    path: Path | None = None,
    sink_models: Mapping[str, type[BaseModel]] | None = None,
) -> Config:
    context = {"base_dir": base_dir}
    errors: list[str] = []
    try:
        top = _Top.model_validate(data, context=context)
    except ValidationError as exc:
        errors.extend(_format(label, exc, _Top))
        top = None
    raw_sources = data.get("sources", []) if isinstance(data, dict) else []
    sources = _sources(raw_sources, option_models, context, label, errors) if isinstance(raw_sources, list) else []
    raw_sinks = data.get("sinks", []) if isinstance(data, dict) else []
    known = {item["name"] for item in raw_sources if isinstance(item, dict) and isinstance(item.get("name"), str)} \
        if isinstance(raw_sources, list) else set()
    sinks = _sinks(raw_sinks, sink_models or {}, known, context, label, errors) if isinstance(raw_sinks, list) else []
    if errors or top is None:
        raise ConfigError(errors)
    return Config(
        path=path, daemon=top.daemon, http=top.http, credentials=top.credentials, extract=top.extract,
        sources=tuple(sources), sinks=tuple(sinks), cluster=top.cluster,
    )


def _sources(raw, option_models, context, label, errors) -> list[Source]:
    return [Source(name=head.name, kind=head.kind, enabled=head.enabled, options=options,
                   extract=SourceExtract(**{k: getattr(head, k) for k in SourceExtract.model_fields}), node=head.node)
            for _, head, options in _tables(raw, "sources", _SourceHead, CORE_KEYS, option_models, "connector",
                                            context, label, errors)]


def _sinks(raw, sink_models, known_sources, context, label, errors) -> list[SinkConfig]:
    sinks: list[SinkConfig] = []
    for where, head, options in _tables(raw, "sinks", _SinkHead, SINK_KEYS, sink_models, "sink kind", context,
                                        label, errors):
        unknown = [s for s in head.sources or () if s not in known_sources]
        for source in unknown:
            errors.append(f"{label}: {where}: sources: no source named {source!r} "
                          f"(configured: {', '.join(sorted(known_sources)) or 'none'})")
        if not unknown:
            sinks.append(SinkConfig(name=head.name, kind=head.kind, enabled=head.enabled,
                                    sources=tuple(head.sources) if head.sources is not None else None,
                                    batch_max=head.batch_max, retry_max=head.retry_max, options=options))
    return sinks


def _tables(raw, table, head_model, keys, models, what, context, label, errors):
    """Each valid `[[table]]` as (where, head, options): the keys every table has are
    checked by `head_model`, the rest by the model of its kind; every problem found is
    added to `errors`, one line each, and that table is left out."""
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            continue  # already reported by _Top
        name = item.get("name")
        where = f"{table}[{index}]" + (f" {_quoted(name)}" if isinstance(name, str) else "")
        try:
            head = head_model.model_validate(item)
        except ValidationError as exc:
            errors.extend(_format(label, exc, head_model, prefix=where, only=keys))
            continue
        if head.name in seen:
            noun = table.rstrip("s")
            errors.append(f"{label}: {where}: name: duplicate {noun} name; every {noun} needs its own")
        seen.add(head.name)
        model = models.get(head.kind)
        if model is None:
            known = ", ".join(sorted(models)) or "none installed"
            errors.append(f"{label}: {where}: kind: unknown {what} {head.kind!r} (available: {known})")
            continue
        options = {k: v for k, v in item.items() if k not in keys}
        try:
            parsed = model.model_validate(options, context=context)
        except ValidationError as exc:
            errors.extend(_format(label, exc, model, prefix=where, keys=keys))
            continue
        except Exception as exc:  # a plugin's validator raising what pydantic does not wrap
            errors.append(f"{label}: {where}: {what} {head.kind!r} failed checking these options: "
                          f"{type(exc).__name__}: {exc}")
            continue
        yield where, head, parsed


def _format(label, exc: ValidationError, model, *, prefix: str = "", only=None,
            keys: tuple[str, ...] = CORE_KEYS) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if only is not None and (not loc or loc[0] not in only):
            continue
        path = _dotted(loc)
        message = _message(err, model, loc, keys)
        where = ": ".join(p for p in (prefix, path) if p)
        lines.append(f"{label}: {where}: {message}")
    return lines


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            out += ("." if out else "") + (text if _PLAIN_KEY.fullmatch(text) else _quoted(text))
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _quoted(text: str) -> str:
    """A key or name from the file, safe to print on one line (no control characters)."""
    return json.dumps(text[:64] + ("…" if len(text) > 64 else ""), ensure_ascii=True)


def _message(err: dict, model, loc: tuple, head: tuple[str, ...]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc, head)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key{hint} (allowed: {', '.join(allowed)})"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        return "must match [a-z0-9][a-z0-9_-]* (lower case, digits, '_' and '-')"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg[:1].lower() + msg[1:]


def _allowed_keys(model, loc: tuple, head: tuple[str, ...]) -> list[str]:
    """Walk the model along `loc` to list the keys valid at that level."""
    current = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        annotation = getattr(field, "annotation", None)
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    if current is None:
        return []
    keys = list(getattr(current, "model_fields", {}))
    if current is _SourceHead or current is _SinkHead:
        return keys
    if model is not _Top and current is model:
        keys = [*head, *keys]
    return keys


_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def _toml_error(label: str, exc: tomllib.TOMLDecodeError) -> str:
    text = str(exc)
    match = _TOML_POS.search(text)
    if match:
        reason = _TOML_POS.sub("", text).strip()
        return f"{label}:{match.group(1)}:{match.group(2)}: invalid TOML: {reason}"
    return f"{label}: invalid TOML: {text}"


