"""`oxeo-flows up` / `down`: a local Prefect server, the work pool, deployments and a process worker.

Processes are started in their own sessions and recorded (pids, port, log files) in
`$PREFECT_HOME/oxeo-up.json`, so `down` stops exactly what `up` started. Prefect workers ignore the
first SIGTERM (graceful shutdown of running flows), so stopping sends SIGTERM twice, then SIGKILL after
a grace period.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from oxeo_flows.errors import OxeoError


@dataclass
class StackState:
    port: int
    api_url: str
    ui_url: str
    server_pid: int
    worker_pid: int | None
    work_pool: str
    log_dir: str
    deployments: dict[str, str]


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()


def state_file() -> Path:
    return prefect_home() / "oxeo-up.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_env(api_url: str) -> dict[str, str]:
    """Environment for the server, the worker and the flow runs it starts (telemetry off).

    Relative default data paths are pinned to the current directory: flow runs execute in the code's
    directory, and results belong where the user ran `oxeo-flows up`.
    """
    from oxeo_flows.settings import anchored, load_settings

    env = dict(os.environ)
    here = anchored(load_settings(), Path.cwd())
    env.setdefault("OXEO_STORAGE", here.storage)
    env.setdefault("OXEO_DATABASE_URL", here.database_url)
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_UI_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "oxeo_flows",
        }
    )
    return env


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def wait_healthy(api_url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OxeoError(f"prefect server exited with status {proc.returncode}; see its log")
        if _healthy(api_url):
            return
        time.sleep(0.5)
    raise OxeoError(f"prefect server at {api_url} not healthy after {timeout_s:.0f} s")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", *args],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def up(
    port: int | None = None,
    work_pool: str = "oxeo-process",
    worker: bool = True,
    worker_query_seconds: float | None = None,
    timeout_s: float = 120.0,
) -> StackState:
    """Start server, work pool, deployments and worker; record and return what was started."""
    if state_file().exists():
        raise OxeoError(f"a stack is already recorded in {state_file()}; run `oxeo-flows down` first")
    port = port or 4200
    api_url = f"http://127.0.0.1:{port}/api"
    if _healthy(api_url):
        raise OxeoError(f"something already answers on {api_url}; choose another --port")
    log_dir = prefect_home() / "oxeo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = stack_env(api_url)
    server = _spawn(
        ["server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log_dir / "server.log"
    )
    state = StackState(
        port, api_url, f"http://127.0.0.1:{port}", server.pid, None, work_pool, str(log_dir), {}
    )
    try:
        wait_healthy(api_url, server, timeout_s)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from oxeo_flows.flows.deployments import deploy_all, ensure_work_pool

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            ensure_work_pool(work_pool)
            state.deployments = deploy_all(work_pool)
        if worker:
            wenv = dict(env)
            if worker_query_seconds is not None:
                wenv["PREFECT_WORKER_QUERY_SECONDS"] = str(worker_query_seconds)
            w = _spawn(
                ["worker", "start", "--pool", work_pool, "--type", "process"], wenv, log_dir / "worker.log"
            )
            state.worker_pid = w.pid
    except BaseException:
        stop(state)
        raise
    state_file().parent.mkdir(parents=True, exist_ok=True)
    state_file().write_text(json.dumps(asdict(state), indent=2))
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_process(pid: int, signals: tuple[int, ...] = (signal.SIGTERM,), grace_s: float = 15.0) -> None:
    """Signal the process group of `pid` (each signal once), then SIGKILL it if it is still alive."""
    for sig in signals:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s / len(signals)
        while time.monotonic() < deadline:
            _reap(pid)
            if not _alive(pid):
                return
            time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def stop(state: StackState) -> None:
    if state.worker_pid:
        stop_process(state.worker_pid, (signal.SIGTERM, signal.SIGTERM))
    stop_process(state.server_pid)


def down() -> StackState | None:
    """Stop what `up` recorded; returns the state that was stopped (None if nothing was recorded)."""
    path = state_file()
    if not path.exists():
        return None
    state = StackState(**json.loads(path.read_text()))
    stop(state)
    path.unlink()
    return state


def wait_forever(state: StackState) -> None:
    """Block until Ctrl-C or SIGTERM, then stop the stack."""

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)  # also when started from a shell that ignores SIGINT
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        down()
