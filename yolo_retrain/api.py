"""The correction intake: an HTTP service (FastAPI) in front of the correction store, the retrain deployment
and the model registry.

Reviewers' tools POST corrections here; operators start retrains and read the champion. Every endpoint but
``/health`` and the docs needs ``Authorization: Bearer <YOLO_RETRAIN_API_TOKEN>``. Without a token the
service only binds to loopback, and takes requests from loopback's own origin only: a web page the operator
visits could otherwise POST a form to it (no CORS preflight) or read it through DNS rebinding. The token, the
origin and the body size are checked before the body is read.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.metadata import version as package_version
from typing import Annotated, Any, Literal
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Request, Security, UploadFile
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from yolo_retrain import intake, registry, tracking
from yolo_retrain.config import Settings, Trigger, configure_environment
from yolo_retrain.errors import DuplicateCorrection, InvalidInput, TrackingSetupError, TransientError
from yolo_retrain.image_metadata import parse_json
from yolo_retrain.labels import MAX_IMAGE_BYTES, MAX_LABEL_BYTES, decode_labels
from yolo_retrain.origin import from_a_web_page, is_loopback
from yolo_retrain.selection.api import router as samples_router
from yolo_retrain.store import CorrectionStore, Status

log = logging.getLogger(__name__)

# Response models -----------------------------------------------------------------------------------


class Error(BaseModel):
    """What every refusal answers."""

    detail: str | list[dict[str, Any]] = Field(
        description="Why: a message naming the input and the reason, or FastAPI's list of field errors."
    )


class CorrectionOut(BaseModel):
    """A stored correction."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    image_sha256: str = Field(description="SHA-256 of the image bytes (images are stored once by content).")
    status: Status = Field(
        description="pending until a retrain claims it; then accepted on its own merit, or held as suspicious by the "
        "retrain's screening; superseded if a newer correction of the image replaced it; dropped by a person."
    )
    num_boxes: int
    created_at: datetime
    metadata: dict[str, str] = Field(default_factory=dict, description="The image's metadata (camera, site...), as stored.")


class CorrectionCreated(BaseModel):
    correction: CorrectionOut
    pending: int | None = Field(
        description="Corrections now waiting for a retrain (null if they could not be counted after storing)."
    )
    announcement: str | None = Field(
        default=None,
        description="Set when the retrain threshold could not be checked or announced after the correction was "
        "stored: what failed and what picks the backlog up (the correction is stored all the same).",
    )


class Stats(BaseModel):
    pending: int
    claimed: int
    accepted: int = Field(description="In every retrain's data: promoted by the gate, or accepted by a person.")
    rejected: int = Field(description="Held for a person: the gate rejected the version they went into (before screening).")
    suspicious: int = Field(default=0, description="Held for a person: screening doubts them (the reason per box).")
    superseded: int
    dropped: int
    withdrawn: int = Field(default=0, description="Their Label Studio annotation was deleted before a model learned them.")
    applied: int = Field(default=0, description="Rows of a store from before the lifecycle, not sorted yet.")
    total: int
    threshold: int = Field(description="Pending corrections that trigger a retrain.")


class RetrainRequest(BaseModel):
    """Parameters of the retrain flow; omitted ones take the deployment's (or the settings') defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    trigger: Trigger = "manual"
    min_corrections: int | None = Field(default=None, ge=0, description="Skip with fewer pending corrections.")
    force: bool = Field(default=False, description="Retrain even below min_corrections.")
    epochs: int | None = Field(default=None, ge=1)
    imgsz: int | None = Field(default=None, ge=32)
    batch: int | None = Field(default=None, ge=1)


class RetrainStarted(BaseModel):
    flow_run_id: UUID
    flow_run_name: str
    deployment: str
    parameters: dict[str, Any] = Field(description="The parameters the flow run was created with.")
    ui_url: str = Field(description="The flow run in the Prefect UI.")


class Champion(BaseModel):
    model_name: str
    version: str
    aliases: list[str]
    metrics: dict[str, float] = Field(description="Holdout metrics measured when it was registered (its logged model's post_* metrics).")
    weights_sha256: str | None
    run_id: str | None = Field(description="The MLflow run that produced it.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


_ERRORS = {
    401: "Missing bearer token.",
    403: "Wrong bearer token.",
    404: "Not found.",
    409: "The same image with the same labels is already pending or being retrained on.",
    413: "Request body larger than YOLO_RETRAIN_MAX_UPLOAD_BYTES.",
    415: "Wrong Content-Type (of the request, or of the uploaded image).",
    422: "Invalid input; the detail names the file, line and reason.",
    503: "A service is unavailable for now (Prefect or MLflow unreachable, correction database busy): retry.",
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Error, "description": _ERRORS[code]} for code in codes}


# Request plumbing ----------------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> CorrectionStore:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[CorrectionStore, Depends(_store)]


def _require_content_type(media_type: str) -> Callable[[Request], None]:
    """A dependency refusing requests whose Content-Type is not ``media_type`` with 415."""

    def check(request: Request) -> None:
        given = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if given != media_type:
            raise HTTPException(415, f"{request.url.path} takes {media_type}, got {given or 'no Content-Type'}")

    return check


class _Guard:
    """ASGI middleware refusing a request before the app reads its body: bearer token (or, without one, the
    request's origin: ``origin.from_a_web_page``), then body size.

    The size is checked on Content-Length up front and again on the bytes actually received (chunked bodies).
    """

    def __init__(self, app: ASGIApp, token: str | None, max_bytes: int, public_paths: frozenset[str]) -> None:
        self.app, self.token, self.max_bytes, self.public_paths = app, token, max_bytes, public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope["path"], Headers(scope=scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    def _refusal(self, path: str, headers: Headers) -> JSONResponse | None:
        if self.token is None and (why := from_a_web_page(headers, loopback_only=True)) is not None:
            return JSONResponse(
                {"detail": f"refused: {why}. Without YOLO_RETRAIN_API_TOKEN the intake takes requests from loopback's "
                 "own origin only; to call it from elsewhere set a token and send it (Authorization: Bearer)"},
                403,
            )
        if self.token is not None and path not in self.public_paths:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given:
                return JSONResponse(
                    {"detail": "missing bearer token (Authorization: Bearer <YOLO_RETRAIN_API_TOKEN>)"},
                    401,
                    {"WWW-Authenticate": "Bearer"},
                )
            if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return JSONResponse({"detail": "invalid bearer token"}, 403)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            return JSONResponse(
                {"detail": f"request body of {length} bytes exceeds the limit of {self.max_bytes}"}, 413
            )
        return None

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI's exception middleware, inside this one, answers it
                    raise HTTPException(413, f"request body exceeds the limit of {self.max_bytes} bytes")
            return message

        return limited_receive


# Endpoints -----------------------------------------------------------------------------------------

public = APIRouter()
protected = APIRouter(
    dependencies=[
        Security(HTTPBearer(auto_error=False, description="YOLO_RETRAIN_API_TOKEN (enforced before the body is read)"))
    ],
    responses=_responses(401, 403, 413),
)


@public.get("/health", summary="Liveness", description="Always 200 while the service runs; needs no token.")
def health() -> Health:
    return Health()


@protected.post(
    "/corrections",
    status_code=201,
    summary="Submit a correction",
    description=(
        "A reviewer's corrected labels for one image, as multipart/form-data. The image (JPEG, PNG, BMP, WebP or "
        "TIFF) is checked by decoding it; `labels` is YOLO label text (`class cx cy w h` per line, normalised), as a "
        "file or a text field; an empty labels file marks an image without objects. Refused input changes nothing."
    ),
    responses=_responses(409, 415, 422, 503),
    dependencies=[Depends(_require_content_type("multipart/form-data"))],
)
def submit_correction(
    store: StoreDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="The image (declared image/* or application/octet-stream).")],
    labels: Annotated[UploadFile | str, File(description="YOLO label text, as a file or a text field.")],
    author: Annotated[str | None, Form(description="Who corrected it.")] = None,
    source_model_version: Annotated[
        str | None, Form(description="Model version whose predictions were corrected.")
    ] = None,
    metadata: Annotated[
        str | None,
        Form(description='The image\'s metadata as a JSON object of strings, e.g. {"camera": "cam2", "site": "north"}: '
             "the promotion gate compares the models on each slice of the holdout it defines."),
    ] = None,
) -> CorrectionCreated:
    declared = (image.content_type or "").lower()
    if not (declared.startswith("image/") or declared == "application/octet-stream"):
        raise HTTPException(415, f"{image.filename}: declared as {declared or 'no content type'}, expected image/*")
    try:
        # Each read stops one byte past its limit (the body limit is the service's, these are the files').
        if isinstance(labels, str):
            labels_text = decode_labels(labels.encode(), "labels")
        else:
            labels_text = decode_labels(labels.file.read(MAX_LABEL_BYTES + 1), labels.filename or "labels")
        added = intake.add_correction(
            store,
            settings,
            image.file.read(MAX_IMAGE_BYTES + 1),
            labels_text,
            image_name=image.filename,
            author=author,
            source_model_version=source_model_version,
            metadata=parse_json(metadata, "form field metadata"),
        )
    except DuplicateCorrection as exc:
        raise HTTPException(409, str(exc)) from exc
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from exc
    except TransientError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
    try:
        pending: int | None = store.pending_count()
    except Exception:  # stored already: a failed count must not answer as if nothing was
        log.warning("could not count the pending corrections after storing %s", added.correction.id, exc_info=True)
        pending = None
    return CorrectionCreated(
        correction=CorrectionOut.model_validate(added.correction),
        pending=pending,
        announcement=added.announcement.problem,
    )


@protected.get(
    "/corrections/stats", summary="Correction counts", description="Corrections per status, and the retrain threshold."
)
def correction_stats(store: StoreDep, settings: SettingsDep) -> Stats:
    return Stats(**store.stats(), threshold=settings.retrain_threshold)


@protected.post(
    "/retrain",
    status_code=202,
    summary="Start a retrain",
    description=(
        "Creates a run of the retrain deployment and returns at once; a served deployment or a worker executes "
        "it. Unknown or mistyped parameters are refused."
    ),
    responses=_responses(404, 415, 422, 503),
    dependencies=[Depends(_require_content_type("application/json"))],
)
async def start_retrain(body: RetrainRequest, settings: SettingsDep) -> RetrainStarted:
    from prefect.client.orchestration import get_client
    from prefect.deployments import arun_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import get_current_settings

    prefect = get_current_settings()
    if not prefect.api.url:  # never start a throwaway ephemeral server that knows no deployment
        raise HTTPException(503, "no Prefect server configured: set PREFECT_API_URL (`yolo-retrain serve` does)")
    parameters = body.model_dump(exclude_none=True)
    try:
        async with get_client() as client:
            flow_run = await arun_deployment(settings.deployment, client=client, parameters=parameters, timeout=0)
    except ObjectNotFound as exc:
        raise HTTPException(
            404,
            f"deployment {settings.deployment!r} not found at {prefect.api.url}: "
            "start `yolo-retrain serve`, or deploy it with `prefect deploy --name yolo-retrain`",
        ) from exc
    except httpx.TransportError as exc:
        raise HTTPException(503, f"Prefect API at {prefect.api.url} unreachable ({exc})") from exc
    return RetrainStarted(
        flow_run_id=flow_run.id,
        flow_run_name=flow_run.name,
        deployment=settings.deployment,
        parameters=parameters,
        ui_url=f"{prefect.ui_url}/runs/flow-run/{flow_run.id}",
    )


@protected.get(
    "/models/champion",
    summary="Current champion",
    description="The registered model version holding the `champion` alias: what production loads.",
    responses=_responses(404, 503),
)
def champion(settings: SettingsDep) -> Champion:
    try:
        client = tracking.client_for(settings)
        found = registry.version_by_alias(client, settings.model_name, "champion")
    except TrackingSetupError as exc:
        raise HTTPException(503, str(exc)) from exc
    if found is None:
        raise HTTPException(404, f"model {settings.model_name!r} has no champion yet (run `yolo-retrain init`)")
    return Champion(
        model_name=settings.model_name,
        version=str(found.version),
        aliases=list(found.aliases),
        metrics={k.removeprefix("post_"): v for k, v in registry.model_metrics(client, found).items() if k.startswith("post_")},
        weights_sha256=found.tags.get("weights_sha256"),
        run_id=found.run_id,
    )


# App and server ------------------------------------------------------------------------------------


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One correction store per app (SQLite WAL and a busy timeout serialise concurrent writers)."""
    app.state.store = CorrectionStore.from_settings(app.state.settings)
    app.state.samples = None  # opened on first use by POST /samples
    try:
        yield
    finally:
        app.state.store.close()
        if app.state.samples is not None:
            app.state.samples.close()


def _token(settings: Settings) -> str | None:
    """The configured API token; an empty one counts as none."""
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    return token or None


def create_app(settings: Settings) -> FastAPI:
    """The intake service configured by ``settings`` (its store opens when the app starts)."""
    configure_environment(settings)  # an entry point: Prefect (threshold events) reads it
    app = FastAPI(
        title="yolo-retrain intake",
        version=package_version("yolo-retrain"),
        description=__doc__,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.include_router(public)
    app.include_router(protected)
    app.include_router(samples_router)  # POST /samples: the review pool (yolo_retrain.selection.api)
    docs = {app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url}
    public_paths = frozenset(path for path in {"/health", *docs} if path)
    app.add_middleware(_Guard, token=_token(settings), max_bytes=settings.max_upload_bytes, public_paths=public_paths)
    return app


def check_bind(settings: Settings) -> None:
    """Refuse to serve without a token anywhere but loopback."""
    if _token(settings) is None and not is_loopback(settings.api_host):
        raise InvalidInput(
            f"refusing to start the intake on {settings.api_host} without YOLO_RETRAIN_API_TOKEN "
            "(set a token, or bind YOLO_RETRAIN_API_HOST to 127.0.0.1)"
        )


def serve_api(settings: Settings) -> None:
    """Run the intake with uvicorn on ``settings.api_host:api_port``, after ``check_bind``."""
    import uvicorn

    check_bind(settings)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)
