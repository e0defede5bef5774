"""The explorer's HTTP interface (Starlette): the page and its assets, scenarios to open, design checks with
exact expected values, and jobs (run, compare, stress, goal seek) with progress and downloads.

Handlers are plain functions, which Starlette runs on its thread pool, so the server's loop never waits
for a simulation; Monte Carlo work goes to ``jobs.Jobs``. Bad input gets HTTP 422 with every problem as
``{path, rule}`` from the same schema as ``pbrsim validate``.
"""

from __future__ import annotations

import contextlib
import json
import re
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..scenario import limits as lim
from ..scenario.errors import ScenarioError
from . import figures, runs
from .designs import Designs, design, design_yaml
from .jobs import Busy, Jobs

ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8"}
MAX_JSON = 256 * 1024  # a request's JSON (a design's changes are a few kilobytes)


def safe_name(name: str) -> str:
    """A scenario name as a download's file name: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "design"


class BadRequest(Exception):
    """A request the page would never send: wrong JSON, a missing field, an unknown id."""


def _asset(name: str) -> bytes:
    return resources.files("pbrsim.web").joinpath("static", name).read_bytes()


def problems_response(exc: ScenarioError) -> JSONResponse:
    return JSONResponse({"error": "invalid design", "source": exc.source,
                         "problems": [{"path": p, "rule": r} for p, r in exc.problems]}, status_code=422)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused beyond ``limit`` bytes without reading more than ``limit + 1``."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ScenarioError(request.headers.get("x-filename", "request"),
                                [("", f"more than {lim.fmt_bytes(limit) if limit >= lim.MIB else f'{limit:,} bytes'} "
                                      f"were sent; a YAML file may be at most {lim.fmt_bytes(lim.active().yaml_bytes)}")])
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request) -> dict:
    try:
        data = json.loads(await _body(request, MAX_JSON) or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the request must be a JSON object")
    return data


def create_app(folder: Path, *, workers: int = 1, allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Starlette:
    """The app serving the scenarios under ``folder``; ``workers`` jobs run at once."""
    designs = Designs(folder)
    jobs = Jobs(workers)

    def opened(data: dict):
        try:
            return designs.get(str(data.get("design")))
        except KeyError:
            raise BadRequest("unknown design: open a scenario first (the server may have been restarted)") from None

    def changes_of(data: dict) -> dict:
        ch = data.get("changes") or {}
        if not isinstance(ch, dict):
            raise BadRequest("changes must be an object of field path: value")
        return ch

    async def designed(o, changes: dict, name: str | None = None):
        """The validated design, checked on the thread pool (a large scenario takes a while to validate)."""
        return await run_in_threadpool(design, o, changes, name)

    async def page(request: Request) -> Response:
        return Response(_asset("index.html"), media_type=ASSETS["index.html"])

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS or name == "index.html":
            return JSONResponse({"error": f"no asset {name}"}, status_code=404)
        return Response(_asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    def scenarios(request: Request) -> JSONResponse:
        from ..stress.catalogue import BUILT_IN_NAMES

        return JSONResponse({"folder": str(designs.folder), "files": designs.listing(), "stresses": list(BUILT_IN_NAMES),
                             "default_stresses": list(runs.DEFAULT_STRESSES),
                             "max_replications": runs.MAX_REPLICATIONS})

    def view(o) -> dict:
        sc = o.scenario
        return {"design": o.id, "source": o.source, "name": sc.name, "description": sc.description or "",
                "months": sc.months, "segments": list(sc.segments),
                "organisations": [x.name for x in sc.organisation_specs], "levers": [lv.as_dict() for lv in o.levers]}

    async def open_file(request: Request) -> JSONResponse:
        data = await _json(request)
        name = str(data.get("file", ""))
        return JSONResponse(view(await run_in_threadpool(designs.open_file, name)))

    async def upload(request: Request) -> JSONResponse:
        limit = lim.active().yaml_bytes
        body = await _body(request, limit)
        return JSONResponse(view(await run_in_threadpool(designs.open_upload, request.headers.get("x-filename", ""), body)))

    async def update(request: Request) -> JSONResponse:
        """Validate the design and return its exact expected values (or why exact mode does not apply)."""
        data = await _json(request)
        o = opened(data)
        sc = await designed(o, changes_of(data))
        return JSONResponse({"ok": True, "exact": await run_in_threadpool(figures.exact, sc)})

    async def yaml_file(request: Request) -> Response:
        data = await _json(request)
        o = opened(data)
        text = await run_in_threadpool(design_yaml, o, changes_of(data))
        name = f"{safe_name(o.scenario.name)}.yaml"
        return Response(text, media_type="application/yaml; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def start_run(request: Request) -> JSONResponse:
        data = await _json(request)
        o = opened(data)
        sc = await designed(o, changes_of(data))
        seed, reps = runs.seed_and_replications(data, sc)
        return JSONResponse(jobs.submit("run", reps, runs.montecarlo(sc, seed, reps)).view())

    async def start_compare(request: Request) -> JSONResponse:
        data = await _json(request)
        items = data.get("designs") or []
        if not isinstance(items, list) or not 1 <= len(items) <= runs.MAX_COMPARE:
            raise BadRequest(f"compare needs 1 to {runs.MAX_COMPARE} designs")
        named = {}
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise BadRequest("each design must be an object")
            label = str(item.get("label") or f"design {i + 1}")[:60]
            if label in named:
                label = f"{label} ({i + 1})"
            named[label] = await designed(opened(item), changes_of(item))
        seed, reps = runs.seed_and_replications(data, *named.values())
        return JSONResponse(jobs.submit("compare", reps * len(named), runs.comparison(named, seed, reps)).view())

    async def start_stress(request: Request) -> JSONResponse:
        data = await _json(request)
        o = opened(data)
        sc = await designed(o, changes_of(data))
        seed, reps = runs.seed_and_replications(data, sc)
        only = runs.stress_names(data.get("only"))
        return JSONResponse(jobs.submit("stress", (len(only) + 1) * reps, runs.stress(sc, seed, reps, only)).view())

    async def start_goal_seek(request: Request) -> JSONResponse:
        data = await _json(request)
        o = opened(data)
        sc = await designed(o, changes_of(data))
        seed, reps = runs.seed_and_replications(data, sc)
        spec = runs.goal_seek_spec(data, sc)
        return JSONResponse(jobs.submit("goalseek", 1, runs.goal_seek(sc, seed, reps, spec)).view())

    def job(request: Request) -> JSONResponse:
        try:
            return JSONResponse(jobs.view(request.path_params["jid"]))
        except KeyError:
            return JSONResponse({"error": "unknown job (finished jobs are kept for a while, then forgotten)"}, status_code=404)

    async def download(request: Request) -> Response:
        try:
            j = jobs.get(request.path_params["jid"])
        except KeyError:
            return JSONResponse({"error": "unknown job"}, status_code=404)
        what = request.path_params["what"]
        if j.kind != "run" or j.state != "done" or what not in ("report.html", "pbrsim.xlsx"):
            return JSONResponse({"error": "downloads are made from a finished Monte Carlo run: report.html or pbrsim.xlsx"},
                                status_code=404)
        keep = j.keep
        if "result" not in keep:
            return JSONResponse({"error": "this run's tables are no longer kept (only the latest runs keep theirs): run it again"},
                                status_code=410)
        data, media = await run_in_threadpool(runs.download, j, what)
        name = f"{safe_name(keep['result'].scenario.name)}-{what}"
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def scenario_error(request: Request, exc: ScenarioError) -> JSONResponse:
        return problems_response(exc)

    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=429)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        jobs.shutdown()

    routes = [
        Route("/", page),
        Route("/static/{name}", asset),
        Route("/api/scenarios", scenarios),
        Route("/api/open", open_file, methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/update", update, methods=["POST"]),
        Route("/api/yaml", yaml_file, methods=["POST"]),
        Route("/api/run", start_run, methods=["POST"]),
        Route("/api/compare", start_compare, methods=["POST"]),
        Route("/api/stress", start_stress, methods=["POST"]),
        Route("/api/goalseek", start_goal_seek, methods=["POST"]),
        Route("/api/jobs/{jid}", job),
        Route("/api/jobs/{jid}/{what}", download),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))],
                    exception_handlers={ScenarioError: scenario_error, BadRequest: bad_request, Busy: busy}, lifespan=lifespan)
    app.state.designs, app.state.jobs = designs, jobs
    return app
