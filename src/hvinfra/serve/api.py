"""The HTTP API (FastAPI) and the web page over a JobService. Imported only by `hvinfra serve`
and the tests; the CLI passes the service and the token."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from hvinfra import __version__
from hvinfra.generate.request import I2VRequest, T2VRequest
from hvinfra.generate.tables import tables
from hvinfra.serve.service import JobService, job_view, valid_state
from hvinfra.serve.store import STATES
from hvinfra.serve.submission import (
    FIELDS,
    MAX_BODY_BYTES,
    MAX_JSON_BYTES,
    SubmissionInvalid,
    parse_submission,
)

COOKIE = "hvinfra_token"
EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0


def _tokens_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _submission_schema(kind: str) -> dict[str, Any]:
    """The POST body's schema for /openapi.json: the request model's fields a job accepts."""
    model = T2VRequest if kind == "t2v" else I2VRequest
    full = model.model_json_schema()
    allowed = set(FIELDS[kind]) | ({"image"} if kind == "i2v" else set())
    properties = {k: v for k, v in full.get("properties", {}).items() if k in allowed}
    if kind == "i2v":
        properties["image"] = {"type": "string", "description": "the image, base64 (JSON)"}
        for switch in ("stability", "dynamic"):
            properties[switch] = {"type": "boolean"}
    schema = {"type": "object", "properties": properties, "required": ["prompt"]}
    if kind == "i2v":
        schema["required"] = ["prompt", "image"]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "multipart/form-data": {"schema": schema},
            },
        }
    }


def _same_origin(request: Request) -> bool:
    """Browsers send Origin with every cross-site POST/DELETE; curl and scripts send none.
    Behind a reverse proxy the Host (or X-Forwarded-Host) it passes must be the public name."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc.lower()
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")}
    return netloc in {h.strip().lower() for h in hosts if h}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def create_app(service: JobService, token: str | None = None) -> FastAPI:
    """The app: every API path under /v1, the page at /, the schema at /openapi.json."""
    app = FastAPI(
        title=f"hvinfra serve {service.kind}",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )

    @app.middleware("http")
    async def _body_limit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request):
            # a page on another site posting a form here (cross-site request forgery)
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None and request.headers.get("transfer-encoding"):
                return JSONResponse({"detail": "send a Content-Length"}, status_code=411)
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
                return JSONResponse(
                    {"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413
                )
        return await call_next(request)

    def authorize(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and _tokens_equal(given.strip(), token):
            return
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and _tokens_equal(cookie, token):
            return
        raise HTTPException(
            401,
            "a token is required: send `Authorization: Bearer TOKEN`",
            headers={"WWW-Authenticate": "Bearer"},
        )

    auth = [Depends(authorize)]

    def found(job_id: str) -> Any:
        record = service.get(job_id)
        if record is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return record

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        text = resources.files("hvinfra.serve").joinpath("page.html").read_text("utf-8")
        table = tables()
        choices = {
            "resolutions": table.resolutions if service.kind == "t2v" else table.i2v_resolutions,
            "aspects": table.aspects, "frames": table.frames.default,
            "resolution": table.t2v_default_resolution if service.kind == "t2v"
            else table.i2v_default_resolution,
            "aspect": table.t2v_default_aspect,
        }  # fmt: skip
        text = text.replace("{{CHOICES}}", json.dumps(choices))
        return HTMLResponse(text.replace("{{KIND}}", service.kind))

    @app.post("/v1/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        """The page trades the token for an HttpOnly cookie (EventSource and <video> cannot
        send headers)."""
        try:
            given = (await request.json()).get("token", "")
        except (ValueError, AttributeError):
            given = ""
        if token is None or not isinstance(given, str) or not _tokens_equal(given, token):
            raise HTTPException(401, "wrong token")
        response = JSONResponse({"ok": True})
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    @app.get("/v1/health", dependencies=auth)
    def health() -> dict[str, Any]:
        return service.health()

    @app.post(
        "/v1/jobs", status_code=202, dependencies=auth,
        openapi_extra=_submission_schema(service.kind),
    )  # fmt: skip
    async def submit(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        image: bytes | None = None
        fields: dict[str, Any]
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form(max_files=1, max_fields=32)
            fields = {}
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key == "image":
                        image = await value.read()
                    continue
                fields[key] = value
        elif content_type.startswith("application/json"):
            body = await request.body()
            if len(body) > MAX_JSON_BYTES:
                raise HTTPException(413, f"JSON body over {MAX_JSON_BYTES} bytes")
            try:
                fields = json.loads(body)
            except ValueError as exc:
                raise HTTPException(400, f"the body is not JSON: {exc}") from None
            if not isinstance(fields, dict):
                raise HTTPException(422, "the body must be a JSON object")
        else:
            raise HTTPException(415, "send application/json or a form (multipart or urlencoded)")
        if service.kind == "i2v" and "image" in fields and image is None:
            image = _decode_image(fields.pop("image"))
        try:
            submission = parse_submission(service.kind, fields, image)
        except SubmissionInvalid as exc:
            return JSONResponse(
                {"detail": "invalid generation request", "errors": exc.problems,
                 "fix": exc.fix},
                status_code=422,
            )  # fmt: skip
        record = await asyncio.to_thread(service.submit, submission)
        return JSONResponse(
            {"id": record.id, "state": record.state, "links": job_view(record)["links"]},
            status_code=202,
        )

    @app.get("/v1/jobs", dependencies=auth)
    def list_jobs(state: str | None = None, limit: int = 1000) -> dict[str, Any]:
        if not valid_state(state):
            raise HTTPException(422, f"state must be one of {', '.join(STATES)}")
        if not 1 <= limit <= 1000:
            raise HTTPException(422, "limit must be between 1 and 1000")
        return {"jobs": [job_view(r) for r in service.list(state, limit)]}

    @app.get("/v1/jobs/{job_id}", dependencies=auth)
    def get_job(job_id: str) -> dict[str, Any]:
        return job_view(found(job_id), with_sidecar=True)

    @app.delete("/v1/jobs/{job_id}", dependencies=auth)
    def cancel_job(job_id: str) -> JSONResponse:
        found(job_id)
        record = service.cancel(job_id)
        assert record is not None
        if record.state == "running":
            return JSONResponse(job_view(record), status_code=202)  # being stopped
        if record.state != "cancelled":
            raise HTTPException(409, f"job {job_id} is {record.state} already")
        return JSONResponse(job_view(record))

    @app.get("/v1/jobs/{job_id}/video", dependencies=auth, response_model=None)
    def video(job_id: str) -> FileResponse:
        record = found(job_id)
        path = service.video_path(record)
        if path is None:
            raise HTTPException(404, f"job {job_id} has no video ({record.state})")
        return FileResponse(path, media_type="video/mp4", filename=path.name)

    @app.get("/v1/jobs/{job_id}/events", dependencies=auth, response_model=None)
    def events(job_id: str) -> StreamingResponse:
        found(job_id)
        return StreamingResponse(
            _event_stream(service, job_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def _decode_image(value: Any) -> bytes:
    if not isinstance(value, str):
        raise HTTPException(422, "image: base64 text expected")
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, "image: not valid base64") from None


async def _event_stream(service: JobService, job_id: str) -> AsyncIterator[str]:
    """`state` on connect and on every change, `step` on progress, then the stream ends when
    the job is done, failed or cancelled (the last event is `state` with the whole job)."""
    last_state: str | None = None
    last_step: tuple[int, int] | None = None
    quiet = 0.0
    while True:
        record = service.get(job_id)
        if record is None:
            return
        view = job_view(record)
        events: list[str] = []
        if record.state != last_state:
            last_state = record.state
            events.append(_sse("state", view))
        if record.total and (record.step, record.total) != last_step:
            last_step = (record.step, record.total)
            step = _sse("step", {"id": job_id, **view["progress"]})
            # the last step before the final state; a new state before its first step
            events.insert(0 if record.terminal else len(events), step)
        for event in events:
            yield event
        if record.terminal:
            return
        sent = bool(events)
        quiet = 0.0 if sent else quiet + EVENT_POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keepalive\n\n"
        await asyncio.sleep(EVENT_POLL_S)
