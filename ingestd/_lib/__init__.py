"""Small helpers core uses everywhere: atomic writes, safe paths, redaction, logging,
the allocator pin, time formatting. Nothing here imports another ingestd package."""
