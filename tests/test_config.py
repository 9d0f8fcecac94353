"""The production shape (docker-compose.yml, Dockerfile), the run command and the README agree with settings.py.

No Docker here: these tests read the files. A setting added to settings.py fails them until it is given to the
api and the worker in docker-compose.yml and documented in the README's configuration table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from activities.clients import SEARCH_ATTRIBUTES
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# Settings that only the embedded development stack (`make run`) reads; production points TEMPORAL_ADDRESS and
# DATABASE_URL at real servers, so these have no effect there.
EMBEDDED_ONLY = {
    "data_dir": "where the embedded Temporal and PostgreSQL keep their data",
    "temporal_port": "port of the embedded Temporal dev server",
    "temporal_ui_port": "port of the embedded Temporal Web UI",
}
APP_SERVICES = ("api", "worker")


def env_name(field: str) -> str:
    return field.upper()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: str) -> str:
    """Docker Compose interpolation with an empty environment: ${X:-default} gives the default, ${X:?err} (required)
    gives a stand-in value, $$ is a literal $."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"required-{name.lower()}-" + "x" * 32
        return ""

    value = re.sub(r"(?<!\$)\$\{(\w+)(?:(:?[-?])([^}]*))?\}", one, value)
    return value.replace("$$", "$")


def app_env(compose: dict, service: str) -> dict[str, str | None]:
    env = compose["services"][service]["environment"]
    assert isinstance(env, dict), f"{service}: environment must be a mapping"
    return env


def test_compose_has_the_production_parts(compose):
    services = compose["services"]
    assert {"postgres", "temporal", "temporal-setup", "temporal-ui", "api", "worker"} <= set(services)
    assert services["temporal"]["image"].startswith("temporalio/auto-setup")
    t_env = services["temporal"]["environment"]
    assert t_env["DB"].startswith("postgres") and t_env["POSTGRES_SEEDS"] == "postgres"
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    for name in APP_SERVICES:
        svc = services[name]
        assert svc["build"] == "." and (ROOT / "Dockerfile").exists()
        deps = svc["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["temporal-setup"]["condition"] == "service_completed_successfully"
    assert services["api"]["image"] == services["worker"]["image"]
    assert services["worker"]["command"] == ["python", "worker.py"]
    assert "command" not in services["api"], "the api runs the image's default command"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_setting_production_needs_is_given(compose, service):
    env = app_env(compose, service)
    needed = {env_name(f) for f in Settings.model_fields if f not in EMBEDDED_ONLY}
    missing = sorted(needed - set(env))
    assert not missing, f"{service} in docker-compose.yml lacks {missing}"
    unknown = sorted(set(env) - {env_name(f) for f in Settings.model_fields})
    assert not unknown, f"{service} sets variables that settings.py does not read: {unknown}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_compose_environment_is_a_valid_production_configuration(compose, service):
    values = {k.lower(): interpolate(str(v)) for k, v in app_env(compose, service).items() if v is not None}
    s = Settings(_env_file=None, **values)
    assert s.environment == "production"
    assert s.temporal_address == "temporal:7233"
    assert s.database_url and s.database_url.startswith("postgresql://") and "@postgres:5432/" in s.database_url
    assert s.api_host == "0.0.0.0"
    assert s.ladder and all("name" in r for r in s.ladder)


def test_api_and_worker_get_the_same_settings(compose):
    assert app_env(compose, "api") == app_env(compose, "worker")


def test_compose_registers_every_search_attribute(compose):
    script = "\n".join(compose["services"]["temporal-setup"]["command"])
    pairs = dict(re.findall(r"\b(\w+)=(Keyword|Text|Int|Double|Bool|Datetime|KeywordList)\b", script))
    assert pairs == SEARCH_ATTRIBUTES
    assert "search-attribute create" in script


def test_dockerfile_builds_the_api_image():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    cmd = [ln for ln in text.splitlines() if ln.startswith("CMD")]
    assert len(cmd) == 1 and "api.app:app_factory" in cmd[0] and "--factory" in cmd[0]
    assert "$API_HOST" in cmd[0] and "$API_PORT" in cmd[0]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".data", ".env", ".git"} <= set(ignored)


def readme_config_table() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Configuration\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, "README.md needs a '## Configuration' section"
    rows = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"`[A-Z][A-Z0-9_]*`", cells[0]):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_readme_configuration_table_lists_every_setting():
    rows = readme_config_table()
    fields = {env_name(f) for f in Settings.model_fields}
    assert sorted(fields - set(rows)) == [], "settings missing from README's configuration table"
    assert sorted(set(rows) - fields) == [], "README documents variables that settings.py does not read"
    for name, cells in rows.items():
        assert len(cells) >= 2 and cells[-1], f"{name}: give a default and a meaning"


def test_readme_defaults_match_settings():
    rows = readme_config_table()
    for field, info in Settings.model_fields.items():
        default = info.default
        shown = rows[env_name(field)][0]
        if default is None:
            assert "unset" in shown.lower(), f"{env_name(field)}: default is unset, README says {shown}"
        elif field != "escalation_ladder":
            assert f"`{default}`" in shown, f"{env_name(field)}: default is {default!r}, README says {shown}"


def test_run_command_uses_the_test_harness_time_skipping_flags():
    import devstack
    from tests.harness import TEMPORAL_FLAGS

    assert devstack.TEMPORAL_FLAGS == TEMPORAL_FLAGS


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make run" in readme
    commands = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    assert "set -euo pipefail" in commands
    assert commands[-1] == "make test"
