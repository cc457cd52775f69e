"""ingestd: an ingestion daemon with an auditable, content-addressed document store.

The plugin API lives in `ingestd.plugin`; the names below are re-exported from it so
plugins written against the flat layout keep working. New plugins import `ingestd.plugin`.
"""

from ingestd._lib.version import VERSION as __version__
from ingestd.errors import Code, ConnectorError, IngestdError
from ingestd.plugin.connector import Connector, Deleted, Failed, JobContext, Outcome, Requirement, Staged
from ingestd.plugin.spec import hookimpl

__all__ = [
    "Code", "Connector", "ConnectorError", "Deleted", "Failed", "IngestdError", "JobContext",
    "Outcome", "Requirement", "Staged", "hookimpl", "__version__",
]
