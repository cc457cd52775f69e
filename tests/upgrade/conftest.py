"""Fixtures for upgrade tests: installations made by released versions, unpacked afresh.

- `installation_of(tag)`: a new copy of `fixtures/<tag>.tar.gz` with its remotes rebuilt and
  nothing run on it yet (for tests that upgrade it their own way: a crash mid-migration,
  an older release refusing a newer schema, `ingestd migrate --check`).
- `upgraded`: one copy of v0.1.0 per module, on which this checkout's daemon has started
  once and finished its start-up runs; the daemon keeps running for the module's tests.
  This is what "after upgrading" means for every check of issue 27: when migrations land,
  they happen here (the daemon's start), and every test using it checks the result.
"""

from __future__ import annotations

import pytest

from tests.plugins.s3.conftest import aws_isolation, moto_server  # noqa: F401  (the S3 tests' own)

from .installation import Installation, Upgraded


@pytest.fixture
def installation_of(tmp_path, moto_server):
    made = []

    def make(tag: str = "v0.1.0") -> Installation:
        inst = Installation(tag, tmp_path / f"{tag}-{len(made)}", moto_server)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        inst.close()


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory, moto_server):
    inst = Installation("v0.1.0", tmp_path_factory.mktemp("upgraded"), moto_server)
    try:
        yield Upgraded(inst)
    finally:
        inst.close()
