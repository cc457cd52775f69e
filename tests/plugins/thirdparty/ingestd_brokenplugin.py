"""A plugin that fails to import: it must be quarantined, not take ingestd down."""

raise RuntimeError("this plugin is broken on purpose")
