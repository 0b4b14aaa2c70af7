"""OpenTelemetry across a real worker process: a call made inside a span carries its context
in the invocation's headers; the worker's run is a child span with the invocation's
attributes, pauses and resumes are span events, calls made by a task continue the trace, and
each try of a retried call is its own span in the same trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.integration import traceapp
from tests.integration.conftest import ROOT
from tests.support import wait_until


@pytest.fixture
def caller() -> tuple[Any, InMemorySpanExporter]:
    """A tracer of the test process (not the global provider), exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


@pytest.fixture
def worker_env(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    procs: list[subprocess.Popen[bytes]] = []
    url = f"sqlite:///{tmp_path / 'trace.db'}"
    traceapp.app.configure(url)
    yield url, tmp_path / "spans.jsonl", procs
    traceapp.app.close()
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def hex_id(n: int, width: int) -> str:
    return f"0x{n:0{width}x}"


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["process", "thread", "async"])
def test_a_run_is_a_child_span_of_the_call_with_pause_events(
    mode: str,
    tmp_path: Path,
    caller: tuple[Any, InMemorySpanExporter],
    worker_env: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    tracer, exporter = caller
    url, out, procs = worker_env
    with tracer.start_as_current_span("checkout"):
        inv = traceapp.parent(20)
        flaky = traceapp.flaky(str(tmp_path / "marker"))
    assert "traceparent" in inv.record().headers
    env = {**os.environ, "KUBENENC_BACKEND": url, "KUBENENC_TEST_SPANS": str(out)}
    with (tmp_path / "worker.log").open("wb") as log:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "kubenenc_worker", "worker", "--app",
             "tests.integration.traceapp:app", "--mode", mode, "--concurrency", "1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip
    assert inv.result(timeout=60) == 41
    assert flaky.result(timeout=60) == "ok"
    (checkout,) = exporter.get_finished_spans()
    trace_id = hex_id(checkout.context.trace_id, 32)
    wait_until("the run spans", lambda: len(spans(out)) >= 4, 20)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans(out):
        by_name.setdefault(s["name"], []).append(s)
    (run,) = by_name["kubenenc.run tests.integration.traceapp.parent"]
    (child,) = by_name["kubenenc.run tests.integration.traceapp.child"]
    tries = by_name["kubenenc.run tests.integration.traceapp.flaky"]
    assert run["context"]["trace_id"] == trace_id
    assert run["parent_id"] == hex_id(checkout.context.span_id, 16)
    assert run["kind"] == "SpanKind.CONSUMER"
    worker_id = next(w.id for w in traceapp.app.backend.workers())
    assert run["attributes"] == {
        "kubenenc.task": "tests.integration.traceapp.parent", "kubenenc.invocation_id": inv.id,
        "kubenenc.attempt": 0, "kubenenc.pool": "default", "kubenenc.worker": worker_id,
    }  # fmt: skip
    events = [e["name"] for e in run["events"]]
    assert events == ["kubenenc.pause", "kubenenc.resume"]
    assert run["events"][0]["attributes"] == {"kubenenc.waiting_on": 1}
    # The child, called inside the parent's run, continues the trace under the run span.
    assert child["context"]["trace_id"] == trace_id
    assert child["parent_id"] == run["context"]["span_id"]
    # Each try of the retried call is its own span, in the caller's trace; the failed one
    # records the exception.
    assert sorted(t["attributes"]["kubenenc.attempt"] for t in tries) == [0, 1]
    assert {t["context"]["trace_id"] for t in tries} == {trace_id}
    first = next(t for t in tries if t["attributes"]["kubenenc.attempt"] == 0)
    assert first["status"]["status_code"] == "ERROR"
    assert any(e["name"] == "exception" for e in first["events"])


def test_no_span_no_headers(worker_env: tuple[str, Path, list[subprocess.Popen[bytes]]]) -> None:
    inv = traceapp.child(1)
    assert inv.record().headers == {}
