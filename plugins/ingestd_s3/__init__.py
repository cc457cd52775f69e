"""The `s3` connector (being built; registers nothing yet)."""
