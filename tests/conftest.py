"""Fixtures shared by the suite: the backends every contract test runs on.

``backend`` is parametrised over the embedded default (SQLite, a local folder, the
in-process broker, the database's search) and the real services (PostgreSQL, the S3 server
over HTTP, Redis with a separate ``dramatiq`` worker process, an OpenSearch-compatible
server). A test that uses it runs once on each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import services
from tests.s3server import S3Server, make_bucket, start_s3_server

pytest_plugins = ["tests.opensearch_server"]


@pytest.fixture(scope="session", autouse=True)
def _aws_test_credentials() -> Iterator[None]:
    """Fake credentials for the S3 server; a developer's own AWS set-up never reaches the tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test's database is copied from."""
    reason = services.postgres_available()
    if reason:
        services.unavailable(reason)
    from pipeline.db.migrate import upgrade

    name = services.unique("vidpipe_tmpl")
    services.create_database(name)
    upgrade(services.pg_url(name))
    yield name
    services.drop_database(name)


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test; yields its SQLAlchemy URL."""
    name = services.unique("vidpipe_test")
    services.create_database(name, template=pg_template)
    yield services.pg_url(name)
    services.drop_database(name)


@pytest.fixture
def redis_url() -> str:
    reason = services.redis_available()
    if reason:
        services.unavailable(reason)
    return services.REDIS_URL


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = services.unique("vidpipe").replace("_", "-").lower()
    make_bucket(s3_server.endpoint_url, name)
    return name


@dataclass
class Backend:
    """The environment a test hands to ``vidpipe`` (as a process or through Settings)."""

    name: str
    env: dict[str, str]
    data_dir: Path
    worker: services.WorkerProcess | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def settings(self):  # type: ignore[no-untyped-def]
        from pipeline.settings import Settings

        return Settings.from_env(self.env).with_secret()

    def process_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def vidpipe(self, *args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the ``vidpipe`` command against this backend."""
        return services.run_vidpipe(self.env, *args, timeout=timeout, cwd=cwd)

    def configure(self, **extra: str) -> None:
        """Change settings for the rest of the test; a worker process is restarted with them."""
        self.env.update(extra)
        if self.worker is not None:
            self.restart_worker()

    def start_worker(self) -> services.WorkerProcess:
        self.worker = services.WorkerProcess(self.env, log=self.data_dir.parent / "worker.log")
        return self.worker

    def restart_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.start_worker()


def embedded_env(tmp_path: Path) -> dict[str, str]:
    return {
        "VIDPIPE_DATA_DIR": str(tmp_path / "data"),
        "VIDPIPE_RETRY_BACKOFF_MS": "100",
        "VIDPIPE_HEARTBEAT_MS": "500",
    }


def services_env(tmp_path: Path, database_url: str, redis_url: str, endpoint: str, bucket: str) -> dict[str, str]:
    return {
        **embedded_env(tmp_path),
        "VIDPIPE_DATABASE_URL": database_url,
        "VIDPIPE_BROKER_URL": redis_url,
        "VIDPIPE_BROKER_NAMESPACE": services.unique("vidpipe"),
        "VIDPIPE_STORAGE_URL": f"s3://{bucket}/media",
        "VIDPIPE_S3_ENDPOINT_URL": endpoint,
        "VIDPIPE_S3_PATH_STYLE": "true",
        "VIDPIPE_S3_REGION": "us-east-1",
    }


SERVICES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("services", marks=pytest.mark.services)], indirect=True
)
"""Marks a test that needs worker processes, Redis or PostgreSQL: it runs on the services backend only."""


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The embedded default, then the real services with a worker process."""
    if request.param == "embedded":
        yield Backend("embedded", embedded_env(tmp_path), tmp_path / "data")
        return
    database_url = request.getfixturevalue("pg_database")
    redis_url = request.getfixturevalue("redis_url")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    env = services_env(tmp_path, database_url, redis_url, server.endpoint_url, bucket)
    env["VIDPIPE_SEARCH_URL"] = request.getfixturevalue("opensearch_url")
    env["VIDPIPE_SEARCH_INDEX_PREFIX"] = request.getfixturevalue("opensearch_prefix")
    backend = Backend("services", env, tmp_path / "data")
    backend.start_worker()
    try:
        yield backend
    finally:
        if backend.worker is not None:
            backend.worker.stop()
            if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
                sys.stderr.write(f"--- worker log ---\n{backend.worker.output()[-5000:]}\n")
        services.delete_redis_namespace(env["VIDPIPE_BROKER_NAMESPACE"])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
