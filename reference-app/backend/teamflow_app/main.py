"""The reference TeamFlow backend: health, a small notes API on PostgreSQL with a
Redis cache, attachments of notes in an S3 bucket, a websocket echo, Prometheus
metrics and JSON logs."""

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.routing import Match

from . import _build, cache, db, logs, metrics, settings, storage

SETTINGS = settings.load()
logs.setup(SETTINGS.log_level)
log = logging.getLogger("teamflow")


@asynccontextmanager
async def lifespan(app):
    app.state.db = db.Database(
        SETTINGS.database_url, SETTINGS.database_read_url, SETTINGS.db_pool_min, SETTINGS.db_pool_max,
        SETTINGS.db_retry_seconds, f"teamflow-{_build.VERSION}", unreachable_seconds=SETTINGS.db_unreachable_seconds,
    )
    await app.state.db.open()
    redis = cache.connect(SETTINGS)
    app.state.cache = cache.Cache(redis, SETTINGS.redis_retry_after_seconds,
                                  on_error=lambda operation: metrics.CACHE_ERRORS.labels(operation).inc())
    app.state.storage = storage.Storage(SETTINGS)
    files = await app.state.storage.check()
    if files.startswith("error"):
        # the API serves notes without it; /health says degraded until the bucket answers
        log.error("file storage unavailable: %s", files[len("error: "):],
                  extra={"fields": {"event": "storage", "bucket": SETTINGS.s3_bucket_name}})
    log.info("started", extra={"fields": {"event": "startup", "storage": files}})
    try:
        yield
    finally:
        await app.state.db.close()
        await redis.aclose()
        log.info("stopped", extra={"fields": {"event": "shutdown"}})


app = FastAPI(title=SETTINGS.project_name, version=_build.VERSION, lifespan=lifespan,
              docs_url=None, redoc_url=None, openapi_url=None)
API = SETTINGS.api_v1_str


class ObservedMiddleware:
    """Request id, access log line and the plan's HTTP metrics for every HTTP request."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        token = logs.request_id.set(rid)
        endpoint = _endpoint(scope)
        method = scope["method"]
        status = {"code": 500}
        started = time.perf_counter()
        metrics.IN_PROGRESS.labels(method, endpoint).inc()

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.inner(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            metrics.IN_PROGRESS.labels(method, endpoint).dec()
            metrics.REQUESTS.labels(method, endpoint, str(status["code"])).inc()
            metrics.DURATION.labels(method, endpoint).observe(elapsed)
            log.info("request", extra={"fields": {
                "event": "access", "method": method, "path": scope["path"], "status": status["code"],
                "duration_ms": round(elapsed * 1000, 2),
            }})
            logs.request_id.reset(token)


def _endpoint(scope):
    """The route template (bounded label values), or 'unmatched'."""
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unmatched")
    return "unmatched"


app.add_middleware(ObservedMiddleware)


@app.exception_handler(db.DatabaseUnavailable)
async def database_unavailable(request: Request, exc: db.DatabaseUnavailable):
    return JSONResponse(status_code=503, content={"detail": "database unavailable, try again"},
                        headers={"Retry-After": "5"})


@app.exception_handler(db.CommitOutcomeUnknown)
async def commit_outcome_unknown(request: Request, exc: db.CommitOutcomeUnknown):
    return JSONResponse(status_code=503, content={
        "detail": "the database failed while committing: the change may or may not have been saved"})


@app.exception_handler(storage.StorageUnavailable)
async def storage_unavailable(request: Request, exc: storage.StorageUnavailable):
    log.error("file storage unavailable: %s", exc, extra={"fields": {"event": "storage"}})
    return JSONResponse(status_code=503, content={"detail": "file storage unavailable, try again"},
                        headers={"Retry-After": "5"})


@app.exception_handler(storage.StorageDisabled)
async def storage_disabled(request: Request, exc: storage.StorageDisabled):
    return JSONResponse(status_code=503, content={"detail": "file storage is not configured (S3_BUCKET_NAME)"})


async def _timed(query_name, coro):
    started = time.perf_counter()
    try:
        return await coro
    finally:
        metrics.DB_QUERY_DURATION.labels(query_name).observe(time.perf_counter() - started)


async def _check_database():
    async def probe(conn):
        await conn.execute("SELECT 1")
    try:
        # through the reader pool: a replica answering keeps the host in the load balancer while the
        # writer fails over (writes wait for it, see db.py)
        await asyncio.wait_for(_timed("health", app.state.db.read(probe, timeout=2)), timeout=3)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - health reports any failure
        return f"error: {type(exc).__name__}"


async def _check_redis():
    await app.state.cache.ping()
    return app.state.cache.status()


@app.get("/health")
async def health(response: Response):
    """ok (200); degraded (200): Redis is unreachable and the API serves from PostgreSQL alone, or the file
    storage is unreachable and attachments fail; `reasons` says why; error (503): the database is unreachable
    (the API cannot serve) or the build's self-test failed. The deploy gate wants ok (a release is not rolled
    out while a dependency is down); nginx keeps a degraded host in its pool, since it serves."""
    database, redis, files = await asyncio.gather(_check_database(), _check_redis(), app.state.storage.check())
    stats = app.state.db.writer.get_stats()
    metrics.DB_POOL_SIZE.set(stats.get("pool_size", 0))
    metrics.DB_CONNECTIONS_ACTIVE.set(stats.get("pool_size", 0) - stats.get("pool_available", 0))
    body = {"status": "ok", "version": _build.VERSION, "database": database, "redis": redis, "storage": files}
    reasons = [f"{name}: {state}" for name, state in (("database", database), ("redis", redis), ("storage", files))
               if state not in ("ok", "disabled")]
    if _build.BROKEN == "health":
        body["status"] = "error"
        body["selftest"] = "failed: this build is broken on purpose"
    elif database != "ok":
        body["status"] = "error"
    elif reasons:
        body["status"] = "degraded"
    if reasons:
        body["reasons"] = reasons
    metrics.DEGRADED.set(0 if body["status"] == "ok" else 1)
    if body["status"] == "error":
        response.status_code = 503
    return body


class NoteIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=10000)


def _note(row):
    return {"id": row[0], "title": row[1], "body": row[2], "created_at": row[3].isoformat()}


@app.post(API + "/notes", status_code=201)
async def create_note(note: NoteIn):
    async def insert(conn):
        cur = await conn.execute(
            "INSERT INTO notes (title, body) VALUES (%s, %s) RETURNING id, title, body, created_at",
            (note.title, note.body),
        )
        return await cur.fetchone()

    async def landed(conn, row):
        # the note's id and its transaction's start time (microseconds): no other note has both
        cur = await conn.execute("SELECT 1 FROM notes WHERE id = %s AND created_at = %s", (row[0], row[3]))
        return await cur.fetchone() is not None
    row = await _timed("insert_note", app.state.db.write(insert, landed=landed))
    return _note(row)


@app.get(API + "/notes/{note_id}")
async def read_note(note_id: int):
    key = f"teamflow:note:{note_id}"
    cached = await app.state.cache.get(key)  # None while Redis is down: read from PostgreSQL
    if cached is not None:
        return dict(json.loads(cached), cached=True)

    async def select(conn):
        cur = await conn.execute("SELECT id, title, body, created_at FROM notes WHERE id = %s", (note_id,))
        return await cur.fetchone()
    row = await _timed("select_note", app.state.db.read(select))
    if row is None:
        # a replica may not have replayed a note just written: the leader has it
        row = await _timed("select_note", app.state.db.write(select))
    if row is None:
        raise HTTPException(status_code=404, detail="no such note")
    note = _note(row)
    await app.state.cache.set(key, json.dumps(note), SETTINGS.cache_ttl_seconds)
    return dict(note, cached=False)


@app.get(API + "/notes")
async def list_notes(limit: int = 20):
    async def select(conn):
        cur = await conn.execute(
            "SELECT id, title, body, created_at FROM notes ORDER BY id DESC LIMIT %s", (min(max(limit, 1), 100),),
        )
        return await cur.fetchall()
    return [_note(row) for row in await _timed("list_notes", app.state.db.read(select))]


def _attachment(row):
    return {"name": row[0], "size": row[1], "sha256": row[2], "content_type": row[3], "created_at": row[4].isoformat()}


def _attachment_name(name):
    if not storage.NAME.fullmatch(name):
        raise HTTPException(status_code=422, detail="an attachment's name is 1 to 200 of A-Z a-z 0-9 . _ -, "
                                                    "starting with a letter or digit")
    return name


async def _select_attachment(note_id, name):
    async def select(conn):
        cur = await conn.execute("SELECT name, size, sha256, content_type, created_at FROM attachments "
                                 "WHERE note_id = %s AND name = %s", (note_id, name))
        return await cur.fetchone()
    row = await _timed("select_attachment", app.state.db.read(select))
    if row is None:  # a replica may not have it yet
        row = await _timed("select_attachment", app.state.db.write(select))
    if row is None:
        raise HTTPException(status_code=404, detail="no such attachment")
    return row


@app.put(API + "/notes/{note_id}/attachments/{name}", status_code=201)
async def put_attachment(note_id: int, name: str, request: Request):
    """The request's body becomes the attachment NAME of the note (replacing one of that name)."""
    _attachment_name(name)
    data = await request.body()
    if len(data) > SETTINGS.attachment_max_bytes:
        raise HTTPException(status_code=413, detail=f"an attachment is at most {SETTINGS.attachment_max_bytes} bytes")
    content_type = request.headers.get("content-type", "application/octet-stream")[:200]

    async def note_exists(conn):
        cur = await conn.execute("SELECT 1 FROM notes WHERE id = %s", (note_id,))
        return await cur.fetchone() is not None
    if not await _timed("select_note", app.state.db.write(note_exists)):
        raise HTTPException(status_code=404, detail="no such note")
    # the object first: a row always has its object (an object whose row failed is replaced by a retry)
    digest = await app.state.storage.put(storage.key(note_id, name), data, content_type)

    async def upsert(conn):
        cur = await conn.execute(
            "INSERT INTO attachments (note_id, name, size, sha256, content_type) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (note_id, name) DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256, "
            "content_type = EXCLUDED.content_type, created_at = now() "
            "RETURNING name, size, sha256, content_type, created_at",
            (note_id, name, len(data), digest, content_type),
        )
        return await cur.fetchone()

    async def landed(conn, row):
        cur = await conn.execute("SELECT 1 FROM attachments WHERE note_id = %s AND name = %s AND sha256 = %s "
                                 "AND created_at = %s", (note_id, name, digest, row[4]))
        return await cur.fetchone() is not None
    return _attachment(await _timed("upsert_attachment", app.state.db.write(upsert, landed=landed)))


@app.get(API + "/notes/{note_id}/attachments")
async def list_attachments(note_id: int):
    async def select(conn):
        cur = await conn.execute("SELECT name, size, sha256, content_type, created_at FROM attachments "
                                 "WHERE note_id = %s ORDER BY name", (note_id,))
        return await cur.fetchall()
    return [_attachment(row) for row in await _timed("list_attachments", app.state.db.read(select))]


@app.get(API + "/notes/{note_id}/attachments/{name}")
async def get_attachment(note_id: int, name: str):
    """The attachment's content, read from the bucket through the app."""
    row = await _select_attachment(note_id, _attachment_name(name))
    try:
        data, content_type = await app.state.storage.get(storage.key(note_id, name))
    except storage.MissingObject:
        log.error("attachment without its object", extra={"fields": {
            "event": "storage", "key": storage.key(note_id, name)}})
        raise HTTPException(status_code=502, detail="the attachment's file is missing from the storage") from None
    # a download, never a page of the site: an uploaded HTML file is not rendered on the site's origin
    return Response(content=data, media_type=content_type, headers={
        "X-Content-SHA256": row[2], "Content-Disposition": f'attachment; filename="{name}"'})


@app.delete(API + "/notes/{note_id}/attachments/{name}", status_code=204)
async def delete_attachment(note_id: int, name: str):
    _attachment_name(name)

    async def delete(conn):
        cur = await conn.execute("DELETE FROM attachments WHERE note_id = %s AND name = %s RETURNING name",
                                 (note_id, name))
        return await cur.fetchone()
    if await _timed("delete_attachment", app.state.db.write(delete)) is None:
        raise HTTPException(status_code=404, detail="no such attachment")
    # the row first: a failed delete of the object leaves an object no row names, never a row without its object
    try:
        await app.state.storage.delete(storage.key(note_id, name))
    except storage.StorageUnavailable as exc:
        log.error("attachment's object not deleted: %s", exc, extra={"fields": {
            "event": "storage", "key": storage.key(note_id, name)}})
    return Response(status_code=204)


@app.get(API + "/version")
async def version():
    return {"version": _build.VERSION, "environment": SETTINGS.environment}


@app.get("/metrics")
async def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)


@app.websocket("/ws/echo")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive_text()
            await websocket.send_text(message)
    except WebSocketDisconnect:
        pass
