"""The intake service over HTTP: the real app, a real SQLite store, a real Prefect API and MLflow registry."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import World, use_home
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from yolo_retrain.api import check_bind, create_app
from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput
from yolo_retrain.hashing import file_sha256
from yolo_retrain.registry import model_metrics, version_by_alias
from yolo_retrain.store import CorrectionStore

TOKEN = "s3cret-token"
LIMIT = 4096
BOX = "0 0.5 0.5 0.25 0.25\n"


def png(seed: int) -> bytes:
    """A small 32x32 PNG, different for every seed."""
    image = Image.new("RGB", (32, 32), (seed % 256, 40, 90))
    ImageDraw.Draw(image).rectangle([8, 8, 24, 24], fill=(250, 250, 250))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def form(image: bytes = png(1), labels: bytes = BOX.encode(), image_type: str = "image/png") -> dict:
    """Keyword arguments of a multipart POST of ``image`` as a.png and ``labels`` as a.txt."""
    return {"files": {"image": ("a.png", image, image_type), "labels": ("a.txt", labels, "text/plain")}}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    data_yaml = tmp_path / "base" / "data.yaml"
    data_yaml.parent.mkdir()
    data_yaml.write_text("path: .\ntrain: images\nval: images\nnames: [square, circle]\n")
    return use_home(monkeypatch, tmp_path / "home", base_data=data_yaml, api_token=TOKEN, max_upload_bytes=LIMIT)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def store_of(client: TestClient) -> CorrectionStore:
    return client.app.state.store


def blobs(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.corrections_dir.rglob("*") if p.is_file())


def test_correction_is_stored_and_counted(client: TestClient, settings: Settings) -> None:
    response = client.post("/corrections", **form(), data={"author": "ann", "source_model_version": "3"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["pending"] == 1
    assert body["correction"]["status"] == "pending" and body["correction"]["num_boxes"] == 1
    stored = store_of(client).get(body["correction"]["id"])
    assert stored is not None and (stored.author, stored.source_model_version) == ("ann", "3")
    assert stored.original_name == "a.png" and stored.image_sha256 == body["correction"]["image_sha256"]

    # labels as a text field; an octet-stream image is accepted too
    text_labels = {"image": ("b.png", png(2), "application/octet-stream")}
    response = client.post("/corrections", files=text_labels, data={"labels": "1 0.2 0.2 0.1 0.1\n" + BOX})
    assert response.status_code == 201, response.text
    assert response.json()["pending"] == 2 and response.json()["correction"]["num_boxes"] == 2

    stats = client.get("/corrections/stats").json()
    assert stats == {
        "pending": 2,
        "claimed": 0,
        "accepted": 0,
        "rejected": 0,
        "suspicious": 0,
        "superseded": 0,
        "dropped": 0,
        "withdrawn": 0,
        "applied": 0,
        "total": 2,
        "threshold": settings.retrain_threshold,
    }

    # the image's metadata (#23): a JSON object of strings in the form field; anything else refused, nothing stored
    response = client.post("/corrections", **form(png(5)), data={"metadata": '{"camera": "cam2", "site": "north"}'})
    assert response.status_code == 201 and response.json()["correction"]["metadata"] == {"camera": "cam2", "site": "north"}
    assert store_of(client).get(response.json()["correction"]["id"]).metadata == {"camera": "cam2", "site": "north"}
    response = client.post("/corrections", **form(png(6)), data={"metadata": '{"camera": 2}'})
    assert response.status_code == 422 and "form field metadata: metadata 'camera': the value must be a string" in response.text
    assert store_of(client).stats()["total"] == 3


def _chunked_multipart(client: TestClient) -> httpx.Response:
    """A valid multipart body over the limit, sent without Content-Length."""
    request = httpx.Request("POST", "http://x/corrections", **form(image=png(3) + b"\0" * LIMIT))
    body = request.read()
    return client.post(
        "/corrections",
        content=iter([body[:100], body[100:]]),
        headers={"content-type": request.headers["content-type"]},
    )


REFUSALS: dict[str, tuple[Callable[[TestClient], httpx.Response], int, str]] = {
    "no token": (
        lambda c: c.post("/corrections", **form(), headers={"Authorization": ""}),
        401,
        "missing bearer token",
    ),
    "wrong token": (
        lambda c: c.post("/corrections", **form(), headers={"Authorization": "Bearer nope"}),
        403,
        "invalid",
    ),
    "too large": (lambda c: c.post("/corrections", **form(image=png(3) + b"\0" * LIMIT)), 413, "exceeds the limit"),
    "too large, chunked": (_chunked_multipart, 413, "exceeds the limit"),
    "json body": (lambda c: c.post("/corrections", json={"labels": BOX}), 415, "takes multipart/form-data"),
    "text image": (lambda c: c.post("/corrections", **form(image_type="text/plain")), 415, "expected image/*"),
    "not an image": (lambda c: c.post("/corrections", **form(image=b"GIF89a not really")), 422, "a.png: not an image"),
    "bad label line": (
        lambda c: c.post("/corrections", **form(png(4), b"0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")),
        422,
        "a.png:2: class 7 out of range",
    ),
    "not utf-8 labels": (lambda c: c.post("/corrections", **form(png(4), b"\xff\xfe0")), 422, "a.txt: not UTF-8"),
    "duplicate": (lambda c: c.post("/corrections", **form()), 409, "already stored"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_request_changes_nothing(client: TestClient, settings: Settings, case: str) -> None:
    assert client.post("/corrections", **form()).status_code == 201
    before = (store_of(client).stats(), blobs(settings))
    send, status, message = REFUSALS[case]
    response = send(client)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (store_of(client).stats(), blobs(settings)) == before


def test_uploaded_files_are_read_up_to_their_limit(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file is read one byte past its own limit (below the body limit here), then refused: 422."""
    from yolo_retrain import api, labels

    for module in (api, labels):
        monkeypatch.setattr(module, "MAX_LABEL_BYTES", len(BOX) + 1)
    response = client.post("/corrections", **form(png(6), (BOX * 2).encode()))
    assert response.status_code == 422 and "a.txt: label file too large" in response.json()["detail"]
    for module in (api, labels):
        monkeypatch.setattr(module, "MAX_IMAGE_BYTES", len(png(5)) - 1)
    response = client.post("/corrections", **form(png(5)))
    assert response.status_code == 422 and "image too large" in response.json()["detail"]
    assert store_of(client).stats()["total"] == 0 and blobs(settings) == []


@pytest.mark.parametrize(
    "body",
    [{"epochs": 0}, {"epochs": "5"}, {"imgsz": 16}, {"force": "yes"}, {"trigger": "whenever"}, {"gpus": 2}],
)
def test_retrain_refuses_invalid_parameters(client: TestClient, body: dict) -> None:
    assert client.post("/retrain", json=body).status_code == 422


def test_retrain_needs_json(client: TestClient) -> None:
    response = client.post("/retrain", content=b"{}", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["detail"]


@pytest.mark.e2e
def test_retrain_unknown_deployment_is_404(prefect_server, settings: Settings) -> None:
    settings = settings.model_copy(update={"deployment": "retrain/not-deployed"})
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        response = client.post("/retrain", json={})
    assert response.status_code == 404
    assert (
        "'retrain/not-deployed' not found" in response.json()["detail"]
        and "yolo-retrain serve" in response.json()["detail"]
    )


@pytest.mark.e2e
def test_retrain_starts_a_flow_run_without_waiting(prefect_server, settings: Settings) -> None:
    from prefect.client.orchestration import get_client

    flow_name, deployment_name = "yolo-retrain-api-test", uuid.uuid4().hex
    with get_client(sync_client=True) as prefect:
        deployment_id = prefect.create_deployment(
            flow_id=prefect.create_flow_from_name(flow_name), name=deployment_name
        )
        try:
            app = create_app(settings.model_copy(update={"deployment": f"{flow_name}/{deployment_name}"}))
            with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                response = client.post("/retrain", json={"epochs": 2, "force": True})
            assert response.status_code == 202, response.text
            body = response.json()
            flow_run = prefect.read_flow_run(uuid.UUID(body["flow_run_id"]))
            assert flow_run.deployment_id == deployment_id and flow_run.state.is_scheduled()
            assert flow_run.parameters == {"trigger": "manual", "force": True, "epochs": 2} == body["parameters"]
            assert body["ui_url"].endswith(f"/runs/flow-run/{flow_run.id}") and "/api/" not in body["ui_url"]
        finally:
            prefect.delete_deployment(deployment_id)


def test_champion_is_404_on_an_empty_home(client: TestClient) -> None:
    response = client.get("/models/champion")
    assert response.status_code == 404 and "no champion" in response.json()["detail"]


@pytest.mark.e2e
def test_champion(in_world: World) -> None:
    settings = in_world.settings
    expected = version_by_alias(in_world.client, settings.model_name, "champion")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:  # no token: auth is off on loopback
        response = client.get("/models/champion")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == str(expected.version) and "champion" in body["aliases"]
    assert body["weights_sha256"] == file_sha256(settings.champion_weights) == expected.tags["weights_sha256"]
    recorded = model_metrics(in_world.client, expected)["post_mAP50-95"]  # its logged model's figure
    assert body["run_id"] == expected.run_id and body["metrics"]["mAP50-95"] == recorded


def test_check_bind(settings: Settings) -> None:
    open_settings = settings.model_copy(update={"api_token": None})
    with pytest.raises(InvalidInput, match="refusing to start the intake on 0.0.0.0 without YOLO_RETRAIN_API_TOKEN"):
        check_bind(open_settings.model_copy(update={"api_host": "0.0.0.0"}))
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(open_settings.model_copy(update={"api_host": host}))
    check_bind(settings.model_copy(update={"api_host": "0.0.0.0"}))


def test_health_and_docs_need_no_token(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
        assert client.get("/corrections/stats").status_code == 401
    assert set(schema["paths"]) == {"/health", "/corrections", "/corrections/stats", "/retrain", "/models/champion", "/samples"}
    assert schema["paths"]["/samples"]["post"]["security"]  # the review pool (#22): the same bearer token
    submit = schema["paths"]["/corrections"]["post"]
    assert submit["summary"] and {"201", "401", "403", "409", "413", "415", "422"} <= set(submit["responses"])
    assert submit["security"] and "security" not in schema["paths"]["/health"]["get"]


def test_retrain_is_503_when_prefect_is_unreachable(client: TestClient) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # discard port: nothing listens
        response = client.post("/retrain", json={})
    assert response.status_code == 503 and "unreachable" in response.json()["detail"]


LOOPBACK = "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Origin": "https://evil.example"}, "cross-origin request from https://evil.example"),
        ({"Origin": "null"}, "cross-origin request from null"),  # a sandboxed frame, a file:// page
        ({"Origin": "http://localhost:3000"}, "cross-origin request from http://localhost:3000"),  # another local app
        ({"Host": "evil.example:8000"}, "Host evil.example:8000 is not loopback"),  # DNS rebinding: same-origin to the page
        ({"Sec-Fetch-Site": "cross-site"}, "cross-site request"),
    ],
)
def test_without_a_token_cross_origin_requests_are_refused(settings: Settings, headers: dict, reason: str) -> None:
    """A web page the operator visits can POST a multipart form to loopback (no CORS preflight), or read it
    through DNS rebinding: without a token only requests from loopback's own origin (or none: curl) are taken."""
    open_settings = settings.model_copy(update={"api_token": None})
    with TestClient(create_app(open_settings), base_url=LOOPBACK) as client:
        refused = client.post("/corrections", **form(), headers=headers)
        read = client.get("/corrections/stats", headers=headers)
        assert refused.status_code == 403 and reason in refused.json()["detail"], refused.text
        assert read.status_code == 403 and "YOLO_RETRAIN_API_TOKEN" in read.json()["detail"]
        assert store_of(client).stats()["total"] == 0 and blobs(settings) == []

        same_origin = client.post("/corrections", **form(), headers={"Origin": LOOPBACK})  # the /docs page
        assert same_origin.status_code == 201, same_origin.text
        assert client.post("/corrections", **form(png(2))).status_code == 201  # no Origin: curl, a script
        assert client.get("/corrections/stats").json()["total"] == 2


def test_with_a_token_set_and_sent_origin_does_not_matter(client: TestClient) -> None:
    """A browser cannot send the bearer token cross-origin without a preflight, which the intake never grants."""
    response = client.post("/corrections", **form(), headers={"Origin": "https://tool.example", "Host": "intake.example"})
    assert response.status_code == 201, response.text
