"""The ML backend Label Studio talks to (its ML backend protocol), served by ``yolo-retrain labelstudio``.

- ``GET /health``: liveness (no secret);
- ``POST /setup``: Label Studio connecting a project; answers the champion's registry version;
- ``POST /predict``: the champion's boxes for each task, as ``rectanglelabels`` pre-annotations;
- ``POST /webhook``: annotation events -> corrections, a deleted annotation -> its corrections withdrawn (see
  ``events``).

Every call but ``/health`` carries the shared secret: header ``X-Yolo-Retrain-Secret`` (a Label Studio
project webhook's header), or as the password of basic auth (Label Studio's ML backend connection).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput, TransientError
from yolo_retrain.labelstudio.champion import ChampionPredictor, NoChampion
from yolo_retrain.labelstudio.client import LabelStudioClient
from yolo_retrain.labelstudio.convert import box_to_region, result_to_boxes
from yolo_retrain.labelstudio.events import Annotation, PredictedBoxes, correction_from_event
from yolo_retrain.labelstudio.label_config import BoxTag, box_tag
from yolo_retrain.origin import from_a_web_page
from yolo_retrain.store import CorrectionStore

SECRET_HEADER = "X-Yolo-Retrain-Secret"

log = logging.getLogger(__name__)


class Backend:
    """What the endpoints share: the store, the champion, the Label Studio client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = CorrectionStore.from_settings(settings)
        self.predictor = ChampionPredictor(settings, self.store.class_names)
        key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
        self.client = LabelStudioClient(settings.label_studio_url, key)

    def close(self) -> None:
        self.client.close()
        self.store.close()

    def predict(self, tasks: list[dict[str, Any]], label_config: str) -> list[dict[str, Any]]:
        """One prediction per task: the champion's boxes as regions of the project's box tag."""
        tag = box_tag(label_config, "label_config of /predict")
        return [self._predict_task(task, tag) for task in tasks]

    def _predict_task(self, task: dict[str, Any], tag: BoxTag) -> dict[str, Any]:
        where = f"task {task.get('id', '?')}"
        url = (task.get("data") or {}).get(tag.image_key)
        if not isinstance(url, str):
            raise InvalidInput(f"{where}: no image URL under data.{tag.image_key}")
        prediction = self.predictor.predict(self.client.image(url), f"{where} image {url}")
        names = self.store.class_names
        shown = [b for b in prediction.boxes if names[b.box[0]] in tag.labels]  # the project may lack a class
        regions = [box_to_region(b, names, tag.from_name, tag.to_name, prediction.width, prediction.height) for b in shown]
        score = min((b.score for b in shown), default=1.0)  # a task is as sure as its least sure box
        return {"result": regions, "score": score, "model_version": prediction.model_version}

    def find_prediction(self, annotation: Annotation, image: bytes) -> PredictedBoxes:
        """What the reviewer corrected: the prediction the annotation started from in Label Studio (what
        /predict served), else the champion's prediction now."""
        if annotation.parent_prediction is not None:
            try:
                stored = self.client.prediction(annotation.parent_prediction)
                boxes = result_to_boxes(stored.get("result") or [], self.store.class_names, f"prediction {annotation.parent_prediction}")
                return PredictedBoxes(stored.get("model_version"), boxes, f"label-studio prediction {annotation.parent_prediction}")
            except InvalidInput as exc:
                log.warning("%s: cannot use its prediction (%s); diffing against the champion now", annotation.key, exc)
        prediction = self.predictor.predict(image, f"{annotation.key} image {annotation.image_url}")
        return PredictedBoxes(prediction.model_version, [b.box for b in prediction.boxes], "champion on arrival")


def _backend(request: Request) -> Backend:
    return request.app.state.backend


def _require_secret(request: Request) -> None:
    """The shared secret, in its header or as a basic auth password; compared in constant time. A request a web page
    made is refused first: a browser that once logged in with basic auth would send the secret on another site's
    form too. (Label Studio calls the backend server to server, with neither Origin nor Sec-Fetch-Site.)"""
    why = from_a_web_page(request.headers, loopback_only=False)
    if why is not None:
        raise HTTPException(403, f"refused: {why}; the backend serves Label Studio's server, not browsers")
    secret: str = request.app.state.secret
    given = request.headers.get(SECRET_HEADER)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if given is None and scheme.lower() == "basic":
        try:
            given = base64.b64decode(credentials, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = None
    if given is None:
        raise HTTPException(401, f"missing shared secret (header {SECRET_HEADER}, or basic auth password)")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise HTTPException(403, "wrong shared secret")


async def _json(request: Request) -> Any:
    """The JSON body, read up to the configured size limit."""
    limit = request.app.state.max_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"request body of {length} bytes exceeds the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(422, f"request body is not JSON ({exc})") from exc


def create_backend_app(settings: Settings) -> FastAPI:
    """The ML backend app; refuses to be made without a shared secret."""
    secret = settings.label_studio_secret.get_secret_value() if settings.label_studio_secret else ""
    if not secret:
        raise InvalidInput("YOLO_RETRAIN_LABEL_STUDIO_SECRET is not set: the backend stores corrections, it needs a shared secret")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backend = Backend(settings)  # opens (and migrates) the store before anything else runs
        warm_up = threading.Thread(target=app.state.backend.predictor.warm_up, name="champion-warm-up", daemon=True)
        warm_up.start()
        try:
            yield
        finally:
            warm_up.join(60)  # never leave it running past the app (it may be creating MLflow's tables)
            app.state.backend.close()

    app = FastAPI(title="yolo-retrain Label Studio ML backend", description=__doc__, lifespan=lifespan)
    app.state.secret, app.state.max_bytes = secret, settings.max_upload_bytes
    guarded = [Depends(_require_secret)]

    @app.get("/health")
    @app.get("/", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "UP", "model_class": "yolo-retrain champion"}

    @app.post("/setup", dependencies=guarded)
    async def setup(request: Request) -> JSONResponse:
        body = await _json(request)
        backend = _backend(request)
        schema = body.get("schema") if isinstance(body, dict) else None
        try:
            if isinstance(schema, str):
                tag = box_tag(schema, "the project's label config")
                unknown = tag.unknown_labels(backend.store.class_names)
                if unknown:  # the project may label more; those annotations are refused one by one, with the reason
                    log.warning("labels %s are not classes of the model; annotations using them will be refused", unknown)
            version = await run_in_threadpool(backend.predictor.version)
        except InvalidInput as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        except NoChampion as exc:
            return JSONResponse({"detail": str(exc)}, 503)
        return JSONResponse({"model_version": version})

    @app.post("/predict", dependencies=guarded)
    async def predict(request: Request) -> JSONResponse:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list) or not isinstance(body.get("label_config"), str):
            return JSONResponse({"detail": "expected {'tasks': [...], 'label_config': '<View>...'}"}, 422)
        if len(body["tasks"]) > settings.label_studio_max_predict_tasks:  # each is an image to fetch and predict
            return JSONResponse(
                {"detail": f"/predict: {len(body['tasks'])} tasks in one request, over the limit of "
                 f"{settings.label_studio_max_predict_tasks} (YOLO_RETRAIN_LABEL_STUDIO_MAX_PREDICT_TASKS): "
                 "retrieve predictions for fewer tasks at a time"},
                413,
            )
        try:
            results = await run_in_threadpool(_backend(request).predict, body["tasks"], body["label_config"])
        except InvalidInput as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        except (NoChampion, TransientError) as exc:
            return JSONResponse({"detail": str(exc)}, 503, {"Retry-After": "5"})
        return JSONResponse({"results": results})

    @app.post("/webhook", dependencies=guarded)
    async def webhook(request: Request) -> JSONResponse:
        payload = await _json(request)
        backend = _backend(request)
        try:
            result = await run_in_threadpool(
                correction_from_event,
                payload,
                backend.store,
                settings,
                backend.client.image,
                backend.find_prediction,
                settings.label_studio_diff_iou,
            )
        except (NoChampion, TransientError) as exc:
            return JSONResponse({"outcome": "retry", "reason": str(exc)}, 503, {"Retry-After": "5"})
        return JSONResponse(result.to_json(), 422 if result.outcome == "refused" else 200)

    return app


def serve_backend(settings: Settings) -> None:
    """Run the backend with uvicorn on ``label_studio_backend_host:port``."""
    import uvicorn

    uvicorn.run(create_backend_app(settings), host=settings.label_studio_backend_host, port=settings.label_studio_backend_port)
