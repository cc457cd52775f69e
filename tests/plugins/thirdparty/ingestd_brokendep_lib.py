"""A dependency that is installed but broken: it raises something other than ImportError
when imported (issue 25, item 3)."""

raise RuntimeError("this dependency is installed but broken")
