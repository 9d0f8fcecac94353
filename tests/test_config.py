"""The production shape (docker-compose.yml, Dockerfile), the run command and the README agree with settings.py.

No Docker here: these tests read the files. A setting added to settings.py fails them until it is given to the
api and the worker in docker-compose.yml and documented in the README's configuration table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from domain.models import Rung
from infra.clients import SEARCH_ATTRIBUTES
from settings import DEFAULT_LADDER, Settings, get_settings

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


def _published(svc: dict) -> list[str]:
    return [str(p) for p in svc.get("ports", [])]


def test_compose_gives_each_component_least_privilege(compose):
    """Issue 17, finding 14: the Temporal UI bypasses every API check, so it is never published beyond the
    host and is read-only; each component has its own PostgreSQL login, none of them the superuser."""
    services = compose["services"]
    ui = services["temporal-ui"]
    assert all(p.startswith("127.0.0.1:") for p in _published(ui)), _published(ui)
    assert ui["environment"]["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    for name, svc in services.items():  # only the API is published on every interface
        if name != "api":
            assert all(p.startswith("127.0.0.1:") for p in _published(svc)), (name, _published(svc))
    for name in ("postgres", "temporal"):
        assert not _published(services[name]) and services[name]["networks"] == ["backend"]
    assert compose["networks"]["backend"]["internal"] is True

    superuser = services["postgres"]["environment"]["POSTGRES_USER"]
    temporal_login = services["temporal"]["environment"]["POSTGRES_USER"]
    logins = {name: re.match(r"postgresql://([^:]+):", app_env(compose, name)["DATABASE_URL"]).group(1)
              for name in APP_SERVICES}
    owner = re.match(r"postgresql://([^:]+):", services["migrate"]["environment"]["DATABASE_MIGRATION_URL"]).group(1)
    assert len({superuser, temporal_login, owner, logins["api"]}) == 4, (superuser, temporal_login, owner, logins)
    assert logins["api"] == logins["worker"] == app_env(compose, "api")["DATABASE_SERVICE_ROLE"]
    for name in APP_SERVICES:  # the owner's password stays with the one-shot migration
        assert not app_env(compose, name)["DATABASE_MIGRATION_URL"]
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["regime", "migrate"]
    init = (ROOT / "ops" / "postgres" / "init-logins.sh").read_text()
    for login in (owner, logins["api"], temporal_login):
        assert f"CREATE ROLE {login} LOGIN" in init
    assert "NOSUPERUSER" in init and "SUPERUSER " not in init.replace("NOSUPERUSER", "")
    mounted = [v for v in services["postgres"]["volumes"] if "init-logins.sh" in v]
    assert mounted and mounted[0].startswith("./ops/postgres/init-logins.sh:/docker-entrypoint-initdb.d/")


def test_compose_scrapes_the_api_and_the_worker(compose):
    """Issue 18: Prometheus scrapes both; the dashboard's queries name metrics the service exports."""
    import json

    prom = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"api:8000", f"worker:{app_env(compose, 'worker')['WORKER_METRICS_ADDRESS'].split(':')[1]}"}
    assert "./ops/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose["services"]["prometheus"]["volumes"]
    dash = json.loads((ROOT / "ops" / "grafana" / "dashboards" / "special-measures.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    from api import metrics

    for name in ("sm_http_requests_total", "sm_open_steps", "sm_overdue_steps", "sm_regimes", "sm_dead_letters_pending"):
        assert name in exprs
    exported = {m.name for m in metrics.REGISTRY.collect()}
    for name in re.findall(r"\b(sm_[a-z_]+?)(?:_bucket|_count|_sum)?\b", exprs):
        assert name.removesuffix("_total") in exported or name in exported, name
    worker = compose["services"]["worker"]
    assert "9464/metrics" in " ".join(worker["healthcheck"]["test"]) and worker["stop_signal"] == "SIGTERM"


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
    assert s.escalation_ladder and all(isinstance(r, Rung) and r.name for r in s.escalation_ladder)
    assert s.ladder == [r.model_dump() for r in s.escalation_ladder]  # the accessor of readers not yet typed


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


def _locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (pinned version, number of hashes) in a pip-compile lock file."""
    out, name = {}, None
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line)
        if m:
            name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
            out[name] = (m.group(2), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            out[name] = (out[name][0], out[name][1] + 1)
    return out


def _requirement_names(specs: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", s).group()).lower() for s in specs}


@pytest.mark.parametrize("lock, extras", [("runtime.txt", ()), ("test.txt", ("test",))])
def test_lock_files_pin_every_dependency_with_hashes(lock, extras):
    """The run command, the tests, CI and the Dockerfile install only from requirements/*.txt (make lock)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirement_names(project["dependencies"] + [d for e in extras for d in
                                                            project["optional-dependencies"][e]])
    locked = _locked(ROOT / "requirements" / lock)
    assert wanted <= set(locked), f"not in requirements/{lock} (run `make lock`): {sorted(wanted - set(locked))}"
    assert all(n >= 1 for _, n in locked.values()), "every pin needs its hashes"
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/test.txt" in makefile and "--no-deps -e ." in makefile
    assert "--require-hashes -r /tmp/runtime.txt" in (ROOT / "Dockerfile").read_text()


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


def test_escalation_ladder_is_a_typed_setting_read_from_json(monkeypatch):
    default = Settings(_env_file=None)
    assert default.escalation_ladder == [Rung.model_validate(r) for r in DEFAULT_LADDER]
    assert default.ladder == DEFAULT_LADDER
    monkeypatch.setenv("ESCALATION_LADDER", '[{"name": "breach", "offset_days": 0, "notify": ["responsible"]}, '
                                            '{"name": "late", "offset_days": 14}]')
    assert Settings(_env_file=None).escalation_ladder == [
        Rung(name="breach", offset_days=0, notify=["responsible"]), Rung(name="late", offset_days=14)]
    refused = {
        "not json": "ESCALATION_LADDER is not JSON",
        "[]": "ESCALATION_LADDER must be a non-empty JSON list",
        '{"name": "breach", "offset_days": 0}': "ESCALATION_LADDER must be a non-empty JSON list",
        '[{"offset_days": 0}]': "escalation_ladder.0.name",
        '[{"name": "breach", "offset_days": "7"}]': "escalation_ladder.0.offset_days",
        '[{"name": "breach", "offset_days": 1.5}]': "escalation_ladder.0.offset_days",
        '[{"name": "breach", "offset_days": 0, "notfy": ["responsible"]}]': "escalation_ladder.0.notfy",
    }
    for value, message in refused.items():
        monkeypatch.setenv("ESCALATION_LADDER", value)
        with pytest.raises(ValueError, match=re.escape(message)):
            Settings(_env_file=None)
        with pytest.raises(ValueError, match=re.escape(message)):
            Settings(_env_file=None, escalation_ladder=value)


def test_secrets_stay_out_of_repr_and_dumps(monkeypatch):
    secrets = {"AUTH_JWT_SECRET": "jwt-secret-" + "j" * 32, "AUDIT_HMAC_KEY": "audit-key-" + "a" * 32,
               "DATABASE_URL": "postgresql://svc:db-password-1234@db.example:5432/regimes",
               "DATABASE_MIGRATION_URL": "postgresql://owner:owner-password-5678@db.example:5432/regimes"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        s = get_settings()
        shown = [repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), repr(s.model_dump(mode="json"))]
        for text in shown:
            for hidden in ("jwt-secret-", "audit-key-", "db-password-1234", "owner-password-5678"):
                assert hidden not in text
        # Read where they are used, whole.
        assert s.auth_jwt_secret.get_secret_value() == secrets["AUTH_JWT_SECRET"]
        assert s.audit_key == secrets["AUDIT_HMAC_KEY"].encode()
        assert s.database_url == secrets["DATABASE_URL"]
        assert s.model_dump(mode="json")["database_url"] == "postgresql://svc:**********@db.example:5432/regimes"
    finally:
        get_settings.cache_clear()


def test_run_command_starts_the_dev_server_the_tests_start(tmp_path):
    """One definition of the dev server (tools/devserver.py): the run command's differs from the tests' only in
    the options it picks (its ports, a SQLite file in DATA_DIR, the Web UI, its log level), so virtual time moves
    against `make run` (`regime simulate`, the demos) as it does in the tests."""
    import devstack
    from tools.devserver import DevServer

    settings = Settings(temporal_port=7300, temporal_ui_port=8300)
    assert devstack.temporal_command(settings, tmp_path) == DevServer(
        7300, str(tmp_path / "temporal.db"), log_level="warn", ui_port=8300).command()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make run" in readme
    commands = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    assert "set -euo pipefail" in commands
    assert commands[-1] == "make test"


def test_run_command_starts_everything_and_stops_cleanly(tmp_path):
    """`make run` in small: devstack on free ports and a temporary DATA_DIR serves the API, its docs and the
    Temporal UI, then stops every process it started on SIGINT (Ctrl-C), PostgreSQL included."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.harness import free_port

    ports = {"API_PORT": free_port(), "TEMPORAL_PORT": free_port(), "TEMPORAL_UI_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if k not in ("TEMPORAL_ADDRESS", "DATABASE_URL")}
    env.update({k: str(v) for k, v in ports.items()}, DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    log = tmp_path / "devstack.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Press Ctrl-C to stop." not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        api = f"http://127.0.0.1:{ports['API_PORT']}"
        text = log.read_text()
        assert f"{api}/docs" in text and f"{api}/web/regimes" in text and f"http://127.0.0.1:{ports['TEMPORAL_UI_PORT']}" in text
        worker_metrics = re.search(r"\(API\), (http://127\.0\.0\.1:\d+/metrics) \(worker\)", text).group(1)
        for url in (f"{api}/health/ready", f"{api}/docs", f"http://127.0.0.1:{ports['TEMPORAL_UI_PORT']}/",
                    f"{api}/metrics", worker_metrics):  # the run command prints both metrics URLs
            with urllib.request.urlopen(url, timeout=10) as r:
                assert r.status == 200, url
        postmaster = int((tmp_path / "data" / "pg" / "postmaster.pid").read_text().split()[0])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log.read_text()
    children = [int(p) for p in re.findall(r"started .+ \(pid (\d+)\)", log.read_text())]
    assert len(children) == 3
    # Its own log lines, the worker's and the API's are JSON objects (LOG_FORMAT=json, logs.py); the banner is text.
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            assert isinstance(json.loads(line), dict), line
        else:
            assert not line or line.startswith(("  ", "Special measures regime orchestrator is running",
                                                "Press Ctrl-C to stop.")), line

    def alive(pid: int) -> bool:  # a zombie waiting for init to reap it counts as gone
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.monotonic() + 10  # the postmaster may still be exiting when pg_ctl stop returns
    while (left := [p for p in [*children, postmaster] if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes {left} outlived the run command:\n{log.read_text()}"
