"""The manual cannot drift from the code: every configuration table in docs/ is checked,
key by key and default by default, against the pydantic model the code validates with;
every model has its table; the error codes, the CLI's commands and the credential fields
that are never masked are listed where the docs say they are."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import TypeAdapter
from pydantic_core import PydanticUndefined

from ingestd.cli import build_parser
from ingestd.credentials import PUBLIC_FIELDS
from ingestd.errors import Code
from ingestd.plugin.manager import Plugins
from tests.support.helpers import ROOT

DOCS = ROOT / "docs"
MARKER = re.compile(r"<!-- config-table: ([\w.]+):(\w+) -->\n((?:\|.*\n)+)")
REQUIRED = object()


def tables() -> dict[tuple[str, str], tuple[Path, list[tuple[str, str]]]]:
    """(module, class) → (page, [(key, default cell)]) for every marked table in docs/."""
    found = {}
    for page in sorted(DOCS.rglob("*.md")):
        for module, name, body in MARKER.findall(page.read_text()):
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in body.splitlines()[2:]]
            assert (module, name) not in found, f"{module}:{name} has two tables ({found[(module, name)][0]}, {page})"
            found[(module, name)] = (page, [(row[0].strip("`"), row[1]) for row in rows])
    return found


TABLES = tables()


def model(module: str, name: str):
    return getattr(importlib.import_module(module), name)


def documented_default(cell: str):
    """`required`, `none …`, or the first `literal` (a TOML value, else the text itself)."""
    if cell == "required":
        return REQUIRED
    if cell.startswith("none"):
        return None
    literal = re.search(r"`([^`]*)`", cell)
    assert literal, f"no default literal in {cell!r}"
    try:
        return tomllib.loads(f"v = {literal.group(1)}")["v"]
    except tomllib.TOMLDecodeError:
        return literal.group(1)


def test_every_config_model_has_its_table():
    expected = {("ingestd.config", n) for n in ("DaemonConfig", "HttpConfig", "CredentialsConfig", "_SourceHead")}
    plugins = Plugins().load()
    for kind in ("local", "s3", "sharepoint"):
        options = plugins.connectors[kind].Options
        expected.add((options.__module__, options.__name__))
    assert expected <= set(TABLES), f"undocumented: {sorted(expected - set(TABLES))}"


@pytest.mark.parametrize("target", sorted(TABLES), ids=lambda t: t[1])
def test_a_table_lists_every_key_with_its_default(target):
    page, rows = TABLES[target]
    cls = model(*target)
    keys = [key for key, _ in rows]
    assert sorted(keys) == sorted(cls.model_fields), f"{page.name}: keys differ from {cls.__name__}"
    for key, cell in rows:
        field = cls.model_fields[key]
        wanted = documented_default(cell)
        if field.is_required():
            assert wanted is REQUIRED, f"{page.name}: {key} is required, the table says {cell!r}"
            continue
        assert wanted is not REQUIRED, f"{page.name}: {key} has a default, the table says required"
        actual = field.get_default(call_default_factory=True)
        assert actual is not PydanticUndefined
        if wanted is None:
            assert actual is None, f"{page.name}: {key} defaults to {actual!r}, the table says none"
            continue
        adapter = TypeAdapter(Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation)
        parsed = adapter.validate_python(wanted, context={"base_dir": Path("/")})
        assert parsed == actual, f"{page.name}: {key} defaults to {actual!r}, the table says {cell!r}"


def test_the_identifiers_never_masked_are_the_ones_the_docs_list():
    text = (DOCS / "configuration.md").read_text()
    listed = re.search(r"Every field is secret except the\s+identifiers (.*?), which are shown", text, re.S)
    assert listed, "configuration.md no longer lists the public credential fields"
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == set(PUBLIC_FIELDS)


def test_every_error_code_is_documented():
    """Issue 25 #12: `unsupported` was missing from the README's list."""
    text = (DOCS / "store.md").read_text()
    listed = re.search(r"Error codes:(.*?)\n\n", text, re.S)
    assert listed, "store.md no longer lists the error codes"
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == {c.value for c in Code}


def test_every_command_is_in_the_commands_table():
    text = (DOCS / "operations.md").read_text()
    documented = set(re.findall(r"^\| `ingestd ([\w-]+)", text, re.M))
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert documented == set(sub.choices)
