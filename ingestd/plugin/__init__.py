"""The plugin API: everything a connector plugin imports from ingestd, and nothing else
(besides `ingestd.errors`). Shared helpers live in `ingestd.plugin.kit`.

Built-in plugins are held to this by import-linter (see pyproject.toml); a third-party
plugin that imports only these names keeps working whatever moves inside core.
"""

from ingestd._lib.version import VERSION as __version__
from ingestd.config import ConfigPath, Duration, Source, Strict
from ingestd.credentials import Credential, Registry
from ingestd.errors import Code, ConfigError, ConnectorError, IngestdError, io_error_code
from ingestd.plugin.connector import (
    Connector, CredentialStatus, Deleted, Event, Failed, JobContext, Outcome, OutcomeName, Requirement, Staged,
)
from ingestd.plugin.progress import Progress
from ingestd.plugin.migration import Step, StepContext
from ingestd.plugin.options import DEFAULT_EVERY, DeleteOptions, FilterOptions, ScheduleOptions
from ingestd.plugin.spec import hookimpl

__all__ = [
    "Code", "ConfigError", "ConfigPath", "Connector", "ConnectorError", "Credential", "CredentialStatus",
    "DEFAULT_EVERY",
    "DeleteOptions", "Deleted", "Duration", "Event", "Failed", "FilterOptions", "IngestdError",
    "JobContext", "Outcome", "OutcomeName", "Progress", "Registry", "Requirement", "ScheduleOptions", "Source",
    "Staged", "Step", "StepContext", "Strict", "__version__", "hookimpl", "io_error_code",
]
