from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from activities.db import embedded_database_url
from tests.harness import free_port, run_stack, start_dev_server


@pytest.fixture(scope="session")
def temporal_address():
    port = free_port()
    proc = start_dev_server(port)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except Exception:
        proc.kill()


@pytest.fixture(scope="session")
def database_url():
    with tempfile.TemporaryDirectory(prefix="sm-pg-") as d:
        yield embedded_database_url(Path(d))


@pytest.fixture
async def stack(temporal_address, database_url):
    async with run_stack(temporal_address, database_url) as s:
        yield s
