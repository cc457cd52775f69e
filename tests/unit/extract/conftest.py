import os

import pytest

from tests.support.procs import THIRDPARTY, plugin_site


@pytest.fixture
def hostile_plugins(tmp_path, monkeypatch):
    """The misbehaving extractors, installed for worker processes started from here."""
    site = plugin_site(tmp_path, {"hostile": "ingestd_hostile_extractors"})
    paths = [str(site), str(THIRDPARTY), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    return site
