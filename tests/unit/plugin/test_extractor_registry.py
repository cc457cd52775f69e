"""Extractor plugins register like connectors: a bad registration quarantines the plugin
and leaves the others; the built-ins are there; the MIME policy takes the highest priority."""

from pathlib import Path

from ingestd.config import parse
from ingestd.extract.policy import Policy
from ingestd.plugin import Extracted, Extractor, hookimpl
from ingestd.plugin.manager import Plugins


class Better(Extractor):
    name = "better-pdf"
    version = "7"
    mime_types = ("application/pdf",)
    priority = 5

    def extract(self, path, limits):
        return Extracted("")


class Nameless(Extractor):
    version = "1"
    mime_types = ("text/plain",)


def plugin(*classes):
    class P:
        @hookimpl
        def register_extractors(register):
            for cls in classes:
                register(cls)
    return P


def test_a_bad_registration_quarantines_only_its_plugin():
    plugins = Plugins().load(extra={"good": plugin(Better), "bad": plugin(Nameless), "worse": plugin(object)})
    assert plugins.extractors["better-pdf"] is Better and "pdf" in plugins.extractors  # the built-in stays
    assert plugins.info["bad"].status == "quarantined" and "declares no name" in plugins.info["bad"].error
    assert plugins.info["worse"].status == "quarantined" and "not an Extractor" in plugins.info["worse"].error


def test_the_highest_priority_takes_a_mime_type_and_sources_can_narrow_it():
    plugins = Plugins().load(extra={"good": plugin(Better)})
    config = parse({"sources": [{"name": "a", "kind": "local", "path": "/tmp", "extract_skip_mime": ["text/*"]},
                                {"name": "b", "kind": "local", "path": "/tmp", "extract": False}]},
                   plugins.option_models(), base_dir=Path("/"))
    policy = Policy(plugins.extractors, config)
    assert policy.choose("a", "application/pdf").extractor is Better
    assert policy.mime_types(plugins.extractors["pdf"]) == []
    assert "extract_skip_mime" in policy.choose("a", "text/plain").reason
    assert "off for source 'b'" in policy.choose("b", "application/pdf").reason
    assert policy.choose("a", "image/png").reason == "no installed extractor reads image/png"


def test_the_daemon_never_imports_a_parsing_library():
    """Availability is looked up, not imported: the libraries load in the workers only."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from ingestd.plugin.manager import Plugins; "
            "from ingestd.extract.policy import Policy; from ingestd.config import parse; p = Plugins().load(); "
            "policy = Policy(p.extractors, parse({}, p.option_models(), base_dir=Path('/'))); "
            "assert len(policy.extractors) >= 10, policy.extractors; "
            "print(sorted(m for m in ('trafilatura', 'pypdfium2', 'docx', 'pptx', 'openpyxl', 'odf', 'striprtf', "
            "'py3langid') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)
