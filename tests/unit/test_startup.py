"""What a command's start-up imports: only what every command needs. The S3 and SharePoint
libraries, libmagic and the API's models load when a source, a file or a request needs
them: at start-up they cost every empty one-shot (bench/RESULTS.md, issue 20)."""

from __future__ import annotations

import json
import subprocess
import sys

LATER = ("boto3", "botocore", "office365", "msal", "magic", "ingestd.store.libmagic", "ingestd.api.models")


def test_the_cli_and_its_plugins_load_without_the_libraries_a_source_or_a_file_needs():
    code = ("import json, sys\nimport ingestd.cli\nfrom ingestd.plugin.manager import Plugins\n"
            "plugins = Plugins().load()\n"
            "print(json.dumps({'kinds': sorted(plugins.connectors), 'modules': sorted(sys.modules)}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(out.stdout)
    assert {"local", "s3", "sharepoint"} <= set(loaded["kinds"])
    early = [m for m in loaded["modules"] if any(m == name or m.startswith(name + ".") for name in LATER)]
    assert early == []
