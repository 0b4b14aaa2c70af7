"""Tasks for the tracing test (``tests.integration.traceapp:app``).

With ``KUBENENC_TEST_SPANS`` set (in the worker's environment), importing this module sets a
tracer provider whose finished spans the SDK's console exporter appends, one JSON object a
line, to that file: the test reads what the worker process (and its children) recorded.
"""

from __future__ import annotations

import os

from kubenenc import App

app = App("tracetest")

if os.environ.get("KUBENENC_TEST_SPANS"):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    _out = open(os.environ["KUBENENC_TEST_SPANS"], "a", buffering=1)
    _provider = TracerProvider()
    _provider.add_span_processor(
        SimpleSpanProcessor(
            ConsoleSpanExporter(out=_out, formatter=lambda s: s.to_json(indent=None) + "\n")
        )
    )
    trace.set_tracer_provider(_provider)


@app.task
def child(n: int) -> int:
    return n * 2


@app.task
def parent(n: int) -> int:
    """Waits on a child: a pause and a resume on its run span."""
    return child(n).result() + 1


@app.task(retries=1, retry_on=(OSError,), backoff=0.01)
def flaky(marker: str) -> str:
    if not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write("1")
        raise OSError("first try fails")
    return "ok"
