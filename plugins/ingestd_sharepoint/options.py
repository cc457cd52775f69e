"""Options of a `kind = "sharepoint"` source.

Kept free of office365/msal/requests imports: `check-config` and `ingestd plugins` must
be able to validate a config on a machine without the SharePoint extra installed.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from ingestd.plugin import ConfigPath, DeleteOptions, Duration, FilterOptions, ScheduleOptions


class SharePointOptions(ScheduleOptions, FilterOptions, DeleteOptions):
    glob_ignore_case: ClassVar[bool] = True  # SharePoint names ignore case: `*.pdf` takes Scan.PDF

    site_url: str
    library: str = "Documents"
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

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https URL like https://contoso.sharepoint.com/sites/legal")
        if parts.query or parts.fragment:
            raise ValueError("must be the site's address without ?query or #fragment")
        return f"https://{parts.netloc}{parts.path.rstrip('/')}"

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
    def _library(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must name a document library, e.g. 'Documents'")
        return value

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

    # -- derived ----------------------------------------------------------------------

    @property
    def site_host(self) -> str:
        return urlsplit(self.site_url).netloc

    @property
    def site_path(self) -> str:
        """Server-relative path of the site, as Graph's `/sites/{host}:/{path}` wants it."""
        return unquote(urlsplit(self.site_url).path) or "/"

    @property
    def connect_timeout(self) -> float:
        return min(10.0, self.timeout)

    def scope_key(self) -> dict:
        """What decides which items the source holds; a change means a full re-enumeration."""
        key = {
            "site_url": self.site_url.lower(), "library": self.library.lower(),
            "folder": (self.folder or "").lower(), "include": list(self.include),
            "exclude": list(self.exclude), "max_file_size": self.max_file_size,
            "graph_url": self.graph_url.lower(),
        }
        if self.include != ["**"] or self.exclude:  # 0.1 matched case-sensitively: filtered sources re-read once
            key["globs"] = "gitignore, ignore case"
        return key
