"""Linli as a cluster on one machine: PostgreSQL, Redis, HAProxy, `linli serve` replicas,
`linli worker` processes and the sandbox government backend, as local processes.

`make cluster` (`linli cluster`) runs it until Ctrl-C; tests and benchmarks drive the same
`Cluster` class::

    with Cluster(ClusterConfig(replicas=2, workers=1, port=0)) as cluster:
        httpx.get(cluster.url + "/readyz")
        cluster.kill("replica-1", signal.SIGKILL)   # chaos: the process group, by pid
        cluster.start_process("replica-1")          # back, on the same port

Every child is the leader of its own process group (and session), so a signal reaches the
child and whatever it started, and Ctrl-C in the launcher's terminal reaches only the launcher,
which then stops the children in order: HAProxy, the replicas and workers (SIGTERM, a grace
period, SIGKILL for stragglers), the sandbox, then a Redis or PostgreSQL it started itself.
Children started from the main thread also get SIGTERM (SIGINT: PostgreSQL) from the kernel if
the launcher itself dies. Each child writes to var/cluster/logs/<name>.log.

What every replica and worker gets is in `Cluster.process_env`; docs/deployment.md explains the
topology, and deploy/ holds the HAProxy template and systemd units for a real machine.
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from assistant.core.settings import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "deploy" / "haproxy.cfg.template"
MACHINE_POSTGRES = "127.0.0.1:5432"
MACHINE_REDIS = "redis://127.0.0.1:6379"
# The console's event stream: HAProxy lets it stay open this long (docs/deployment.md).
SSE_PATH = "/console/queue-events"


class ClusterError(RuntimeError):
    """The cluster could not start (a missing program, a child that died, a timeout)."""


@dataclass
class ClusterConfig:
    """How many of each process, on which ports, against which database.

    `port` 0 (or a busy port with `port_fallback`) takes a free port; `postgres_url` / `redis_url`
    None find the machine's (127.0.0.1:5432, `redis-cli ping`) or start one under `root`."""

    replicas: int = 3
    workers: int = 2
    host: str = "127.0.0.1"
    port: int = 8080
    port_fallback: bool = True
    stats_port: int = 0
    sandbox_port: int = 0
    database: str = "linli_cluster"
    # The PostgreSQL server (postgresql+psycopg://user@host:port; a database in it is ignored);
    # None: the machine's at 127.0.0.1:5432 when it answers, else one of our own.
    postgres_url: str | None = None
    redis_url: str | None = None
    redis_db: int = 0
    # Drop and recreate `database` before starting (benchmarks, tests); never for `make cluster`.
    fresh_database: bool = False
    root: Path = PROJECT_ROOT / "var" / "cluster"
    # Added to every replica's and worker's environment (and the index build's), last.
    extra_env: dict[str, str] = field(default_factory=dict)
    # What readiness means, for the launcher and HAProxy's check: None is /readyz, or /healthz on
    # a release that answers 404 there.
    check_path: str | None = None
    ready_timeout_s: float = 300.0
    stop_timeout_s: float = 15.0
    haproxy: str = "haproxy"
    python: str = sys.executable

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.workers < 0:
            raise ValueError("a cluster needs at least one replica and no negative number of workers")
        self.root = Path(self.root).resolve()


@dataclass
class _Child:
    name: str
    kind: str  # replica | worker | haproxy | sandbox | redis | postgres
    argv: list[str]
    env: dict[str, str]
    stop_signal: int = signal.SIGTERM
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    run_as: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec hook: the kernel sends `sig` to the child when the thread that started it ends
    (PR_SET_PDEATHSIG). Only from the main thread: a worker thread ending would take it along."""
    if threading.current_thread() is not threading.main_thread() or not sys.platform.startswith("linux"):
        return None
    import ctypes  # noqa: PLC0415 - Linux only, and only here

    def hook() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig)  # 1 = PR_SET_PDEATHSIG

    return hook


class Cluster:
    """The processes of one cluster; `start()` brings them up, `stop()` takes them all down."""

    def __init__(self, config: ClusterConfig | None = None, *, echo: Callable[[str], None] | None = None) -> None:
        self.config = config or ClusterConfig()
        self.root = self.config.root
        self.logs = self.root / "logs"
        self.echo = echo or (lambda _message: None)
        self.children: dict[str, _Child] = {}
        self.port = 0
        self.stats_port = 0
        self.database_url = ""
        self.redis_url = ""
        self.check_path = self.config.check_path or "/readyz"
        self._base_env: dict[str, str] = {}
        self._started = False

    # ---- what others read ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """HAProxy's frontend: the cluster's one address."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/"

    @property
    def replica_urls(self) -> dict[str, str]:
        return {c.name: f"http://127.0.0.1:{c.port}" for c in self.children.values() if c.kind == "replica"}

    @property
    def replica_names(self) -> list[str]:
        return [c.name for c in self.children.values() if c.kind == "replica"]

    @property
    def worker_names(self) -> list[str]:
        return [c.name for c in self.children.values() if c.kind == "worker"]

    @property
    def pids(self) -> dict[str, int]:
        """Each running child's pid (also its process group id)."""
        return {c.name: c.pid for c in self.children.values() if c.alive() and c.pid is not None}

    def pid(self, name: str) -> int | None:
        child = self._child(name)
        return child.pid if child.alive() else None

    def alive(self, name: str) -> bool:
        return self._child(name).alive()

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def exited(self) -> dict[str, int]:
        """Children that have exited, with their return codes (negative: the signal)."""
        return {c.name: rc for c in self.children.values()
                if c.process is not None and (rc := c.process.poll()) is not None}

    def group_members(self) -> list[int]:
        """Every live process in the children's process groups (none after `stop()`)."""
        groups = {c.pid for c in self.children.values() if c.pid is not None}
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[2]) in groups:
                members.append(int(entry.name))
        return members

    def backend_status(self) -> dict[str, str]:
        """HAProxy's view of each replica (UP, DOWN, MAINT, …), from its stats page."""
        try:
            with urllib.request.urlopen(f"{self.stats_url};csv", timeout=2) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "replicas"
                and r["svname"] not in ("FRONTEND", "BACKEND")}

    # ---- start and stop ------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """PostgreSQL and Redis (found or started), the data key, the sandbox, migrations and the
        index built once, then the replicas (in parallel, each polled until ready) and workers,
        then HAProxy, waiting until it sees every replica up."""
        started = time.monotonic()
        self._started = True
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self.logs.mkdir(exist_ok=True)
        if shutil.which(self.config.haproxy) is None:
            raise ClusterError(f"{self.config.haproxy} not found: apt-get install -y haproxy")
        self.database_url = self._postgres()
        self.redis_url = self._redis()
        key = self._data_key()
        self._choose_ports()
        sandbox = self._add("sandbox", "sandbox",
                            [self.config.python, "-m", "connectors.sandbox", "--host", "127.0.0.1",
                             "--port", str(self.config.sandbox_port)],
                            {"LINLI_SANDBOX_DB_PATH": str(self.root / "sandbox" / "sandbox.sqlite")},
                            port=self.config.sandbox_port)
        self._spawn(sandbox)
        self._base_env = self._common_env(key, sandbox.port or 0)
        self.echo(f"PostgreSQL {self._safe(self.database_url)}; Redis {self.redis_url}")
        self._run_once("migrate", [self.config.python, "-m", "assistant.cluster", "migrate"])
        self.echo("building the index once (linli kb build --if-missing) …")
        self._run_once("build", [self.config.python, "-m", "assistant.cli", "kb", "build", "--if-missing"])
        for i in range(1, self.config.replicas + 1):
            self._add(f"replica-{i}", "replica", [], {}, port=free_port())
        for i in range(1, self.config.workers + 1):
            self._add(f"worker-{i}", "worker", [], {})
        for child in self.children.values():
            if child.kind in ("replica", "worker"):
                self._spawn(child)
        self._wait_http(sandbox, "/healthz")
        for name in self.replica_names:
            self._wait_replica(self.children[name])
        self._start_haproxy()
        self.echo(f"cluster ready in {time.monotonic() - started:.1f} s")

    def stop(self) -> None:
        """SIGTERM HAProxy, then replicas and workers, then the sandbox and any Redis or
        PostgreSQL started here; whatever is still running after the grace period is killed."""
        if not self._started:
            return
        order = (("haproxy",), ("replica", "worker"), ("sandbox",), ("redis",), ("postgres",))
        for kinds in order:
            self._stop([c for c in self.children.values() if c.kind in kinds])
        self._started = False

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the child's process group (chaos tests: SIGKILL one, SIGTERM another)."""
        child = self._child(name)
        if child.pid is None:
            raise ClusterError(f"{name} was never started")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)

    def start_process(self, name: str, *, wait: bool = True) -> int:
        """(Re)start one child by name on its own port; a running one is stopped first. A
        replica is waited for until ready. Returns its new pid."""
        child = self._child(name)
        if child.alive():
            self._stop([child])
        if child.kind == "haproxy":
            self._start_haproxy()
        else:
            self._spawn(child)
            if wait and child.kind == "replica":
                self._wait_replica(child)
        assert child.pid is not None
        return child.pid

    def wait_backend(self, want: dict[str, str], timeout: float = 30.0) -> float:
        """Seconds until HAProxy reports each named replica in the wanted status ("UP", "DOWN")."""
        started = time.monotonic()
        while True:
            status = self.backend_status()
            if all(status.get(name, "").startswith(state) for name, state in want.items()):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ClusterError(f"HAProxy did not report {want} within {timeout:.0f} s (now {status})")
            time.sleep(0.1)

    # ---- the environment -----------------------------------------------------------------

    def process_env(self, name: str) -> dict[str, str]:
        """The LINLI_… variables one process gets (without the inherited environment)."""
        child = self.children.get(name)
        folder = self.root / name
        env = dict(self._base_env)
        env.update(LINLI_DATA_DIR=str(folder), LINLI_INDEX_DIR=str(folder / "index"),
                   PROMETHEUS_MULTIPROC_DIR=str(folder / "prom"))
        if child is not None and child.kind == "replica":
            env["LINLI_API__BACKGROUND"] = "false"
        env.update(self.config.extra_env)
        return env

    def _common_env(self, key: str, sandbox_port: int) -> dict[str, str]:
        return {
            "LINLI_DATABASE_URL": self.database_url,
            "LINLI_INDEX_DATABASE_URL": self.database_url,
            "LINLI_EMBEDDING_CACHE": str(self.root / "cache" / "embeddings.sqlite"),
            "LINLI_LIMITS__REDIS_URL": self.redis_url,
            "LINLI_API__TRUSTED_PROXIES": json.dumps(["127.0.0.1"]),
            "LINLI_OBSERVABILITY__LOG_FORMAT": "json",
            "LINLI_PRIVACY__DATA_KEY": key,
            "LINLI_CONNECTORS__NAME": "http",
            "LINLI_CONNECTORS__BACKEND_URL": f"http://127.0.0.1:{sandbox_port}",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }

    def _choose_ports(self) -> None:
        config = self.config
        self.port = config.port or free_port(config.host)
        if config.port and not _port_free(config.host, config.port):
            if not config.port_fallback:
                raise ClusterError(f"port {config.port} is taken")
            self.port = free_port(config.host)
            self.echo(f"port {config.port} is taken; using {self.port}")
        self.stats_port = config.stats_port or free_port()
        config.sandbox_port = config.sandbox_port or free_port()

    def _data_key(self) -> str:
        """The data key shared by every process: var/cluster/data.key, made once (mode 600)."""
        path = self.root / "data.key"
        if not path.exists() or not path.read_text().strip():
            subprocess.run([self.config.python, "-m", "assistant.cli", "keygen", "--out", str(path)],
                           cwd=PROJECT_ROOT, check=True, capture_output=True)
            self.echo(f"made the data key {path} (keep a copy: without it ID and phone numbers cannot be read)")
        return path.read_text().strip()

    # ---- PostgreSQL and Redis ------------------------------------------------------------

    def _postgres(self) -> str:
        """The cluster database's URL: on the configured server, else the machine's, else one
        initialised under root/pg on a free port; the database is created when missing."""
        server = self.config.postgres_url
        if server is None:
            server = f"postgresql+psycopg://{getpass.getuser()}@{MACHINE_POSTGRES}"
            if not _postgres_answers(server):
                server = self._own_postgres()
        elif not _postgres_answers(server):
            raise ClusterError(f"PostgreSQL does not answer at {self._safe(server)}")
        _create_database(server, self.config.database, fresh=self.config.fresh_database)
        return _with_database(server, self.config.database)

    def _own_postgres(self) -> str:
        initdb, postgres = _pg_program("initdb"), _pg_program("postgres")
        if initdb is None or postgres is None:
            raise ClusterError("no PostgreSQL answers at 127.0.0.1:5432 and initdb/postgres are not installed "
                               "(apt-get install -y postgresql)")
        if os.geteuid() == 0:
            raise ClusterError("no PostgreSQL answers at 127.0.0.1:5432, and PostgreSQL refuses to run as root: "
                               "start the machine's PostgreSQL, or run `make cluster` as a normal user")
        folder = self.root / "pg"
        data = folder / "data"
        user = getpass.getuser()
        if not (data / "PG_VERSION").exists():
            folder.mkdir(exist_ok=True, mode=0o700)
            self.echo(f"initialising PostgreSQL in {data} …")
            with open(self.log_path("initdb"), "ab") as log:
                subprocess.run([initdb, "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--locale=C"],
                               stdout=log, stderr=subprocess.STDOUT, check=True)
        port = free_port()
        child = self._add("postgres", "postgres",
                          [postgres, "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                           "-c", f"unix_socket_directories={folder}", "-c", "max_connections=300"],
                          {}, port=port, stop_signal=signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        self._spawn(child)
        server = f"postgresql+psycopg://{user}@127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _postgres_answers(server, database="postgres"):
            self._check_alive(child)
            if time.monotonic() > deadline:
                raise ClusterError(f"PostgreSQL did not start; see {self.log_path('postgres')}")
            time.sleep(0.3)
        return server

    def _redis(self) -> str:
        """The machine's Redis when `redis-cli ping` answers, else a redis-server of our own."""
        if self.config.redis_url is not None:
            return self.config.redis_url
        cli = shutil.which("redis-cli")
        if cli is not None:
            ping = subprocess.run([cli, "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True, text=True,
                                  timeout=5, check=False)
            if ping.stdout.strip() == "PONG":
                return f"{MACHINE_REDIS}/{self.config.redis_db}"
        server = shutil.which("redis-server")
        if server is None:
            raise ClusterError("no Redis answers at 127.0.0.1:6379 and redis-server is not installed "
                               "(apt-get install -y redis-server)")
        folder = self.root / "redis"
        folder.mkdir(exist_ok=True, mode=0o700)
        port = free_port()
        # Redis holds only short-lived things (rate-limit counters, pub/sub): no persistence.
        child = self._add("redis", "redis", [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                                             "--save", "", "--appendonly", "no", "--daemonize", "no"], {}, port=port)
        self._spawn(child)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            self._check_alive(child)
            if time.monotonic() > deadline:
                raise ClusterError(f"redis-server did not start; see {self.log_path('redis')}")
            time.sleep(0.2)
        return f"redis://127.0.0.1:{port}/{self.config.redis_db}"

    # ---- children ------------------------------------------------------------------------

    def _child(self, name: str) -> _Child:
        if name not in self.children:
            raise KeyError(f"no process named {name!r} (have: {', '.join(self.children)})")
        return self.children[name]

    def _add(self, name: str, kind: str, argv: list[str], env: dict[str, str], *, port: int | None = None,
             stop_signal: int = signal.SIGTERM) -> _Child:
        child = _Child(name=name, kind=kind, argv=argv, env=env, port=port, stop_signal=stop_signal)
        self.children[name] = child
        return child

    def _argv(self, child: _Child) -> list[str]:
        cli = [self.config.python, "-m", "assistant.cli"]
        if child.kind == "replica":
            return [*cli, "serve", "--host", "127.0.0.1", "--port", str(child.port)]
        if child.kind == "worker":
            return [*cli, "worker", "--name", f"{socket.gethostname()}-{child.name}"]
        return child.argv

    def _spawn(self, child: _Child) -> None:
        env = dict(os.environ)
        if child.kind in ("replica", "worker"):
            env.update(self.process_env(child.name))
            prom = Path(env["PROMETHEUS_MULTIPROC_DIR"])
            # A fresh, empty metrics folder per process start (a dead process's files would count).
            shutil.rmtree(prom, ignore_errors=True)
            prom.mkdir(parents=True)
            (self.root / child.name).chmod(0o700)
        env.update(child.env)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(child.name), "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} start {child.name}\n".encode())
            log.flush()
            child.process = subprocess.Popen(
                self._argv(child), cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent(child.stop_signal))

    def _run_once(self, name: str, argv: list[str]) -> None:
        """A one-off step (migrations, the index build) with a process's environment."""
        folder = self.root / name
        env = dict(os.environ)
        env.update(self._base_env)
        env.update(LINLI_DATA_DIR=str(folder), LINLI_INDEX_DIR=str(folder / "index"))
        env.update(self.config.extra_env)
        started = time.monotonic()
        with open(self.log_path(name), "ab") as log:
            done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, check=False, timeout=self.config.ready_timeout_s * 4)
        if done.returncode != 0:
            tail = self.log_path(name).read_text(errors="replace")[-2000:]
            raise ClusterError(f"{name} failed (exit {done.returncode}); {self.log_path(name)}:\n{tail}")
        self.echo(f"{name}: done in {time.monotonic() - started:.1f} s")

    def _check_alive(self, child: _Child) -> None:
        if not child.alive():
            rc = child.process.poll() if child.process is not None else None
            tail = self.log_path(child.name).read_text(errors="replace")[-2000:] \
                if self.log_path(child.name).exists() else ""
            raise ClusterError(f"{child.name} exited ({rc}); {self.log_path(child.name)}:\n{tail}")

    def _wait_http(self, child: _Child, path: str) -> int:
        deadline = time.monotonic() + self.config.ready_timeout_s
        url = f"http://127.0.0.1:{child.port}{path}"
        while True:
            status = http_status(url)
            if status is not None and status < 500:
                return status
            self._check_alive(child)
            if time.monotonic() > deadline:
                raise ClusterError(f"{child.name} not ready at {url} within {self.config.ready_timeout_s:.0f} s")
            time.sleep(0.25)

    def _wait_replica(self, child: _Child) -> None:
        """Until /readyz answers 200 (or, on a server without /readyz, /healthz)."""
        deadline = time.monotonic() + self.config.ready_timeout_s
        base = f"http://127.0.0.1:{child.port}"
        while True:
            status = http_status(base + self.check_path)
            if status == 404 and self.config.check_path is None and self.check_path == "/readyz":
                self.check_path = "/healthz"
                status = http_status(base + self.check_path)
            if status == 200:
                self.echo(f"{child.name} ready at {base} (pid {child.pid})")
                return
            self._check_alive(child)
            if time.monotonic() > deadline:
                raise ClusterError(f"{child.name} not ready within {self.config.ready_timeout_s:.0f} s "
                                   f"(last status {status}); see {self.log_path(child.name)}")
            time.sleep(0.25)

    def _start_haproxy(self) -> None:
        config_path = self.root / "haproxy.cfg"
        config_path.write_text(self.haproxy_config())
        check = subprocess.run([self.config.haproxy, "-c", "-q", "-f", str(config_path)], capture_output=True,
                               text=True, check=False)
        if check.returncode != 0:
            raise ClusterError(f"haproxy -c -f {config_path} refused the configuration:\n{check.stderr}{check.stdout}")
        child = self.children.get("haproxy") or self._add(
            "haproxy", "haproxy", [self.config.haproxy, "-db", "-f", str(config_path)], {},
            port=self.port, stop_signal=signal.SIGUSR1)  # SIGUSR1: soft stop (finish what is in flight)
        self._spawn(child)
        self.wait_backend(dict.fromkeys(self.replica_names, "UP"), timeout=30)
        deadline = time.monotonic() + 30
        while http_status(self.url + self.check_path) != 200:
            self._check_alive(child)
            if time.monotonic() > deadline:
                raise ClusterError(f"HAProxy at {self.url} does not answer; see {self.log_path('haproxy')}")
            time.sleep(0.2)

    def haproxy_config(self) -> str:
        """deploy/haproxy.cfg.template filled in for this cluster."""
        from jinja2 import Environment, StrictUndefined  # noqa: PLC0415 - only when HAProxy starts

        template = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False,
                               trim_blocks=True, lstrip_blocks=True).from_string(TEMPLATE.read_text())
        servers = [(c.name, f"127.0.0.1:{c.port}") for c in self.children.values() if c.kind == "replica"]
        return template.render(host=self.config.host, port=self.port, stats_port=self.stats_port,
                               pidfile=self.root / "haproxy.pid", stats_socket=self.root / "haproxy.sock",
                               check_path=self.check_path, sse_path=SSE_PATH, servers=servers)

    def _stop(self, children: list[_Child]) -> None:
        running = [c for c in children if c.alive()]
        for child in running:
            self._signal_group(child, child.stop_signal)
        deadline = time.monotonic() + self.config.stop_timeout_s
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.echo(f"{child.name} did not stop within {self.config.stop_timeout_s:.0f} s: SIGKILL")
        # Stragglers: the leader and anything it started (uvicorn's children, file readers).
        for child in children:
            if child.process is not None:
                self._signal_group(child, signal.SIGKILL)
                child.process.wait()

    @staticmethod
    def _signal_group(child: _Child, sig: int) -> None:
        if child.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)

    @staticmethod
    def _safe(url: str) -> str:
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - light, and only here

        return make_url(url).render_as_string(hide_password=True) if url.startswith("postgres") else url


def _pg_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


def _with_database(server: str, database: str) -> str:
    """The URL of `database` on the server `server` names (whatever database it names itself)."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - light, and only here

    return make_url(server).set(database=database).render_as_string(hide_password=False)


def _postgres_answers(server: str, database: str = "postgres") -> bool:
    import psycopg  # noqa: PLC0415 - the launcher alone needs it here
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    url = make_url(_with_database(server, database))
    try:
        psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                        dbname=database, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def _create_database(server: str, name: str, *, fresh: bool) -> None:
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    url = make_url(_with_database(server, "postgres"))
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                         dbname="postgres", autocommit=True, connect_timeout=5) as conn:
        if fresh:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(server: str, name: str) -> None:
    """Drop a cluster's database (tests and benchmarks clean up with it)."""
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    url = make_url(_with_database(server, "postgres"))
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                         dbname="postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def migrate_database() -> None:
    """Migrations up to head for the configured database (under the advisory lock, see
    assistant/core/db.py `migrate`): `python -m assistant.cluster migrate`."""
    from assistant.core.db import Databases  # noqa: PLC0415 - Alembic, only when migrating
    from assistant.core.settings import get_settings  # noqa: PLC0415

    databases = Databases()
    databases.engine(get_settings().resolved_database_url)
    databases.dispose()


class _Stop(Exception):
    """SIGINT or SIGTERM reached the launcher."""


def _raise_stop(_signum: int, _frame: Any) -> None:
    raise _Stop


def cluster_command(
    replicas: Annotated[int, typer.Option(help="`linli serve` replicas behind HAProxy")] = 3,
    workers: Annotated[int, typer.Option(help="`linli worker` processes")] = 2,
    port: Annotated[int, typer.Option(help="HAProxy's public port (a free one if taken; 0: any free one)")] = 8080,
    host: Annotated[str, typer.Option(help="HAProxy's bind address")] = "127.0.0.1",
    stats_port: Annotated[int, typer.Option(help="HAProxy's stats page on 127.0.0.1 (0: a free port)")] = 0,
    database: Annotated[str, typer.Option(help="PostgreSQL database (created when missing)")] = "linli_cluster",
    postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL server without a database, e.g. postgresql+psycopg://linli@db:5432 "
             "(default: 127.0.0.1:5432 when it answers, else one of our own under var/cluster/pg)")] = None,
    redis_db: Annotated[int, typer.Option(help="Redis database number")] = 0,
    restart: Annotated[bool, typer.Option(help="Restart a replica or worker that exits")] = True,
    check_path: Annotated[str | None, typer.Option(
        help="Readiness path for the launcher and HAProxy (default /readyz, /healthz where that is 404)")] = None,
    root: Annotated[Path, typer.Option(help="State, logs and data key")] = PROJECT_ROOT / "var" / "cluster",
) -> None:
    """Run Linli as a cluster on this machine: HAProxy, replicas, workers, PostgreSQL, Redis and
    the sandbox backend, until Ctrl-C."""
    config = ClusterConfig(replicas=replicas, workers=workers, port=port, host=host, stats_port=stats_port,
                           database=database, postgres_url=postgres_url, redis_db=redis_db, root=root,
                           check_path=check_path)
    cluster = Cluster(config, echo=lambda message: typer.echo(f"[cluster] {message}", err=True))
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            cluster.start()
        except ClusterError as exc:
            typer.echo(f"[cluster] {exc}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(f"Linli cluster: {cluster.url}")
        typer.echo(f"  HAProxy stats: {cluster.stats_url}   logs: {cluster.logs}/   Ctrl-C stops everything")
        while True:
            time.sleep(1)
            for name, rc in cluster.exited().items():
                child = cluster.children[name]
                if child.kind not in ("replica", "worker") or not restart:
                    if child.kind in ("haproxy", "postgres", "redis", "sandbox"):
                        typer.echo(f"[cluster] {name} exited ({rc}); see {cluster.log_path(name)}", err=True)
                        raise _Stop
                    continue
                typer.echo(f"[cluster] {name} exited ({rc}); restarting", err=True)
                cluster.start_process(name, wait=False)
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        typer.echo("[cluster] stopping …", err=True)
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        typer.echo("[cluster] stopped", err=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["migrate"]:
        migrate_database()
    else:
        sys.exit("usage: python -m assistant.cluster migrate")
