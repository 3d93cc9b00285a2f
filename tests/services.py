"""Throw-away servers for the team-mode tests: a PostgreSQL cluster and an MLflow tracking server, on localhost.

Both bind to 127.0.0.1 on a free port and live in a temporary folder removed afterwards. PostgreSQL's
``initdb``/``postgres`` refuse to run as root, so as root they run as the ``postgres`` user Debian's package
creates (README "Team mode" shows the same commands for a real team server).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (PATH first, then Debian's versioned folders)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def missing() -> str | None:
    """Why the services cannot run here, or None."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found; `make test-services` installs Debian's postgresql"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed; `make test-services` installs the team extra"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a socket listening on ``port`` (from /proc/net/tcp*)."""
    out = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            for line in list(fh)[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                    raw = bytes.fromhex(addr)
                    if width == 8:
                        out.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:  # four little-endian 32-bit words
                        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                        out.add(socket.inet_ntop(socket.AF_INET6, words))
    return out


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str = "thawcast"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def postgres(databases: tuple[str, ...]) -> Iterator[Postgres]:
    """A new PostgreSQL cluster on 127.0.0.1 (trust authentication, user ``thawcast``) with ``databases``."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="thawcast-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    server = Postgres(port)

    def sh(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{cmd[0]}: {done.stdout[-1500:]} {done.stderr[-1500:]}"

    try:
        sh(str(bin_dir / "initdb"), "-D", str(data), "-U", server.user, "--auth=trust", "-E", "UTF8")
        sh(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
           "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start")
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user=server.user, dbname="postgres")
        con.autocommit = True
        with con.cursor() as cur:
            for db in databases:
                cur.execute(f'CREATE DATABASE "{db}"')
        con.close()
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class MlflowServer:
    url: str
    port: int
    artifacts: Path


@contextlib.contextmanager
def mlflow_server(backend_uri: str, workdir: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` on 127.0.0.1 with ``backend_uri`` as backend store and proxied artifacts in ``workdir``."""
    port = free_port()
    artifacts = workdir / "artifacts"
    log = open(workdir / "mlflow-server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (workdir / "mlflow-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not answer within 180 s"
            time.sleep(1)
        yield MlflowServer(url, port, artifacts)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
