from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from infra.db import embedded_database_url
from tests.harness import dev_server, run_stack


@pytest.fixture(scope="session")
def temporal_address():
    with dev_server() as srv:
        yield srv.address


@pytest.fixture(scope="session")
def database_url():
    with tempfile.TemporaryDirectory(prefix="sm-pg-") as d:
        yield embedded_database_url(Path(d))


@pytest.fixture
async def stack(temporal_address, database_url):
    async with run_stack(temporal_address, database_url) as s:
        yield s
