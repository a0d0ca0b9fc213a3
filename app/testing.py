"""The real service in a subprocess (uvicorn) on a free loopback port: for the tests that kill it or
load it from many clients, for the benchmarks that measure it over HTTP, and for anyone who wants a
throwaway instance in a script. Not imported by the service itself."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
#: The admin key test and benchmark servers start with (FACEREC_ADMIN_KEY).
ADMIN_KEY = "test-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``uvicorn app.main:app`` on a free port over ``state_dir``, with the test admin key; the app is
    this checkout's, or the one in ``root`` (another checkout, for a benchmark's before-and-after)."""

    def __init__(self, state_dir: Path, log_path: Path, root: Path = ROOT, workers: int = 1, **env: str) -> None:
        self.state_dir, self.log_path, self.extra_env = Path(state_dir), Path(log_path), env
        self.workers = workers  # uvicorn --workers: processes serving one state directory
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": ADMIN_KEY}, timeout=timeout)

    def start(self, timeout: float = 120.0) -> LiveServer:
        env = {
            **os.environ,
            "FACEREC_STATE_DIR": str(self.state_dir),
            "FACEREC_ADMIN_KEY": ADMIN_KEY,
            "FACEREC_DEVICE": "cpu",
            **self.extra_env,
        }
        env.pop("FACEREC_INSECURE_DEV_MODE", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *(["--workers", str(self.workers)] if self.workers > 1 else []),
            ],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"server did not answer /health within {timeout} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        """The server's resident memory (VmRSS), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc status")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing -- a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def postgres_bindir() -> Path | None:
    """Where Debian's PostgreSQL server programs are (``initdb``, ``pg_ctl``), or ``None``."""
    for candidate in [os.environ.get("FACEREC_PG_BINDIR", ""), *sorted(Path("/usr/lib/postgresql").glob("*/bin"))]:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster in ``root`` (``initdb`` + ``pg_ctl``) on a free loopback port,
    trusting local connections. PostgreSQL refuses to run as root: when we are root, the cluster is
    made and run as the ``postgres`` user that Debian's package creates, in a folder of its own under
    the system's temporary directory (a pytest ``tmp_path`` is private to root). ``cleanup()``
    removes it."""

    def __init__(self, user: str = "facerec") -> None:
        self.bindir = postgres_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL's server programs were not found: apt-get install postgresql")
        self.root, self.user = Path(tempfile.mkdtemp(prefix="facerec-pg-")), user
        self.data = self.root / "data"
        self.port = free_port()
        self._as = {}
        if os.geteuid() == 0:
            import pwd

            owner = pwd.getpwnam("postgres")
            self._as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
            os.chown(self.root, owner.pw_uid, owner.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True, **self._as)
        if check and done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return done

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                    "fsync = off\nmax_connections = 200\n"
                )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        """A fast shutdown: open sessions are cut, as when a database server goes away."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
