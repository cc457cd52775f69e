"""ingestd: an ingestion daemon with an auditable, content-addressed document store.

This module is the public plugin API: everything a connector plugin needs, nothing else.
"""

from importlib.metadata import PackageNotFoundError, version

from .connector import Connector, Deleted, Failed, JobContext, Outcome, Requirement, Staged
from .errors import Code, ConnectorError, IngestdError
from .hookspecs import hookimpl

try:
    __version__ = version("ingestd")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "Code", "Connector", "ConnectorError", "Deleted", "Failed", "IngestdError", "JobContext",
    "Outcome", "Requirement", "Staged", "hookimpl", "__version__",
]
