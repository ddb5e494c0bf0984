"""`kgmem serve`: the HTTP API (FastAPI) and the web page, thin over `Service`.

The contract (see docs/serving.md and /docs): POST /ingest, GET /search, POST /ask
(server-sent events when the client accepts text/event-stream), GET/DELETE
/documents, GET /graph/..., GET /stats, GET /health; and OpenAI's chat API, GET /v1/models
and POST /v1/chat/completions (openai_api.py). Errors are JSON {"detail": ...}:
404 for an unknown document or entity, 413 over the size limit, 422 for a request
that is wrong (naming the field), 400 for a body that is not JSON, 401 without the token,
503 when the writer queue is full, 409 for a change asked of a read-only store, 502 when
the model fails, 507 when the disk is full. /openapi.json documents each, and
benchmarks/fuzz_api.py holds the server to it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from importlib import resources
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import (
    CorruptStoreError,
    DiskFullError,
    KgmemError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreLockedError,
)
from ..pipelines.llm import LLMError
from ..retrieval.packer import ContextTooSmallError
from .guard import Guard
from .openai_api import add_routes as add_openai_routes
from .schemas import (
    WORDS,
    AskIn,
    AskOut,
    DeletedOut,
    DocumentOut,
    DocumentsOut,
    EntityOut,
    ErrorOut,
    ForgetIn,
    ForgetOut,
    HealthOut,
    IngestIn,
    IngestOut,
    NeighborsOut,
    PathOut,
    RecallOut,
    RememberIn,
    SearchOut,
    StatsOut,
)
from .service import BadRequest, BusyError, Service
from .streaming import stream_from_thread

log = logging.getLogger("kgmem")
MODES = ("auto", "dense", "lexical", "hybrid", "graph")


def _status(exc: Exception) -> int:
    for kind, code in ((NotFoundError, 404), (BadRequest, 422), (BusyError, 503), (StoreLockedError, 503),
                       (ReadOnlyStoreError, 409), (LLMError, 502), (DiskFullError, 507), (CorruptStoreError, 500),
                       (ContextTooSmallError, 422), (ValueError, 422)):
        if isinstance(exc, kind):
            return code
    return 500


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Every operation may answer these (FastAPI's own 422 shape is replaced by ours: {field, message}).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("the body is not valid JSON (or not a readable form)"),
    401: _error("no token, or the wrong one (a server started with --token)"),
    409: _error("a change asked of a read-only store"),
    413: _error("the request is over --max-request-mb"),
    422: _error("a parameter or body field is wrong; `detail` names each one"),
    502: _error("the language model failed (POST /ask with a model backend)"),
    503: _error("busy: the writer queue is full, or another process holds the store's writer lock; "
                "retry after Retry-After seconds"),
    507: _error("no space left on the disk holding the store; what was committed is kept"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error("no such document, entity or turn")}
MAX_OFFSET = (1 << 63) - 1  # SQLite's largest integer
_INGEST_FULL = IngestIn.model_json_schema(ref_template="#/components/schemas/{model}")
_INGEST_SCHEMA = {k: v for k, v in _INGEST_FULL.items() if k != "$defs"}  # its $defs go to components


# Stateful clients (and fuzzers) follow these: a stored document's id, read back and deleted.
_DOC_LINKS = {
    "GetDocument": {"operationId": "document_documents__doc_id__get",
                    "parameters": {"doc_id": "$response.body#/ids/0"}},
    "DeleteDocument": {"operationId": "delete_documents__doc_id__delete",
                       "parameters": {"doc_id": "$response.body#/ids/0"}},
}


def _complete_openapi(app: FastAPI, token: str | None) -> None:
    """The schema FastAPI builds, plus what it cannot know: the models /ingest's hand-written
    body refers to, and the bearer token (when the server has one)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(_INGEST_FULL.get("$defs", {}))
            if token is not None:
                components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _doc(doc: Any) -> dict[str, Any]:
    return {"id": doc.id, "title": doc.title, "text": doc.text, "source": doc.source, "meta": doc.meta}


def create_app(service: Service, *, token: str | None = None, max_request_bytes: int = 64 << 20) -> FastAPI:
    """The ASGI app. `token`: required on every request (header `Authorization: Bearer
    T`, or the cookie the web page gets from `/?token=T`)."""
    app = FastAPI(
        title="kgmem", version="1",
        description="Long-term memory: passages (SQLite + FAISS) and a knowledge graph, searched and asked.",
        max_body_size=max_request_bytes, responses=ERRORS,
    )
    static = resources.files("kgmem.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    # the graph view and Cytoscape.js, the same files `kgmem export graph.html` inlines
    app.mount("/vendor", StaticFiles(directory=str(resources.files("kgmem.graph") / "assets")), name="vendor")

    _complete_openapi(app, token)

    @app.exception_handler(KgmemError)
    @app.exception_handler(ValueError)
    async def kgmem_error(request: Request, exc: Exception) -> JSONResponse:
        code = _status(exc)
        headers = {"Retry-After": "2"} if code == 503 else None
        if code == 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _explain(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Allow: every method of every route at this path, not the first's
            methods = {m for r in app.router.routes if getattr(r, "methods", None)
                       and r.matches(request.scope)[0] != Match.NONE for m in r.methods}
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers or None)

    # ------------------------------------------------------------------ reading
    @app.get("/health", response_model=HealthOut, tags=["service"])
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/stats", response_model=StatsOut, tags=["service"])
    def stats() -> dict[str, Any]:
        return service.stats()

    @app.get("/search", response_model=SearchOut, tags=["memory"])
    def search(q: str = Query(min_length=1, max_length=4000, pattern=WORDS), k: int = Query(10, ge=1, le=200),
               mode: str = Query("auto", pattern="^(" + "|".join(MODES) + ")$")) -> dict[str, Any]:
        """Passages ranked for `q`, each with its document id and character span."""
        return {"hits": [h.as_dict() for h in service.search(q, k=k, mode=mode)]}

    @app.post("/ask", response_model=AskOut, tags=["memory"],
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "JSON; or, for Accept: text/event-stream, events `token` "
                                              "({text}) as the answer streams, then `answer` (the JSON)"}})
    async def ask(body: AskIn, request: Request) -> Any:
        """Answer from memory, with citations to document spans (or, with `conversation` or
        `user`, to remembered turns)."""
        if "text/event-stream" in request.headers.get("accept", ""):
            return _stream_answer(service, body)
        ans = await asyncio.to_thread(service.ask, body.question, k=body.k, budget=body.budget, mode=body.mode,
                                      conversation=body.conversation, user=body.user, asker=body.asker)
        return JSONResponse(ans.as_dict())

    @app.get("/documents", response_model=DocumentsOut, tags=["documents"])
    def documents(offset: int = Query(0, ge=0, le=MAX_OFFSET), limit: int = Query(50, ge=1, le=1000),
                  prefix: str = "") -> dict[str, Any]:
        return service.documents(offset=offset, limit=limit, prefix=prefix)

    @app.get("/documents/{doc_id:path}", response_model=DocumentOut, responses=NOT_FOUND, tags=["documents"])
    def document(doc_id: str) -> dict[str, Any]:
        return _doc(service.get(doc_id))

    @app.get("/graph/entities/{name:path}", response_model=EntityOut, responses=NOT_FOUND, tags=["graph"])
    def entity(name: str) -> dict[str, Any]:
        return service.entity(name)

    @app.get("/graph/neighbors", response_model=NeighborsOut, responses=NOT_FOUND, tags=["graph"])
    def neighbors(entity: str = Query(min_length=1), hops: int = Query(1, ge=1, le=3),
                  limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return service.neighbors(entity, hops=hops, limit=limit)

    @app.get("/graph/path", response_model=PathOut, responses=NOT_FOUND, tags=["graph"])
    def path(source: str = Query(min_length=1), target: str = Query(min_length=1)) -> dict[str, Any]:
        return service.path(source, target)

    # ------------------------------------------------------------------ writing
    @app.post("/ingest", response_model=IngestOut, tags=["documents"], responses={200: {"links": _DOC_LINKS}},
              openapi_extra={"requestBody": {
        "required": True, "content": {
            "application/json": {"schema": _INGEST_SCHEMA},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}},
                # no "type": a form field is text whatever a client meant (null arrives as "null")
                "id": {"maxLength": 1000, "description": "the document's id (one file only)"}}}}}}})
    async def ingest(request: Request) -> Any:
        """Add documents: JSON `{"records": [{"id", "title", "text"}]}` or `{"texts": [...]}`,
        or a multipart upload of files (`file`, repeatable; `id` for a single file)."""
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form(max_files=100, max_part_size=max_request_bytes)
            files = [f for f in form.getlist("file") if hasattr(f, "read")]
            if not files:
                raise BadRequest("file: no file in the upload")
            given = form.get("id")
            if given and len(files) > 1:
                raise BadRequest("id: give an id with one file only")
            if given and len(str(given)) > 1000:
                raise BadRequest("id: at most 1000 characters")
            reports = []
            for f in files:
                data = await f.read()
                reports.append(await asyncio.to_thread(service.ingest_file, f.filename, data,
                                                       str(given) if given else None, f.content_type))
            return _merge(reports)
        try:
            body = IngestIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"detail": _explain(exc.errors(), "body")}, status_code=422)
        if body.records is not None:
            recs = [r.model_dump() for r in body.records]
            report = await asyncio.to_thread(service.ingest_records, recs)
        else:
            report = await asyncio.to_thread(service.ingest_texts, body.texts or [], body.title)
        return report.as_dict()

    @app.delete("/documents/{doc_id:path}", response_model=DeletedOut, responses=NOT_FOUND, tags=["documents"])
    def delete(doc_id: str) -> dict[str, Any]:
        return {"deleted": doc_id, "chunks": service.delete(doc_id)}

    # ------------------------------------------------------------------ conversations
    @app.post("/remember", response_model=IngestOut, tags=["conversations"])
    async def remember(body: RememberIn) -> dict[str, Any]:
        """Remember a session's turns (no LLM call); relative times are resolved against `at`."""
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        report = await asyncio.to_thread(service.remember, messages, body.conversation, body.user, body.at,
                                         body.session)
        return report.as_dict()

    @app.get("/recall", response_model=RecallOut, tags=["conversations"])
    def recall(q: str = Query(min_length=1, max_length=4000, pattern=WORDS), conversation: str | None = None,
               user: str | None = None, k: int = Query(10, ge=1, le=100),
               since: str | None = Query(None, pattern=WORDS, description="ISO 8601 or e.g. '8 May, 2023'"),
               until: str | None = Query(None, pattern=WORDS)) -> dict[str, Any]:
        """The turns of a conversation (or a user's) that best match `q`, within [since, until]."""
        return {"turns": [t.as_dict() for t in service.recall(q, conversation=conversation, user=user, k=k,
                                                                  since=since, until=until)]}

    @app.post("/forget", response_model=ForgetOut, responses=NOT_FOUND, tags=["conversations"])
    def forget(body: ForgetIn) -> dict[str, Any]:
        """Delete remembered turns: a conversation's, a user's, or these ids."""
        return {"forgotten": service.forget(conversation=body.conversation, user=body.user, turns=body.turns)}

    # ------------------------------------------------------------------ OpenAI's chat API
    add_openai_routes(app, service, _status)

    # ------------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    return Guard(app, token=token) if token else app  # type: ignore[return-value]


def _explain(errors: Any, prefix: str | None = None) -> list[dict[str, Any]]:
    """Validation errors as [{"field": "records.0.text", "message": ...}]: the field that is wrong."""
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        out.append({"field": ".".join(loc) or (prefix or "body"), "message": e.get("msg", "invalid")})
    return out


def _merge(reports: list[Any]) -> dict[str, Any]:
    merged = reports[0].as_dict()
    for r in reports[1:]:
        d = r.as_dict()
        for key in ("added", "unchanged", "replaced", "chunks", "words", "stale_parts"):
            merged[key] += d[key]
        for key in ("failed", "skipped", "notices", "ids"):
            merged[key] += d[key]
        merged["seconds"] = round(merged["seconds"] + d["seconds"], 3)
    return merged


def _stream_answer(service: Service, body: AskIn) -> StreamingResponse:
    """Server-sent events: `token` as the answer streams, then `answer` (or `error`)."""

    def job(push: Any, cancelled: threading.Event) -> None:
        ans = service.ask(body.question, k=body.k, budget=body.budget, mode=body.mode,
                          on_token=lambda t: push("token", {"text": t}), cancelled=cancelled,
                          conversation=body.conversation, user=body.user, asker=body.asker)
        push("answer", ans.as_dict())

    def render(kind: str, data: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    return stream_from_thread(job, render, on_error=lambda exc: {"detail": str(exc), "status": _status(exc)})
