"""The document store: content-addressed blobs, document records and versions in SQLite,
and the enrichment (hashing, MIME) done on the way in."""
