"""A throw-away PostgreSQL server for the tests and benches: `initdb` in a temporary folder, a
free port on loopback, password authentication, stopped and removed at the end. Needs only the
server's binaries (Debian's `postgresql` package, installed by `.ci/setup`); no running service.
When run as root, the cluster belongs to the `postgres` user (the server refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

USER = "store"
TEST_DATABASE = "store_test"
# the store's tables a test starts without rows (store_head goes back to seq 0)
TABLES = ("entries", "sessions", "calls", "disclosures", "jobs", "counters", "leases")


def store_env() -> dict[str, str]:
    """The store part of this test's environment, for tests that build an environment of their
    own (a subprocess's, a Settings'): STORE_URL when the test runs on PostgreSQL."""
    url = os.environ.get("STORE_URL")
    return {"STORE_URL": url} if url else {}


def configured_store(data_dir, **options):
    """The store this test's environment configures, opened directly (to look at what a
    process or the API wrote): STORE_URL's database when set, else the JSON store in `data_dir`."""
    url = os.environ.get("STORE_URL")
    if url:
        from backend.store.postgres import PgStore

        return PgStore(url)
    from backend.store import JournalStore

    return JournalStore(data_dir, **options)


def server_bin() -> Path | None:
    """The newest installed server's bin folder (it has initdb), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """One PostgreSQL server of our own. `durable=False` turns fsync off (tests: faster, the
    same SQL and protocol); benches keep it on, with `synchronous_commit=on` either way."""

    def __init__(self, *, durable: bool = False, root: str | None = None) -> None:
        bindir = server_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server binaries (initdb) are not installed: run .ci/setup")
        self.bin = bindir
        self.root = Path(tempfile.mkdtemp(prefix="pgtest-", dir=root))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.socket_dir.mkdir()
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.password = secrets.token_urlsafe(18)
        self.durable = durable
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            os.chmod(self.root, 0o755)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--pwfile",
            str(pwfile),
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\nmax_connections = 200\n"
                "synchronous_commit = on\n" + ("" if durable else "fsync = off\nfull_page_writes = off\n")
            )
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({out.returncode}): {out.stderr.strip()}\n{log[-2000:]}")

    def url(self, database: str = TEST_DATABASE) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` cuts every connection, as a server restart does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """A new empty database `name` (dropped first if there is one); returns its name."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def empty_database(url: str) -> None:
    """Delete every row of the store's tables at `url` (its schema stays), back to seq 0."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '5s'")
        for table in TABLES:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        conn.execute("UPDATE store_head SET last_seq = 0")
        conn.execute("DROP SEQUENCE IF EXISTS control_seq")


class ResettableDatabase:
    """One migrated database shared by the tests, emptied before each (cheaper than creating a
    database per test: ~5 ms against ~120 ms)."""

    def __init__(self, cluster: PgCluster, name: str = TEST_DATABASE) -> None:
        from backend.store.postgres import migrate

        self.cluster = cluster
        cluster.create_database(name)
        self.url = cluster.url(name)
        migrate(self.url)

    def reset(self) -> str:
        """Empty every table, end every other connection to it (a test's stores left open, a
        killed process's), and return the URL."""
        if not self.cluster.running():
            self.cluster.start()  # a test that stopped the server and failed before starting it
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            deadline = time.monotonic() + 5
            while conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        empty_database(self.url)
        return self.url
