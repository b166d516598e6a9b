"""Operate from a real Prefect server: `oxeo-flows up`, a run triggered like the UI's Run button,
artifacts, library logs in the run's logs, secrets never leaked, a browser view of the run, `down`.

Slow (about two minutes): starts a real `prefect server` and a process worker on a free loopback port
with a temporary PREFECT_HOME, and stops every process it started.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from oxeo_flows import store
from oxeo_flows.stack import free_port

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    # run where PREFECT_HOME lives, so default data paths of the stack never land in the repository
    return subprocess.run(
        [sys.executable, "-m", "oxeo_flows.cli", *args],
        cwd=Path(env["PREFECT_HOME"]).parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("stack") / "prefect-home"
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    up = _cli(env, "up", "--port", str(port), "--detach")
    state_path = home / "oxeo-up.json"
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout
        state = json.loads(state_path.read_text())
        yield {"env": env, "state": state, "home": home}
    finally:
        down = _cli(env, "down", timeout=120)
        assert down.returncode == 0, down.stderr
        if state_path.exists():  # `up` failed half-way: nothing may be left running
            pytest.fail("state file left behind")
    for pid in (state["server_pid"], state["worker_pid"]):
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(pid), f"process {pid} still running after `down`"


def test_ui_run_of_the_water_deployment(stack: dict[str, Any], sample: Path, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from oxeo_flows.flows.secrets import set_secret

    state = stack["state"]
    assert set(state["deployments"]) == {"extract", "predict", "timeseries", "water"}
    token = f"TOKEN-{uuid.uuid4().hex}"
    db_marker = f"DBMARK{uuid.uuid4().hex}"
    db_path = tmp_path / f"{db_marker}.db"
    params = {
        "aoi": str(sample / "aoi.geojson"),
        "catalog": str(sample / "catalog.json"),
        "start_date": "2024-03-01",
        "end_date": "2024-04-30",
        "constellations": "sentinel-2,landsat-8",
        "storage": str(tmp_path / "archive"),
        "database_url": "secret:oxeo-test-db",
        "catalog_token": "secret:oxeo-test-token",
    }
    with temporary_settings(updates={PREFECT_API_URL: state["api_url"]}):
        set_secret("oxeo-test-token", token)
        set_secret("oxeo-test-db", f"sqlite:///{db_path}")
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("water/water")
            # What the UI's Run button does: create a flow run from the deployment with parameters.
            run = client.create_flow_run_from_deployment(dep.id, parameters=params)
            deadline = time.monotonic() + 420
            while True:
                run = client.read_flow_run(run.id)
                if run.state is not None and run.state.is_final():
                    break
                assert time.monotonic() < deadline, f"flow run still {run.state} after 420 s"
                time.sleep(2)
            log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
            logs: list[Any] = []
            while page := client.read_logs(log_filter=log_filter, limit=200, offset=len(logs)):
                logs += page
            arts = [a for a in client.read_artifacts() if a.flow_run_id == run.id]
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    messages = [m.message for m in logs]
    assert run.state is not None and run.state.is_completed(), "\n".join(messages[-30:])
    assert run.name == "water-aoi-2024-03-01-2024-04-30"
    assert runs[0].parameters["database_url"] == "secret:oxeo-test-db"  # the reference, not the value

    # time series rows landed in the database named by the secret
    engine = store.connect(f"sqlite:///{db_path}")
    rows = store.query_observations(engine)
    assert {r["constellation"] for r in rows} == {"sentinel-2", "landsat-8"}
    with engine.connect() as conn:
        flow_runs = conn.execute(sa.select(store.model_run_table)).mappings().all()
    assert [r["prefect_flow_run_id"] for r in flow_runs] == [str(run.id)]

    # artifacts: report, table of rows, finished progress
    kinds = {a.type: a for a in arts}
    assert {"markdown", "table", "progress", "image"} <= set(kinds)
    table = kinds["table"].data
    assert len(json.loads(table) if isinstance(table, str) else table) == len(rows)
    # the library's own loggers stream into the run's logs
    assert any("solar days to extract" in m for m in messages)
    assert any("observations written" in m for m in messages)

    # no secret anywhere the run wrote: logs, artifacts, server and worker logs, the results DB
    haystacks = [*messages, *(str(a.data) for a in arts), *(str(a.description) for a in arts)]
    for log_file in Path(state["log_dir"]).glob("*.log"):
        haystacks.append(log_file.read_text(errors="replace"))
    haystacks.append(json.dumps([dict(r) for r in flow_runs], default=str))
    for text in haystacks:
        assert token not in text
        assert db_marker not in text

    if CHROMIUM:
        _check_ui_page(state["ui_url"], str(run.id), run.name, tmp_path)
    else:
        assert not os.environ.get("OXEO_REQUIRE_BROWSER"), "chromium is required (CI installs it)"


def _check_ui_page(ui_url: str, run_id: str, run_name: str, tmp_path: Path) -> None:
    """Headless Chromium renders the run's page; the rendered DOM names the run and its state."""
    url = f"{ui_url}/runs/flow-run/{run_id}"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,900",
        "--virtual-time-budget=20000",
    ]
    shot = tmp_path / "flow-run.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)  # type: ignore[list-item]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,  # type: ignore[list-item]
    ).stdout
    assert shot.exists() and shot.stat().st_size > 10_000
    assert run_name in dom
    assert "Completed" in dom


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Hook.received.append(body.decode(errors="replace"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_failure_alert_and_prefect_deploy_all(stack: dict[str, Any], tmp_path: Path) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    state, env = stack["state"], {**stack["env"], "PREFECT_API_URL": stack["state"]["api_url"]}
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: state["api_url"]}):
            CustomWebhookNotificationBlock(
                name="oxeo-test",
                url=f"http://127.0.0.1:{server.server_port}/hook",
                method="POST",
                json_data={"subject": "{{subject}}", "body": "{{body}}"},
                allow_private_urls=True,
            ).save("oxeo-test-alerts", overwrite=True)
            alert = _cli(env, "alert-on-failure", "--block", "oxeo-test-alerts")
            assert alert.returncode == 0, alert.stderr
            time.sleep(2)  # let the automation service load the new automation
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name("water/water")
                bad = {
                    "aoi": str(tmp_path / "missing.geojson"),
                    "start_date": "2024-01-01",
                    "end_date": "2024-01-31",
                }
                run = client.create_flow_run_from_deployment(dep.id, parameters=bad)
                deadline = time.monotonic() + 240
                while not (run.state and run.state.is_final()):
                    assert time.monotonic() < deadline
                    time.sleep(2)
                    run = client.read_flow_run(run.id)
            assert run.state is not None and run.state.is_failed()
            deadline = time.monotonic() + 120
            while not any(run.name in r for r in _Hook.received):
                assert time.monotonic() < deadline, f"no notification for {run.name}: {_Hook.received}"
                time.sleep(1)
            assert "Failed" in next(r for r in _Hook.received if run.name in r)
    finally:
        server.shutdown()

    # `prefect deploy --all` from the repository root registers every deployment of prefect.yaml
    repo = Path(__file__).resolve().parents[1]
    deploy_env = {
        **env,
        "OXEO_GIT_REPOSITORY": "https://git.example.invalid/oxeo-flows.git",
        "OXEO_GIT_BRANCH": "main",
        "OXEO_IMAGE": "oxeo-flows:test",
    }
    with temporary_settings(updates={PREFECT_API_URL: state["api_url"]}):
        from oxeo_flows.flows.deployments import ensure_work_pool
        from oxeo_flows.flows.secrets import set_secret

        ensure_work_pool("oxeo-docker", "docker")
        ensure_work_pool("oxeo-kubernetes", "kubernetes")
        git_token = f"GITTOKEN-{uuid.uuid4().hex}"
        set_secret("oxeo-git-token", git_token)
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
            cwd=repo,
            env=deploy_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with get_client(sync_client=True) as client:
            deps = {d.name: d for d in client.read_deployments()}
    assert {
        "water",
        "extract",
        "predict",
        "timeseries",
        "water-weekly",
        "water-docker",
        "water-kubernetes",
    } <= set(deps)
    weekly = deps["water-weekly"].schedules
    assert len(weekly) == 1 and not weekly[0].active and weekly[0].schedule.cron == "45 8 * * 1"  # type: ignore[union-attr]
    docker = deps["water-docker"]
    assert docker.work_pool_name == "oxeo-docker" and docker.job_variables["image"] == "oxeo-flows:test"
    pulled = json.dumps(docker.pull_steps)
    assert "{{ prefect.blocks.secret.oxeo-git-token }}" in pulled and git_token not in pulled


def test_up_in_the_foreground_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "oxeo_flows.cli", "up", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        state = json.loads((home / "oxeo-up.json").read_text())
        assert _alive(state["server_pid"]) and _alive(state["worker_pid"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (home / "oxeo-up.json").exists()
    for pid in (state["server_pid"], state["worker_pid"]):
        assert not _alive(pid)
