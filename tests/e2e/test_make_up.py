"""`make up` from a clean clone, the way the README says: it comes up, the demo endpoint's
datasets show previews, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from freshet.devstack.broker import PORT_RANGE, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("make-up")]

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 420  # includes `uv sync` of a fresh virtual environment


def clean_clone(target: Path) -> Path:
    """The files a clone of the working tree would have (tracked and new, minus ignored)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            dst = target / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return target


def free_port_block(size: int = 5) -> int:
    """A base port with `size` free ports after it (the gateway and the four services)."""
    for _ in range(200):
        base = free_port()
        if base + size < PORT_RANGE[1] and all(port_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError("no free port block")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def stack_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    checkout = clean_clone(tmp_path / "freshet")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRESHET_", "VIRTUAL_ENV", "PYTEST", "UV_PROJECT"))
    }
    base = free_port_block()
    kafka_port = free_port()
    env |= {"FRESHET_HTTP_PORT": str(base), "FRESHET_KAFKA_PORT": str(kafka_port)}
    proc = subprocess.Popen(
        ["make", "up"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def read_until(proc: subprocess.Popen[str], lines: list[str], marker: str, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line.rstrip("\n"))
            if marker in line:
                return
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.1)
    raise AssertionError(f"{marker!r} not printed; output was:\n" + "\n".join(lines[-60:]))


def test_make_up_runs_the_demo_and_ctrl_c_stops_everything(
    stack_process: tuple[subprocess.Popen[str], list[str]],
) -> None:
    proc, lines = stack_process
    read_until(proc, lines, "Press Ctrl-C to stop.", STARTUP_TIMEOUT_S)
    output = "\n".join(lines)
    gateway = re.search(r"gateway\s+(http://\S+)", output)
    token = re.search(r"admin token\s+(\S+)", output)
    assert gateway, output
    assert token, output
    assert re.search(r"API docs\s+http://\S+/docs", output)
    started = psutil.Process(proc.pid).children(recursive=True)
    names = " ".join(" ".join(p.cmdline()) for p in started)
    for service in ("gateway", "collector", "previewer", "refresher", "scheduler"):
        assert f"freshet.{service}" in names
    assert "tansu" in names

    headers = {"Authorization": f"Bearer {token.group(1)}"}
    deadline = time.monotonic() + 120
    datasets: list[dict[str, object]] = []
    with httpx.Client(base_url=gateway.group(1), headers=headers, timeout=5) as http:
        assert http.get("/docs").status_code == 200
        demo = next(e for e in http.get("/endpoints").json() if e["name"] == "demo")
        while time.monotonic() < deadline:
            datasets = http.get("/datasets", params={"endpoint_id": demo["id"]}).json()
            if len(datasets) >= 4 and all(d["preview"] for d in datasets):
                break
            time.sleep(0.5)
    assert len(datasets) >= 4, datasets
    assert all(d["preview"] and d["preview"]["sampledAt"] for d in datasets), datasets  # type: ignore[index]

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    proc.wait(timeout=60)
    read_until(proc, lines, "Stopped.", 5)
    time.sleep(0.5)
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
