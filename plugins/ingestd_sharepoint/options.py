"""Options of a `kind = "sharepoint"` source.

Kept free of office365/msal/requests imports: `check-config` and `ingestd plugins` must
be able to validate a config on a machine without the SharePoint extra installed.

A source holds one or more document libraries: `site_url` names one site or several,
`library` one library, several, or `"*"` (every document library of each site). Each
library is synced on its own (its own delta link and state file), so adding one later
does not re-read the others.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from ingestd.plugin import ConfigPath, DeleteOptions, Duration, FilterOptions, ScheduleOptions

ALL = "*"
MAX_COLUMNS = 50
# SharePoint internal column names: letters, digits, `_` (and `x00..` escapes, which are
# letters and digits too); nothing else may reach a $select
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


class SharePointOptions(ScheduleOptions, FilterOptions, DeleteOptions):
    glob_ignore_case: ClassVar[bool] = True  # SharePoint names ignore case: `*.pdf` takes Scan.PDF

    site_url: str | list[str]
    library: str | list[str] = "Documents"
    folder: str | None = None
    credentials: str
    graph_url: str = "https://graph.microsoft.com"
    authority_url: str = "https://login.microsoftonline.com"
    ca_bundle: ConfigPath | None = None
    max_file_size: int | None = Field(default=None, gt=0)
    timeout: Duration = 60.0
    concurrency: int = Field(default=4, ge=1, le=32)  # downloads at once; Graph throttles a tenant, not a client
    # bytes SharePoint serves other than it lists (Office files it rewrites), the same twice:
    # "record" stores them with both hashes in the metadata; "strict" refuses them
    verify: Literal["record", "strict"] = "record"
    # SharePoint list columns (internal names) to keep in each document's metadata
    columns: list[str] = Field(default_factory=list)
    # each document's effective permissions, kept as versioned metadata; how changes are
    # learnt: from the delta ("delta", Graph's sharing-change preferences), or by asking
    # every file each run ("every_run", where those preferences are not honoured)
    permissions: bool = False
    permission_changes: Literal["delta", "every_run"] = "delta"

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            return _one_site(value)
        if not value:
            raise ValueError("must name at least one site")
        urls = [_one_site(v) for v in value]
        if len({u.lower() for u in urls}) != len(urls):
            raise ValueError("names a site twice")
        return urls

    @field_validator("graph_url", "authority_url")
    @classmethod
    def _service_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https URL (MSAL and Graph refuse plain http)")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a ?query or #fragment")
        return value.strip().rstrip("/")

    @field_validator("library")
    @classmethod
    def _library(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        names = [n.strip() for n in names]
        if not names or any(not n for n in names):
            raise ValueError("must name a document library, e.g. 'Documents' (or \"*\" for every library)")
        if ALL in names and len(names) > 1:
            raise ValueError('"*" means every library of the site: give it alone, not in a list')
        if len({n.casefold() for n in names}) != len(names):
            raise ValueError("names a library twice")
        return names[0] if isinstance(value, str) else names

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError("must be a path inside the library, without '..'")
        return "/".join(parts) or None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _COLUMN.fullmatch(name):
                raise ValueError(f"{name[:80]!r} is not a column's internal name (letters, digits and '_', as in "
                                 "the column's settings URL: Field=ReviewDate)")
        if len(value) > MAX_COLUMNS:
            raise ValueError(f"at most {MAX_COLUMNS} columns")
        if len(set(value)) != len(value):
            raise ValueError("names a column twice")
        return value

    @model_validator(mode="after")
    def _one_library_for_a_folder(self):
        if self.folder is not None and (len(self.site_urls) > 1 or self.libraries is None or len(self.libraries) > 1):
            raise ValueError("'folder' needs one site_url and one library (a folder lives in one library)")
        return self

    # -- derived ----------------------------------------------------------------------

    @property
    def site_urls(self) -> list[str]:
        return [self.site_url] if isinstance(self.site_url, str) else list(self.site_url)

    @property
    def libraries(self) -> list[str] | None:
        """The libraries named, or None for every library of each site (`"*"`)."""
        names = [self.library] if isinstance(self.library, str) else list(self.library)
        return None if names == [ALL] else names

    @property
    def connect_timeout(self) -> float:
        return min(10.0, self.timeout)

    def scope_key(self) -> dict:
        """What decides which items a library's state holds; a change means that library
        is enumerated again. The site and library are not in it: each library has a state
        of its own. Keys beyond 0.1's appear only when set, so upgrading re-reads nothing."""
        key = {
            "folder": (self.folder or "").lower(), "include": list(self.include),
            "exclude": list(self.exclude), "max_file_size": self.max_file_size,
            "graph_url": self.graph_url.lower(),
        }
        if self.include != ["**"] or self.exclude:  # 0.1 matched case-sensitively: filtered sources re-read once
            key["globs"] = "gitignore, ignore case"
        if self.columns:
            key["columns"] = list(self.columns)
        if self.permissions:
            key["permissions"] = self.permission_changes
        return key


def _one_site(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https URL like https://contoso.sharepoint.com/sites/legal")
    if parts.query or parts.fragment:
        raise ValueError("must be the site's address without ?query or #fragment")
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def site_host(site_url: str) -> str:
    return urlsplit(site_url).netloc


def site_path(site_url: str) -> str:
    """Server-relative path of the site, as Graph's `/sites/{host}:/{path}` wants it."""
    return unquote(urlsplit(site_url).path) or "/"
