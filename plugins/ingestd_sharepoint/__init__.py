"""The `sharepoint` connector (being built; registers nothing yet)."""
