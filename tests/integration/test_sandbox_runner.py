"""`make sandbox` in the foreground: it stops within seconds on SIGTERM or SIGINT, even with a request in flight."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = PROJECT_ROOT / "airflow_settings.yaml"
PORTS = {"18931": "imis", "18932": "thrive", "18925": "smtp"}  # the project's settings file names these


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _settings_on_free_ports(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    text, ports = SETTINGS.read_text(), {}
    for fixed, name in PORTS.items():
        assert fixed in text, f"airflow_settings.yaml no longer names port {fixed}"
        ports[name] = _free_port()
        text = text.replace(fixed, str(ports[name]))
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(text)
    return path, ports


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_foreground_runner_stops_within_seconds_with_connections_open(tmp_path, stop_signal):
    settings, ports = _settings_on_free_ports(tmp_path)
    runner = subprocess.Popen([sys.executable, "-m", "sandbox", "--settings", str(settings), "--contacts", "50"],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_until_serving(runner)
        base = f"http://127.0.0.1:{ports['imis']}"
        keep_alive = httpx.Client(base_url=base)
        assert keep_alive.post("/token", data={"grant_type": "password"}).status_code == 400  # a live connection
        in_flight = threading.Thread(target=_long_request, args=(base,), daemon=True)
        in_flight.start()
        time.sleep(0.3)
        started = time.monotonic()
        runner.send_signal(stop_signal)
        runner.wait(timeout=15)
        assert time.monotonic() - started < 5, "the runner took more than 5 s to stop"
        assert runner.returncode == 0
    finally:
        if runner.poll() is None:
            runner.kill()


def _wait_until_serving(runner: subprocess.Popen[str]) -> None:
    for line in runner.stdout:  # type: ignore[union-attr]
        if line.startswith("Ctrl-C to stop."):
            return
    pytest.fail(f"the sandbox runner exited before serving (code {runner.wait()})")


def _long_request(base: str) -> None:
    """A request that holds its connection open past the stop: a client slow to send its body."""
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        time.sleep(30)
