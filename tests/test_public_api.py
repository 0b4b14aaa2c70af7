"""The public face is what ``kubenenc.__all__`` lists: locked here so a change is deliberate."""

from __future__ import annotations

import kubenenc

PUBLIC = {
    "App", "Backend", "BackendUnavailable", "ConcurrencyPolicy", "ConfigurationError",
    "CycleDetectedError", "DependencyFailed", "Invocation", "InvocationCancelled",
    "InvocationGroup", "InvocationId", "KubenencError", "RegistrationRejected", "RemoteError",
    "ResultTimeout", "SerializationError", "Settings", "Status", "Task", "TaskId", "TaskTimeout",
    "ValueTooLarge", "WorkerId", "WorkerLost", "WorkerSettings", "__version__", "load_app",
}  # fmt: skip


def test_exported_members_are_exactly_the_public_ones() -> None:
    assert set(kubenenc.__all__) == PUBLIC
    for name in kubenenc.__all__:
        assert hasattr(kubenenc, name), name


def test_public_members_are_documented() -> None:
    for name in kubenenc.__all__:
        member = getattr(kubenenc, name)
        if callable(member) and not isinstance(member, str) and name[0].isupper():
            assert member.__doc__, f"{name} has no docstring"


BACKEND_KIT = {
    "ActivityBucket", "Admin", "Backend", "Browse", "Coordination", "DueTimes", "Engine",
    "EngineBackend", "FinishAndClaim", "InvocationFilter", "InvocationPage", "KeyUsage",
    "Overdue", "Policies", "Queue", "Records", "Relations", "ResumeEarly", "RunningKey",
    "RunningKeys",
    "TickClaims", "Txn", "WorkNotifier", "running_keys_of",
    "available_backends", "bucket_index", "cursor_of", "dumps_record", "dumps_worker",
    "loads_record", "loads_worker", "matches", "open_backend", "retention_option", "seq_of",
}  # fmt: skip


def test_the_plugin_authors_face_is_locked_and_documented() -> None:
    """``kubenenc.backends.__all__`` is what a backend plugin may build on (docs/plugins.md);
    the example plugin under examples/postgres uses nothing else."""
    import kubenenc.backends

    assert set(kubenenc.backends.__all__) == BACKEND_KIT
    for name in kubenenc.backends.__all__:
        assert getattr(kubenenc.backends, name).__doc__, f"{name} has no docstring"


PLUGIN_MODULES = {
    "kubenenc", "kubenenc.backends", "kubenenc.records", "kubenenc.ids", "kubenenc.status",
    "kubenenc.errors", "kubenenc.waitgraph",
}  # fmt: skip


def test_the_example_plugin_uses_only_the_plugin_authors_face() -> None:
    """examples/postgres is written as an outsider would: every kubenenc import it makes is
    from the modules docs/plugins.md names, and from kubenenc.backends only what it exports."""
    import ast
    from pathlib import Path

    import kubenenc.backends

    used: list[tuple[str, str]] = []
    for path in (Path(__file__).parents[1] / "examples" / "postgres").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kubenenc"):
                used += [(node.module or "", alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                used += [(a.name, "") for a in node.names if a.name.startswith("kubenenc.")]
    assert used, "found no kubenenc imports in examples/postgres"
    outside = [(m, n) for m, n in used if m.split(".")[0] == "kubenenc" and m not in PLUGIN_MODULES]
    assert outside == []
    backends = {n for m, n in used if m == "kubenenc.backends"}
    assert backends <= set(kubenenc.backends.__all__), backends - set(kubenenc.backends.__all__)
