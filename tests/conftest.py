from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.worker import Worker

from infra.clients import connect_temporal
from infra.db import embedded_database_url
from tests.harness import dev_server, run_stack
from workflows.common import ArchiveBatch, EffectBatch
from workflows.regime import RegimeWorkflow


@pytest.fixture(scope="session")
def temporal_address():
    with dev_server() as srv:
        yield srv.address


@pytest.fixture(scope="session")
def database_url():
    # The embedded PostgreSQL is stopped before its directory is removed (it used to be removed while the server
    # still wrote to it, and the session could end in an OSError at teardown, "Directory not empty", after every
    # test had passed); removing a temporary directory is best effort either way.
    with tempfile.TemporaryDirectory(prefix="sm-pg-", ignore_cleanup_errors=True) as d:
        yield embedded_database_url(Path(d))
        import pgserver

        srv = pgserver.PostgresServer._instances.get((Path(d) / "pg").resolve())
        if srv is not None:
            srv.cleanup()


@pytest.fixture
async def stack(temporal_address, database_url):
    async with run_stack(temporal_address, database_url) as s:
        yield s


# The fast workflow layer (tests/test_workflow_rules.py, tests/test_programme.py): the regime workflow on the real
# dev server with its effects activity mocked.
class Effects:
    """Stands in for activities/effects.py: keeps every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[EffectBatch] = []

    @activity.defn(name="apply_effects")
    async def apply(self, batch: EffectBatch) -> None:
        self.batches.append(batch)

    @activity.defn(name="archive_state")
    async def archive(self, batch: ArchiveBatch) -> None:
        pass

    def opened(self) -> list[dict[str, Any]]:
        return [e.step.model_dump(mode="json") for b in self.batches for e in b.effects if e.type == "task_open"]


@pytest.fixture
async def regime_env(temporal_address):
    # The session's dev server may still be starting when this is the first test to run: retry the connect.
    client = await connect_temporal(temporal_address, attempts=50)
    effects = Effects()
    queue = "rules-" + uuid.uuid4().hex[:10]
    async with Worker(client, task_queue=queue, workflows=[RegimeWorkflow],
                      activities=[effects.apply, effects.archive]):
        yield client, queue, effects


@pytest.fixture(scope="module")
def driver():
    """Real headless Chromium, one per browser test module (tests/test_browser.py: `chromium`, `NEEDS_CHROMIUM`)."""
    from tests.test_browser import chromium

    with chromium() as browser:
        yield browser
