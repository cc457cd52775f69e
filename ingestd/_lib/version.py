"""The installed distribution's version, in one place for core, the CLI and plugins."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("ingestd")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0.0.0"
