"""Shared fixtures: a temporary store folder per test, and the store under every implementation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.backend_agent import BackendAgent  # noqa: E402
from backend.settings import Settings, reload_settings  # noqa: E402
from backend.store import JournalStore, MemoryStore  # noqa: E402
from backend.store.postgres import PgStore  # noqa: E402
from tests.fakes.livekit_twirp import API_KEY, API_SECRET, FakeTwirpServer  # noqa: E402
from tests.postgres import PgCluster, ResettableDatabase, server_bin  # noqa: E402

# The store kinds a test runs against. A test that uses the `store` fixture runs once per
# implementation; every other test runs on the JSON store and on PostgreSQL (STORE_URL set in its
# environment, a freshly emptied database), unless marked:
#   json_store_only   it is about the JSON store's own files, or picks its stores itself
#   store_free        it touches no store at all (runs once)
#   store_kinds(...)  exactly these kinds
#   store_per_module  one server per module (the browser tests): json and postgresql, each for the
#                     whole module, on a database of the module's own that is not emptied between tests
STORE_KINDS = ("journal", "journal-lean", "memory", "postgresql")
SETTINGS_KINDS = ("json", "postgresql")


def pytest_configure(config):
    config.addinivalue_line("markers", "json_store_only: runs on the JSON store only (its files, its processes)")
    config.addinivalue_line("markers", "store_free: touches no store; runs once")
    config.addinivalue_line("markers", "store_kinds(*kinds): the store kinds this test runs against")
    config.addinivalue_line("markers", "store_per_module: json and postgresql, each for the whole module")


def pytest_generate_tests(metafunc):
    if "store_kind" not in metafunc.fixturenames:
        return
    uses_store = "store" in metafunc.fixturenames
    chosen = metafunc.definition.get_closest_marker("store_kinds")
    if chosen is not None:
        kinds = chosen.args
    elif metafunc.definition.get_closest_marker("store_free"):
        kinds = ("json",)
    elif metafunc.definition.get_closest_marker("json_store_only"):
        kinds = tuple(k for k in STORE_KINDS if k != "postgresql") if uses_store else ("json",)
    else:
        kinds = STORE_KINDS if uses_store else SETTINGS_KINDS
    if kinds == ("json",) and not uses_store:
        return  # the `store_kind` fixture's own "json": no parameter, no suffix on the test's id
    if metafunc.definition.get_closest_marker("store_per_module") is not None:
        pairs = [(kind, kind) for kind in kinds]
        metafunc.parametrize(("store_kind", "module_store_kind"), pairs, scope="module", ids=list(kinds))
        return
    metafunc.parametrize("store_kind", kinds, scope="function")


@pytest.fixture
def store_kind() -> str:
    return "json"  # replaced by pytest_generate_tests' parameter


@pytest.fixture(scope="session")
def pg_cluster():
    """A throw-away PostgreSQL server for the whole run (tests/postgres.py). Without PostgreSQL's
    binaries its tests are skipped, except under CI (CI=true), where they fail."""
    if server_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's server binaries are not installed (run .ci/setup)")
        pytest.skip("PostgreSQL is not installed (run .ci/setup)")
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def _pg_database(pg_cluster) -> ResettableDatabase:
    return ResettableDatabase(pg_cluster)


@pytest.fixture
def pg_url(_pg_database) -> str:
    """A migrated, empty PostgreSQL store's URL (the same database for every test, emptied)."""
    return _pg_database.reset()


@pytest.fixture(scope="module")
def module_store_kind() -> str | None:
    return None  # replaced by pytest_generate_tests' parameter in a `store_per_module` module


@pytest.fixture(scope="module", autouse=True)
def _module_store(request, module_store_kind):
    """For a `store_per_module` module on PostgreSQL: STORE_URL set before the module's own
    fixtures start their servers, to a new database of the module's own."""
    if module_store_kind != "postgresql":
        yield None
        return
    cluster = request.getfixturevalue("pg_cluster")
    from backend.store.postgres import migrate

    name = "module_" + request.node.name.removesuffix(".py").replace("-", "_").lower()
    url = cluster.url(cluster.create_database(name))
    migrate(url)
    patch = pytest.MonkeyPatch()
    patch.setenv("STORE_URL", url)
    try:
        yield url
    finally:
        patch.undo()


@pytest.fixture(autouse=True)
def _isolated_env(request, tmp_path, monkeypatch, store_kind, _module_store):
    """No test reads the developer's .env or writes into ./data; on PostgreSQL, STORE_URL names
    an empty database."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BUSINESS_TIMEZONE", "America/New_York")
    monkeypatch.setenv("CALLING_HOURS", "08:00-21:00")
    monkeypatch.setenv("STORE_FSYNC", "1")
    if store_kind == "postgresql":
        monkeypatch.setenv("STORE_URL", _module_store or request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv("STORE_URL", raising=False)
    reload_settings()  # settings are read once per process: each test reads its own environment
    yield
    reload_settings()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    path = tmp_path / "data"
    path.mkdir(exist_ok=True)
    return path


def make_store(kind: str, data_dir: Path, url: str | None = None):
    if kind.startswith("journal"):
        return JournalStore(data_dir, lean=kind == "journal-lean")
    if kind == "postgresql":
        return PgStore(url)
    assert kind == "memory"
    return MemoryStore()


@pytest.fixture
def store(request, store_kind, data_dir):
    """The store, once per implementation (`store_kind`)."""
    url = os.environ.get("STORE_URL") if store_kind == "postgresql" else None
    s = make_store(store_kind, data_dir, url)
    yield s
    s.close()


@pytest.fixture
def settings(data_dir) -> Settings:
    return Settings.from_env(dict(os.environ, DATA_DIR=str(data_dir)), dotenv=False)


@pytest.fixture
def backend(store, settings) -> BackendAgent:
    return BackendAgent(store=store, settings=settings)


@pytest.fixture(scope="module")
def _twirp_server():
    with FakeTwirpServer(api_key=API_KEY, api_secret=API_SECRET) as server:
        yield server


@pytest.fixture
def twirp(_twirp_server) -> FakeTwirpServer:
    """A fake LiveKit server API (Twirp, protobuf bodies), one per test module since stopping
    one takes half a second; each test starts with no calls and no handlers. `twirp.env()` is
    the settings that point our code at it."""
    _twirp_server.reset()
    return _twirp_server
