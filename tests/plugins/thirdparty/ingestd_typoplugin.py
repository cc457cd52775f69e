"""A plugin implementing a hook that does not exist (a typo): quarantined by check_pending."""

from ingestd.plugin import hookimpl


@hookimpl
def document_stord(document, job):
    pass
