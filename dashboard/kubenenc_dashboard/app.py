"""The ASGI app: routes, templates, live updates and the guarded actions.

Pages are rendered on the server (Jinja2, autoescaped). ``GET /events`` is a server-sent
event stream that says ``changed`` whenever the backend's counts or workers change (checked
every ``refresh`` seconds); the page's script then fetches the same URL with
``X-Fragment: 1`` and swaps the ``<main>`` it gets back. Backend calls are blocking, so they
run in Starlette's thread pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from kubenenc.backends.browse import InvocationFilter
from kubenenc.backends.contract import Backend
from kubenenc.backends.roles import roles_of
from kubenenc.ids import InvocationId, TaskId, WorkerId
from kubenenc.scope import pool_of, scope_of
from kubenenc.status import Status
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kubenenc_dashboard import actions, limits, views
from kubenenc_dashboard.cluster import KINDS, ClusterView
from kubenenc_dashboard.security import SESSION_COOKIE, Guard
from kubenenc_dashboard.settings import DashboardSettings

HERE = Path(__file__).parent
AGES = {"5m": 300, "1h": 3600, "24h": 86400}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


MAX_FORM = 16_384
"""Bytes of a form body read at most (our forms hold a token or a CSRF value)."""


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind our pages send), without python-multipart."""
    body = await request.body()
    return dict(parse_qsl(body[:MAX_FORM].decode("utf-8", "replace")))


def _same_origin(request: Request) -> bool:
    """False when the browser says the request comes from a page of another origin (a
    second line behind the CSRF value; scripts that send no Origin are judged by it alone)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


class Dashboard:
    """The route handlers over one backend (each reads what its page needs, nothing more)."""

    def __init__(
        self, backend: Backend, settings: DashboardSettings, cluster: ClusterView | None = None
    ) -> None:
        self.backend = backend
        self.roles = roles_of(backend)
        """The backend's optional roles, checked once (:mod:`kubenenc.backends.roles`)."""
        self.cluster = cluster
        self.settings = settings
        self.guard = Guard(settings.token)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
        )
        # Stored pools are queues (``scope:pool``); pages show people the app (scope) and
        # the pool name they gave, and filter by the stored name.
        self.env.globals.update(
            statuses=views.STATUSES, ago=views.ago, stamp=views.stamp, app_name=settings.app,
            actions_enabled=self.guard.enabled, pool_of=pool_of, scope_of=scope_of,
        )  # fmt: skip

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        """A page (or, asked with ``X-Fragment: 1``, only its ``<main>`` content)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        ctx.update(
            request=request, signed_in=self.guard.session_ok(cookie),
            csrf=self.guard.csrf_for(cookie), fragment=request.headers.get("x-fragment") == "1",
            rendered_at=time.time(),
        )  # fmt: skip
        html = self.env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    async def healthz(self, request: Request) -> Response:
        """Liveness: the process serves requests (the backend is not asked)."""
        return PlainTextResponse("ok")

    async def overview(self, request: Request) -> Response:
        data = await run_in_threadpool(views.overview, self.backend, self.settings.app, time.time())
        return self.render(request, "overview.html", page="overview", o=data)

    def _filter(self, request: Request) -> tuple[InvocationFilter, dict[str, str]]:
        q = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
        status = q.get("status")
        age = AGES.get(q.get("age", ""))
        try:
            where = InvocationFilter(
                app=self.settings.app or q.get("app"), task=q.get("task"),
                status=Status(status) if status else None, pool=q.get("pool"),
                worker=WorkerId(q["worker"]) if "worker" in q else None,
                since=time.time() - age if age else None, text=q.get("text"),
            )  # fmt: skip
        except ValueError:
            where = InvocationFilter(app=self.settings.app)
        return where, q

    async def invocation_list(self, request: Request) -> Response:
        where, q = self._filter(request)
        s = self.settings
        try:
            page = await run_in_threadpool(
                views.invocations, self.backend, where, q.get("cursor"), s.page_size, s.budget
            )
        except ValueError:
            return self.render(request, "error.html", 400, message="bad cursor")
        keep = {k: v for k, v in q.items() if k != "cursor"}
        next_url = "/invocations?" + urlencode({**keep, "cursor": page.next}) if page.next else None
        tasks = sorted(await run_in_threadpool(self.backend.counts_by_task, app=s.app))
        return self.render(
            request, "invocations.html", page="invocations", p=page, q=q, next_url=next_url,
            first_url="/invocations?" + urlencode(keep), tasks=tasks,
        )  # fmt: skip

    async def invocation(self, request: Request) -> Response:
        id = InvocationId(request.path_params["id"])
        d = await run_in_threadpool(views.detail, self.backend, id)
        if d is None:
            return self.render(request, "error.html", 404, message=f"no invocation {id}")
        return self.render(request, "invocation.html", page="invocation", d=d, r=d.rec)

    async def workers(self, request: Request) -> Response:
        data = await run_in_threadpool(
            views.overview, self.backend, self.settings.app, time.time(), False
        )
        held = await run_in_threadpool(limits.running_limits, self.roles, self.settings.app)
        kube = await run_in_threadpool(self.cluster.read) if self.cluster is not None else None
        if kube is not None:
            kube = limits.with_running_now(kube, held)
        return self.render(
            request, "workers.html", page="workers", o=data, now=time.time(), kube=kube,
            kinds=KINDS, held=held,
        )  # fmt: skip

    async def events(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            last = None
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                mark = await run_in_threadpool(views.fingerprint, self.backend, self.settings.app)
                if last is not None and mark != last:
                    yield "event: changed\ndata: 1\n\n"
                else:
                    yield ": tick\n\n"  # a comment: keeps proxies from closing the stream
                last = mark
                await asyncio.sleep(self.settings.refresh)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.render(request, "login.html", page="login", failed=False)
        if not _same_origin(request):
            return self.render(request, "error.html", 403, message="refused: another origin")
        form = await _form(request)
        if not self.guard.token_ok(str(form.get("token", ""))):
            return self.render(request, "login.html", 403, page="login", failed=True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, self.guard.new_session(), httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def act(self, request: Request) -> Response:
        form = await _form(request)
        allowed = _same_origin(request) and self.guard.may_act(
            request.cookies.get(SESSION_COOKIE), str(form.get("csrf", "")) or None,
            request.headers.get("authorization"),
        )  # fmt: skip
        if not allowed:
            reason = (
                "refused: sign in with the dashboard's token (and use its own forms)"
                if self.guard.enabled
                else "actions are off: start the dashboard with --token to enable them"
            )
            return self.render(request, "error.html", 403, message=reason)
        what, target = request.path_params["action"], request.path_params["target"]
        if what == "cancel":
            ok = await run_in_threadpool(actions.cancel, self.backend, InvocationId(target))
            message = "cancelled" if ok else "not cancelled: it had already ended"
            back = f"/invocations/{target}"
        elif what == "retry":
            new = await run_in_threadpool(actions.retry, self.backend, InvocationId(target))
            if new is None:
                return self.render(request, "error.html", 409, message="not retried")
            return RedirectResponse(f"/invocations/{new}", status_code=303)
        elif what == "cancel-pending":
            n = await run_in_threadpool(
                actions.cancel_pending, self.backend, TaskId(target), self.settings.app
            )
            message = f"cancelled {n} pending calls of {target}"
            back = "/invocations?" + urlencode({"task": target})
        else:
            return self.render(request, "error.html", 404, message=f"no action {what}")
        return self.render(request, "done.html", page="done", message=message, back=back)


def create_app(
    backend: Backend, settings: DashboardSettings | None = None, cluster: ClusterView | None = None
) -> Starlette:
    """The dashboard over ``backend`` (which the caller opens and closes); ``cluster``: the
    custom resources to show on the Workers page (None: not on Kubernetes)."""
    d = Dashboard(backend, settings or DashboardSettings(), cluster)
    routes = [
        Route("/", d.overview),
        Route("/healthz", d.healthz),
        Route("/invocations", d.invocation_list),
        Route("/invocations/{id:str}", d.invocation),
        Route("/workers", d.workers),
        Route("/events", d.events),
        Route("/login", d.login, methods=["GET", "POST"]),
        Route("/logout", d.logout, methods=["POST"]),
        Route("/act/{action:str}/{target:path}", d.act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes)
