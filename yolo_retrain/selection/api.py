"""``POST /samples`` on the intake: the team's inference service posts production images (and, optionally, its
model's boxes and metadata) into the review pool. Same auth, origin and body-size guard as every intake route
(``yolo_retrain.api``); capture rules, rate limits and retention from the settings (``YOLO_RETRAIN_SAMPLES_*``)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Security, UploadFile
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput, TransientError
from yolo_retrain.labels import MAX_IMAGE_BYTES
from yolo_retrain.selection.capture import CaptureRules, RateLimits
from yolo_retrain.selection.samples import SampleRateLimited, SampleStore

log = logging.getLogger(__name__)

MAX_FIELD_BYTES = 1024 * 1024  # the boxes JSON: 1000 boxes take ~100 kB


class SampleOut(BaseModel):
    id: str
    image_sha256: str
    status: str = Field(description="waiting until a selection picks it; selected once sent to reviewers.")
    created_at: datetime
    production_boxes: int = Field(description="Boxes of the production model posted with it.")


class SamplePosted(BaseModel):
    captured: bool = Field(description="False when the capture rules do not keep it (nothing stored; `reason` says why).")
    new: bool = Field(default=False, description="False when the same image was already in the pool (stored once).")
    sample: SampleOut | None = None
    reason: str | None = None
    dropped_by_retention: int = Field(default=0, description="Oldest unselected samples dropped by the retention limits.")


def _samples(request: Request) -> SampleStore:
    """The app's sample store, opened on first use (the correction store opened the database already)."""
    state = request.app.state
    if getattr(state, "samples", None) is None:
        state.samples = SampleStore.from_settings(state.settings)
    return state.samples


router = APIRouter(dependencies=[Security(HTTPBearer(auto_error=False, description="YOLO_RETRAIN_API_TOKEN"))])


@router.post(
    "/samples",
    summary="Post a production image to the review pool",
    description=(
        "multipart/form-data: `image` (JPEG, PNG, BMP, WebP or TIFF, checked by decoding it); optionally `boxes`, the "
        "production model's boxes as JSON `[{\"class\": \"circle\", \"confidence\": 0.41, \"box\": [cx, cy, w, h]}]` "
        "(normalised; classes by name), `model_version` and `meta` (a JSON object: camera, site ...). 201 stored; "
        "200 not captured by the capture rules or already in the pool; 422 invalid (nothing stored); 429 a rate limit."
    ),
    status_code=201,
    responses={200: {"model": SamplePosted, "description": "Not captured, or already in the pool."},
               413: {"description": "Body too large."}, 422: {"description": "Invalid input."},
               429: {"description": "Rate limit reached (Retry-After)."}, 503: {"description": "Database busy: retry."}},
)
async def post_sample(
    request: Request,
    image: Annotated[UploadFile, File(description="The image.")],
    boxes: Annotated[str | None, Form(description="The production model's boxes (JSON, classes by name).")] = None,
    model_version: Annotated[str | None, Form(description="The production model's version.")] = None,
    meta: Annotated[str | None, Form(description="Metadata, a JSON object (camera, site ...).")] = None,
) -> Any:
    from starlette.responses import JSONResponse

    settings: Settings = request.app.state.settings
    if (request.headers.get("content-type") or "").partition(";")[0].strip().lower() != "multipart/form-data":
        raise HTTPException(415, "/samples takes multipart/form-data")
    if boxes is not None and len(boxes.encode()) > MAX_FIELD_BYTES:
        raise HTTPException(422, f"boxes: larger than {MAX_FIELD_BYTES} bytes")
    store = _samples(request)
    try:
        rules = CaptureRules.from_settings(settings, store.class_names)
        data = image.file.read(MAX_IMAGE_BYTES + 1)
        posted = await run_in_threadpool(
            store.post, data, image_name=image.filename, boxes=boxes, model_version=model_version, meta=meta, rules=rules,
            limits=RateLimits.from_settings(settings), max_kept=settings.samples_max_kept,
            max_age_days=settings.samples_max_age_days, max_meta_bytes=settings.samples_max_meta_bytes,
        )
    except SampleRateLimited as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from exc
    except TransientError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
    if posted.sample is None:
        return JSONResponse(SamplePosted(captured=False, reason=posted.skipped).model_dump(mode="json"), 200)
    s = posted.sample
    body = SamplePosted(
        captured=True, new=posted.new, dropped_by_retention=posted.dropped_by_retention,
        sample=SampleOut(id=s.id, image_sha256=s.image_sha256, status=s.status, created_at=s.created_at,
                         production_boxes=len(s.production_boxes or [])),
        reason=None if posted.new else "this image is already in the pool",
    )
    return JSONResponse(body.model_dump(mode="json"), 201 if posted.new else 200)
