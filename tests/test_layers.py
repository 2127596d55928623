"""The house's arrows point only downward: agent -> backend functions -> store; API and
dashboard -> backend functions (the dashboard through the API's page functions); CLI -> backend
functions. No module under backend/store/, backend/calls/ or backend/postcall/ imports LiveKit or
Flask, and no module-level imports form a loop. Read from the source with `ast`, so a new file is checked too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.store_free  # reads the source only

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backend", "dashboard")
TOP_FILES = ("telephony_agent.py", "gunicorn.conf.py")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def sources() -> dict[str, Path]:
    found = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    found.update({Path(f).stem: ROOT / f for f in TOP_FILES})
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import of `path`, except those under
    `if TYPE_CHECKING:` (annotations only, never run)."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                out.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.append((child.module, top))
                out.extend((f"{child.module}.{alias.name}", top) for alias in child.names)
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, inner)

    visit(tree, True)
    return out


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# (modules the rule is about, what they must not import, at module level only?)
FORBIDDEN = [
    (
        ("backend.store",),
        (
            "livekit",
            "flask",
            "twilio",
            "backend.calls",
            "backend.livekit",
            "backend.backend_agent",
            "backend.api",
            "backend.voice",
            "dashboard",
            "backend.settings",
        ),
        False,
    ),
    (
        ("backend.calls",),
        (
            "livekit",
            "flask",
            "twilio",
            "backend.livekit",
            "backend.backend_agent",
            "backend.api",
            "backend.voice",
            "dashboard",
        ),
        False,
    ),
    (
        ("backend.postcall",),
        ("livekit", "flask", "backend.livekit", "backend.backend_agent", "backend.api", "backend.voice", "dashboard"),
        False,
    ),
    (("backend.livekit",), ("flask", "backend.api", "backend.voice", "backend.backend_agent", "dashboard"), False),
    (("backend.backend_agent",), ("flask", "backend.api", "backend.voice", "dashboard"), False),
    (("backend.backend_agent",), ("livekit",), True),  # only when a call is placed
    (("backend.api", "backend.api_server"), ("backend.voice", "livekit", "telephony_agent"), True),
    (("backend.voice", "telephony_agent"), ("flask", "backend.api", "dashboard"), False),
    (("backend.provision",), ("flask", "livekit.agents", "backend.api", "backend.voice", "dashboard"), False),
    # after the call: jobs, summaries, webhooks run in a worker with neither Flask nor LiveKit; they
    # are handed the backend functions (never import them at module level: a loop)
    (
        ("backend.postcall",),
        ("livekit", "flask", "backend.livekit", "backend.api", "backend.voice", "dashboard", "telephony_agent"),
        False,
    ),
    (("backend.postcall",), ("backend.backend_agent",), True),
]
# Who may reach the store beyond its vocabulary (backend.store.records): the backend functions,
# the call rules and durable jobs they use, and LiveKit's dispatch (each handed the store by them).
STORE_USERS = (
    "backend.store",
    "backend.backend_agent",
    "backend.calls",
    "backend.postcall",
    "backend.livekit.dispatch",
)
# The dashboard's one door: the API's page functions and its error envelope (and settings).
DASHBOARD_MAY_IMPORT = ("dashboard", "backend.api.data", "backend.api.errors", "backend.settings")


def arrows() -> list[tuple[str, str, bool]]:
    return [(mod, target, top) for mod, path in sorted(sources().items()) for target, top in imports(path)]


@pytest.mark.parametrize(("owners", "banned", "top_only"), FORBIDDEN, ids=[" ".join(r[0]) for r in FORBIDDEN])
def test_no_forbidden_arrow(owners, banned, top_only):
    wrong = [
        (mod, target)
        for mod, target, top in arrows()
        if within(mod, *owners) and within(target, *banned) and (top or not top_only)
    ]
    assert wrong == []


def test_only_the_backend_functions_reach_the_store():
    wrong = [
        (mod, target)
        for mod, target, _top in arrows()
        if within(target, "backend.store")
        and not within(target, "backend.store.records")
        and not within(mod, *STORE_USERS)
    ]
    assert wrong == []


def test_the_dashboard_goes_through_the_api_page_functions():
    ours = ("backend", "dashboard", "telephony_agent")
    wrong = [
        (mod, target)
        for mod, target, _top in arrows()
        if within(mod, "dashboard") and within(target, *ours) and not within(target, *DASHBOARD_MAY_IMPORT)
    ]
    assert wrong == []


def test_no_import_loops():
    known = sources()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for mod, target, top in arrows():
        if not top:
            continue
        while target and target not in known:  # `from pkg import name` names a module or an attribute
            target = target.rpartition(".")[0]
        if target and target != mod and not mod.startswith(target + "."):  # a package's own parent
            graph[mod].add(target)
    loops, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                loops.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = "done"

    for mod in sorted(graph):
        if mod not in state:
            walk(mod, [mod])
    assert loops == []


def test_the_rules_catch_a_forbidden_arrow(tmp_path, monkeypatch):
    """The walk itself can fail: a store module that imports Flask is reported."""
    bad = tmp_path / "backend" / "store" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("import flask\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "TOP_FILES", ())
    with pytest.raises(AssertionError):
        test_no_forbidden_arrow(*FORBIDDEN[0])


def test_an_api_worker_does_not_load_livekit():
    """Every gunicorn worker imports the app and the dashboard; LiveKit is loaded only when an
    outbound call is placed."""
    code = (
        "import sys, backend.api_server, dashboard; backend.api_server.create_app({'TESTING': True, "
        "'API_TOKENS': ['t']}); print(sorted(m for m in sys.modules if m.split('.')[0] == 'livekit'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
