"""The `s3` connector: incremental sync of a bucket prefix on S3 or an S3-compatible store.

Registered even when boto3 is missing: its `requires` then tells the operator what to
install instead of the kind looking unknown.
"""

from ingestd.plugin import hookimpl

from .connector import S3Connector


@hookimpl
def register_connectors(register):
    register(S3Connector)
