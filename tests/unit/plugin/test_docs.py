"""docs/plugins.md documents every hook the spec declares, with its arguments, and every
public name of `ingestd.plugin` a plugin author meets there exists (datasette's test_docs
idea: the manual cannot fall behind the code unnoticed)."""

import inspect
import re

import pytest

import ingestd.plugin
from ingestd.plugin import spec
from tests.support.helpers import ROOT

DOC = (ROOT / "docs" / "plugins.md").read_text()


def hookspecs() -> list[str]:
    return [name for name, fn in vars(spec).items()
            if inspect.isfunction(fn) and hasattr(fn, "ingestd_spec")]


def section(name: str) -> str:
    match = re.search(rf"^### `{name}`\n(.*?)(?=^#)", DOC, re.S | re.M)
    assert match, f"docs/plugins.md has no '### `{name}`' section"
    return match.group(1)


def test_the_spec_has_hooks():
    assert {"register_connectors", "document_stored", "job_finished"} <= set(hookspecs())


@pytest.mark.parametrize("hook", hookspecs())
def test_every_hook_is_documented_with_its_arguments(hook):
    text = section(hook)
    args = list(inspect.signature(getattr(spec, hook)).parameters)
    assert f"`{hook}({', '.join(args)})`" in text
    for arg in args:
        assert f"`{arg}`" in text or f"({arg})" in text or f"{arg})" in text


def test_names_the_guide_imports_exist():
    for line in re.findall(r"^from ingestd\.plugin import (.+)$", DOC, re.M):
        for name in (n.strip() for n in line.split(",")):
            assert hasattr(ingestd.plugin, name), name
