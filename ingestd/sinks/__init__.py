"""Sinks: following the committed change feed and pushing it out, each sink on its own
thread with its own durable cursor (docs/sinks.md)."""
