"""The state directory's schema: its version marker, the ordered migration steps, and the
runner that brings an older state forward before anything else opens it.
See docs/upgrading.md for what each release migrates."""
