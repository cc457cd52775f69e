"""Text extraction: a derivative of stored documents, made off the ingest path.

`worker` is the child process that runs extractor plugins under an address-space limit;
`pool` keeps a bounded set of them and enforces the wall-clock limit from outside;
`policy` says which extractor (if any) a document's MIME type and source get; `service`
is the daemon's queue that follows the catalogue and records each result (docs/extraction.md).
"""
