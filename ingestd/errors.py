"""The error vocabulary shared by core, connectors and the CLI.

Connectors raise these instead of library exceptions so that a job manifest only ever
carries a typed code and a message written for the operator, never a traceback.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Typed error codes recorded in manifests and item files."""

    INVALID_NAME = "invalid_name"
    NOT_FOUND = "not_found"
    AUTH = "auth"
    PERMISSION = "permission"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    TOO_LARGE = "too_large"
    IO = "io"
    DISK_FULL = "disk_full"
    INTERRUPTED = "interrupted"
    INTEGRITY = "integrity"
    EMPTY = "empty"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    UNSUPPORTED = "unsupported"
    DELETE_LIMIT = "delete_limit"
    CONFIG = "config"
    UNAVAILABLE = "unavailable"
    LEASE_LOST = "lease_lost"  # cluster mode: another instance took the source over
    INTERNAL = "internal"


class IngestdError(Exception):
    """Base of every error ingestd raises on purpose."""

    exit_code = 1


class UsageError(IngestdError):
    exit_code = 2


class ConfigError(IngestdError):
    """Invalid configuration; carries one line per problem so all are shown at once."""

    exit_code = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keys on it

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class Unavailable(IngestdError):
    """A store the daemon reads from (the cluster's blob store) failed or could not be
    reached: retryable, so the API answers `503` rather than `500`."""


class StoreError(IngestdError):
    """The document or job store could not be written; `code` says whether space ran out."""

    def __init__(self, message: str, code: Code | None = None):
        self.code = code or Code.IO
        super().__init__(message)


class StateError(IngestdError):
    """The state directory holds damaged data (a `documents.sqlite` that is not a database).
    Restarting cannot mend it, so it has its own exit status, which the systemd unit lists
    in `RestartPreventExitStatus=`."""

    exit_code = 65  # EX_DATAERR


class SchemaTooNew(IngestdError):
    """The state was written by a newer ingestd than this one (a downgrade). Reading it
    could misread it and writing could damage it; restarting cannot help, so it has its
    own exit status, which the systemd unit lists in `RestartPreventExitStatus=`."""

    exit_code = 76


class MigrationPending(IngestdError):
    """A read-only command met a state that must be migrated first (it never migrates)."""

    exit_code = 3


class StateBusy(IngestdError):
    """The state could not be locked for migrating: another ingestd process uses it."""

    exit_code = 75  # EX_TEMPFAIL: it works once the other process is gone


class NotFoundError(IngestdError):
    """A job or document id that does not exist."""


class ConnectorError(IngestdError):
    """A failure talking to a source, with a typed code the operator can act on.

    `item` is the origin the error concerns (None for the job as a whole); `request_id`
    is the remote service's id for the failed request, so support tickets can cite it.
    `retryable` is for the connector's own retry logic (the SharePoint sign-in rides out
    an outage with it); core does not read it: the code says what kind of failure it
    was, and the next run tries every failed item again whatever this says.
    """

    def __init__(
        self,
        code: Code | str,
        message: str,
        *,
        item: str | None = None,
        retryable: bool = False,
        request_id: str | None = None,
    ):
        self.code = Code(code)
        self.message = message
        self.item = item
        self.retryable = retryable
        self.request_id = request_id
        super().__init__(message)


def io_error_code(exc: OSError) -> Code:
    """Map an OSError to the code an operator can act on."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Code.DISK_FULL
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Code.PERMISSION
    if exc.errno == errno.ENOENT:
        return Code.NOT_FOUND
    if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ):
        return Code.INVALID_NAME
    if exc.errno == errno.ELOOP:
        return Code.SYMLINK
    return Code.IO
