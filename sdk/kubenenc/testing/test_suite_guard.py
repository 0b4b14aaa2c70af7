"""Guard: every test of the suite (kubenenc.testing) takes the ``backend`` fixture.

The suite is the contract every backend must pass; a test that does not take ``backend``
would run once, against no backend (or a hard-coded one), and a plugin would silently skip
it. Checked on the source, so it holds however the suite is selected.
"""

from __future__ import annotations

import ast
from pathlib import Path

from kubenenc.backends.contract import Backend

HERE = Path(__file__).parent


def escaping_tests(source: str) -> list[str]:
    """Names of test functions in ``source`` that do not take a ``backend`` argument."""
    tree = ast.parse(source)
    found: list[str] = []
    scopes: list[tuple[str, list[ast.stmt]]] = [("", tree.body)]
    while scopes:
        prefix, body = scopes.pop()
        for node in body:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                scopes.append((f"{prefix}{node.name}.", node.body))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name.startswith("test")
            ):
                args = node.args
                names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
                if "backend" not in names:
                    found.append(f"{prefix}{node.name}")
    return found


def test_the_guard_finds_tests_without_backend(backend: Backend) -> None:
    source = (
        "def test_ok(backend): pass\n"
        "def test_bad(tmp_path): pass\n"
        "async def test_async_bad(): pass\n"
        "def helper(): pass\n"
        "class TestGroup:\n"
        "    def test_method_ok(self, backend): pass\n"
        "    def test_method_bad(self): pass\n"
    )
    assert sorted(escaping_tests(source)) == [
        "TestGroup.test_method_bad",
        "test_async_bad",
        "test_bad",
    ]


def test_every_conformance_test_takes_the_backend_fixture(backend: Backend) -> None:
    files = sorted(HERE.glob("test_*.py"))
    assert len(files) >= 5, files
    offenders = [
        f"{path.name}::{name}"
        for path in files
        for name in escaping_tests(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], (
        "these tests in kubenenc.testing do not take the `backend` fixture, so they would "
        f"not run against every backend: {offenders}; take `backend` or move them to tests/unit"
    )


def test_tests_are_collected_once_per_backend(backend: Backend, request: object) -> None:
    items = request.session.items  # type: ignore[attr-defined]
    mine = [i for i in items if Path(str(i.path)).parent == HERE]
    assert mine, "no conformance tests collected"
    for item in mine:
        assert "backend" in item.fixturenames, item.nodeid
