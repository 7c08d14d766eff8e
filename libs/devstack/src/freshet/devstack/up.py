"""`make up`: the whole system on one machine, on the embedded default.

Starts the embedded broker (topics created explicitly), migrates the SQLite catalog, starts
the five services as separate processes, registers a demo endpoint over a generated SQLite
shop database and triggers its collection. Ctrl-C (SIGINT) or SIGTERM stops every process it
started: the services first, so they finish in-flight work, then the broker.

Every setting comes from `FRESHET_*` variables; a set `FRESHET_KAFKA_BOOTSTRAP` or
`FRESHET_DATABASE_URL` points the stack at an existing Kafka or PostgreSQL instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from freshet.catalog.migrate import migrate
from freshet.catalog.secrets import generate_key
from freshet.devstack.broker import EmbeddedBroker
from freshet.devstack.children import die_with_parent
from freshet.devstack.demo_data import create_demo_database
from freshet.kit.broker import ensure_topics
from freshet.kit.tokens import new_token, token_entry

SERVICES: dict[str, int] = {  # module -> offset from the gateway port
    "gateway": 0,
    "collector": 1,
    "previewer": 2,
    "refresher": 3,
    "scheduler": 4,
}
DEMO_ENDPOINT = "demo"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 25.0


@dataclass
class Stack:
    data_dir: Path
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    kafka_port: int = 9092
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    broker: EmbeddedBroker | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Per-service HTTP ports; by default the gateway port and the four after it.
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Which services to start (benchmarks start only what a path needs).
    services: tuple[str, ...] = tuple(SERVICES)

    def __post_init__(self) -> None:
        for name, offset in SERVICES.items():
            self.ports.setdefault(name, self.gateway_port + offset)

    @classmethod
    def from_env(cls) -> Stack:
        env = os.environ
        data_dir = Path(env.get("FRESHET_DATA_DIR", "var")).resolve()
        return cls(
            data_dir=data_dir,
            host=env.get("FRESHET_HTTP_HOST", "127.0.0.1"),
            gateway_port=int(env.get("FRESHET_HTTP_PORT", "8000")),
            kafka_port=int(env.get("FRESHET_KAFKA_PORT", "9092")),
            kafka_bootstrap=env.get("FRESHET_KAFKA_BOOTSTRAP"),
            database_url=env.get("FRESHET_DATABASE_URL"),
        )

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def bootstrap(self) -> str:
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        assert self.broker is not None
        return self.broker.bootstrap

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'catalog.db'}"

    def prepare_files(self) -> tuple[str, Path]:
        """Secret key, admin token and demo data under the data folder (kept across starts)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            _write_private(key_file, generate_key() + "\n")
        token_file = self.data_dir / "admin-token"
        tokens_file = self.data_dir / "api-tokens"
        if not token_file.exists() or not tokens_file.exists():
            token = new_token()
            _write_private(token_file, token + "\n")
            _write_private(tokens_file, token_entry(token, "admin", "dev-admin") + "\n")
        demo = self.data_dir / "demo" / "shop.db"
        demo.parent.mkdir(exist_ok=True)
        create_demo_database(demo)
        return token_file.read_text().strip(), demo

    def service_env(self, name: str) -> dict[str, str]:
        return {
            **os.environ,
            "FRESHET_DATA_DIR": str(self.data_dir),
            "FRESHET_DATABASE_URL": self.catalog_url,
            "FRESHET_KAFKA_BOOTSTRAP": self.bootstrap,
            "FRESHET_SECRET_KEY_FILE": str(self.data_dir / "secret.key"),
            "FRESHET_API_TOKENS_FILE": str(self.data_dir / "api-tokens"),
            "FRESHET_HTTP_HOST": self.host,
            "FRESHET_HTTP_PORT": str(self.ports[name]),
            **self.extra_env,
        }

    def start(self) -> tuple[str, Path]:
        """Everything but the demo registration: files, broker, topics, catalog, services."""
        token, demo = self.prepare_files()
        if not self.kafka_bootstrap:
            self.broker = EmbeddedBroker(self.kafka_port, self.data_dir / "logs" / "broker.log")
            self.broker.start()
        asyncio.run(ensure_topics(self.bootstrap))
        asyncio.run(migrate(self.catalog_url))
        self.start_services()
        self.wait_ready()
        return token, demo

    def start_services(self) -> None:
        for name in self.services:
            self.processes[name] = self._spawn(name, name, self.ports[name])
        _write_private(
            self.data_dir / "processes.json",
            json.dumps({n: p.pid for n, p in self.processes.items()}),
        )

    def _spawn(
        self, service: str, label: str, port: int, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.data_dir / "logs" / f"{label}.log").open("ab")
        try:
            return subprocess.Popen(  # noqa: S603 - our own interpreter
                [sys.executable, "-m", f"freshet.{service}"],
                env={**self.service_env(service), "FRESHET_HTTP_PORT": str(port), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the launcher only; it stops them in order
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def start_replica(
        self, service: str, replica: str, port: int, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Another process of `service` (same settings plus `env`, its own port and log
        `<replica>.log`), stopped with the others; `url(replica)` reaches it."""
        self.ports[replica] = port
        process = self._spawn(service, replica, port, env)
        self.processes[replica] = process
        return process

    def wait_ready(self, names: tuple[str, ...] | None = None) -> None:
        """Until every service (or the named processes, replicas too) answers /ready."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = set(names or self.services)
        with httpx.Client(timeout=2.0) as http:
            while pending:
                for name in list(pending):
                    proc = self.processes[name]
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with code {proc.returncode}; "
                            f"see {self.data_dir / 'logs' / (name + '.log')}"
                        )
                    if self._answers_ready(http, name, proc.pid):
                        pending.discard(name)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready after {READY_TIMEOUT_S}s: {sorted(pending)}")
                time.sleep(0.2)

    def _answers_ready(self, http: httpx.Client, name: str, pid: int) -> bool:
        # The pid check makes sure it is our process answering, not whatever else holds the
        # port (a port can be taken between choosing it and the service binding it).
        try:
            response = http.get(f"{self.url(name)}/ready")
            return response.status_code == 200 and response.json().get("pid") == pid
        except (httpx.HTTPError, ValueError):
            return False

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.processes.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.broker is not None:
            self.broker.stop()


def register_demo(stack: Stack, token: str, demo: Path) -> dict[str, Any]:
    """Register the demo endpoint once and trigger its collection on every start."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=10.0) as http:
        endpoints = http.get("/endpoints").raise_for_status().json()
        endpoint = next((e for e in endpoints if e["name"] == DEMO_ENDPOINT), None)
        if endpoint is None:
            endpoint = (
                http.post(
                    "/endpoints",
                    json={
                        "name": DEMO_ENDPOINT,
                        "kind": "sqlite",
                        "config": {"path": str(demo)},
                        "labels": ["demo"],
                    },
                )
                .raise_for_status()
                .json()
            )
        trigger = http.post(f"/collections/{endpoint['collection_id']}/trigger")
        if trigger.status_code not in (202, 409):
            trigger.raise_for_status()
        return dict(endpoint)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def main() -> int:
    stack = Stack.from_env()
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    out = sys.stdout
    try:
        token, demo = stack.start()
        endpoint = register_demo(stack, token, demo)
        out.write(
            "\nFreshet is up.\n"
            f"  gateway        {stack.gateway_url}\n"
            f"  web UI         {stack.gateway_url}/ui/\n"
            f"  API docs       {stack.gateway_url}/docs\n"
            f"  GraphQL        {stack.gateway_url}/graphql\n"
            f"  admin token    {token}\n"
            f"                 (also in {stack.data_dir / 'admin-token'})\n"
            f"  demo endpoint  {endpoint['name']} ({endpoint['id']})\n"
            f"  logs           {stack.data_dir / 'logs'}\n"
            "Press Ctrl-C to stop.\n"
        )
        out.flush()
        while not stopping:
            for name, proc in stack.processes.items():
                if proc.poll() is not None:
                    out.write(f"{name} exited with code {proc.returncode}; stopping.\n")
                    stopping = True
            time.sleep(0.3)
        return 0
    except Exception as exc:
        sys.stderr.write(f"freshet up failed: {exc}\n")
        return 1
    finally:
        out.write("Stopping Freshet…\n")
        out.flush()
        stack.stop()
        out.write("Stopped.\n")
