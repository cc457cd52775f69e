"""Fixtures for cluster mode: one private PostgreSQL server per session (a fresh database
per test) and moto's server as the S3 blob store (the S3 tests' server class)."""

from __future__ import annotations

import pytest

from tests.conftest import make_secret
from tests.plugins.s3.kit import MotoS3

from .kit import BLOBS as BUCKET
from .kit import DOCS
from .pgserver import PostgresServer, bindir


@pytest.fixture(scope="session")
def postgres():
    if bindir() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)")
    server = PostgresServer(make_secret("pg")).start()
    yield server
    server.stop()


class Database:
    """One test's database on the session's server."""

    def __init__(self, server: PostgresServer, name: str):
        self.server = server
        self.name = name
        self.url = server.url(name)  # no password: as ingestd.toml names it
        self.password = server.password

    def connect(self, **kwargs):
        import psycopg

        return psycopg.connect(**self.server.params(self.name), **kwargs)


@pytest.fixture
def pg(postgres):
    name = postgres.create_database()
    yield Database(postgres, name)
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def moto_server():
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server):
    """moto, emptied, with the blob store's bucket."""
    moto_server.reset()
    moto_server.s3.create_bucket(Bucket=BUCKET)
    yield moto_server
    errors = list(moto_server.log.hook_errors)
    moto_server.reset()
    assert not errors, f"a request hook failed: {errors!r}"


@pytest.fixture
def db(pg):
    """The test database with the cluster schema, and an autocommit connection to it."""
    from ingestd.cluster import schema

    conn = pg.connect(autocommit=True)
    schema.migrate(conn)
    yield conn
    conn.close()


def add_sources(conn, *names, node=None, kind="s3"):
    from ingestd.cluster import jobs

    jobs.register(conn, [jobs.SourceRow(n, kind, node) for n in names])


@pytest.fixture
def cluster(tmp_path, pg, s3):
    s3.s3.create_bucket(Bucket=DOCS)
    from .nodes import Cluster

    c = Cluster(tmp_path, pg, s3)
    assert c.cli("cluster", "init").returncode == 0
    yield c
    c.stop()
