"""The plugin API: everything a plugin imports from ingestd. The connector contract
(`Connector`, the events a job yields, `JobContext`), the extractor contract (`Extractor`,
`Extracted`, `Limits`, `ExtractionError`), the option groups, the hook marker and the hook
arguments' types, migration steps, the error types, and the core types a connector's
options and constructor use. Helpers plugins share (safe paths, atomic writes, a SQLite
opener, request pacing, a Markdown writer, a zip-bomb check) live in `ingestd.plugin.kit`.

Nothing else in ingestd is for plugins: the built-in ones are held to this by
import-linter (see pyproject.toml), and a third-party plugin that imports only these
names keeps working whatever moves inside core. `ingestd.errors` stays importable as
well (its names here are the same objects). docs/plugins.md is the guide.
"""

from ingestd._lib.version import VERSION as __version__
from ingestd.config import ConfigPath, Duration, Source, Strict
from ingestd.credentials import Credential, Registry
from ingestd.errors import Code, ConfigError, ConnectorError, IngestdError, io_error_code
from ingestd.plugin.connector import (
    Connector, CredentialStatus, Deleted, Event, Failed, JobContext, Outcome, OutcomeName, Requirement, Staged,
    Unchanged,
)
from ingestd.plugin.events import BlobInfo, DeletedDocument, Job, JobCounters, StoredDocument
from ingestd.plugin.extractor import Boundary, Extracted, ExtractionError, Extractor, Limits
from ingestd.plugin.migration import Step, StepContext
from ingestd.plugin.options import (
    DEFAULT_EVERY, DEFAULT_IGNORE, DeleteOptions, FilterOptions, ScheduleOptions, WatchOptions,
)
from ingestd.plugin.progress import Progress
from ingestd.plugin.spec import hookimpl
from ingestd.plugin.watched import WatchedConnector

__all__ = [
    "BlobInfo", "Boundary", "Code", "ConfigError", "ConfigPath", "Connector", "ConnectorError", "Credential",
    "CredentialStatus", "DEFAULT_EVERY", "DEFAULT_IGNORE", "DeleteOptions", "Deleted", "DeletedDocument", "Duration",
    "Event", "Extracted", "ExtractionError", "Extractor", "Failed", "FilterOptions", "IngestdError", "Job", "JobContext",
    "JobCounters", "Limits", "Outcome", "OutcomeName", "Progress", "Registry", "Requirement", "ScheduleOptions",
    "Source",
    "Staged", "Step", "StepContext", "StoredDocument", "Strict", "Unchanged", "WatchOptions", "WatchedConnector",
    "__version__", "hookimpl", "io_error_code",
]
