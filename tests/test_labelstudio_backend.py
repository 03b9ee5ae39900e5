"""The ML backend's HTTP surface: the shared secret, the refusals and their reasons, what it fetches and decodes.

A real HTTP server on loopback stands where Label Studio runs and records every request, so a test sees whether
one was sent (Label Studio itself: test_labelstudio_live)."""

from __future__ import annotations

import base64
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from conftest import use_home
from fastapi.testclient import TestClient
from PIL import Image

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labelstudio.backend import SECRET_HEADER, create_backend_app
from yolo_retrain.labelstudio.client import LabelStudioClient

CONFIG = '<View><Image name="img" value="$image"/><RectangleLabels name="label" toName="img"><Label value="cat"/></RectangleLabels></View>'


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (40, 200, 40)).save(buf, "GIF")  # PIL decodes it; not a format we accept
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels (a decompression bomb's), with hardly any data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


FILES = {"/data/upload/1/a.png": _png(), "/data/upload/1/a.gif": _gif(), "/data/upload/1/bomb.png": _png_claiming(25_000, 100)}


@dataclass
class FakeHost:
    """Where Label Studio would run: serves FILES, answers anything else with what an API would (JSON), records all."""

    url: str
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path with query, Authorization)


@pytest.fixture
def host() -> Iterator[FakeHost]:
    recorded: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            recorded.append((self.path, self.headers.get("Authorization")))
            path = self.path.partition("?")[0]
            body = FILES.get(path) or FILES["/data/upload/1/a.png"] if path.startswith("/data/") else b'{"token": "x"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield FakeHost(f"http://127.0.0.1:{server.server_port}", recorded)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings(monkeypatch, tmp_path, host: FakeHost):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"names": ["square", "circle"], "train": "x", "val": "x"}))
    return use_home(
        monkeypatch, tmp_path / "home", base_data=data_yaml, label_studio_secret="s3cret", max_upload_bytes=4096,
        label_studio_url=host.url, label_studio_api_key="legacy-key", label_studio_max_predict_tasks=2,
    )


def test_only_label_studio_file_urls_are_fetched_with_the_key(host: FakeHost) -> None:
    client = LabelStudioClient(host.url, "legacy-key")
    refused = [
        "/api/users/",  # Label Studio's API, with our key: never
        "/api/projects/1/export?exportType=JSON",
        "api/current-user/whoami",
        f"{host.url}/api/users/",
        "/data/../api/users/",
        "/data/%2e%2e/api/users/",
        "/data/upload/..%2F..%2Fapi/users/",
        "/data\\..\\api/users/",
        "/tasks/1/presign/?fileuri=czM6Ly9iL2EucG5n",  # cloud storage: not supported, said so
        "//elsewhere.example/data/upload/1/a.png",
    ]
    try:
        for url in refused:
            with pytest.raises(InvalidInput) as err:
                client.image(url)
            assert repr(url) in str(err.value) or url in str(err.value)
        assert host.requests == []  # refused before anything was sent

        assert client.image("/data/upload/1/a.png") == FILES["/data/upload/1/a.png"]
        assert client.image(f"{host.url}/data/local-files/?d=photos/a.png") == FILES["/data/upload/1/a.png"]
        assert host.requests == [
            ("/data/upload/1/a.png", "Token legacy-key"),
            ("/data/local-files/?d=photos/a.png", "Token legacy-key"),
        ]
        with pytest.raises(InvalidInput, match="/data/upload/1/a.gif: not an image, or not one of the accepted formats"):
            client.image("/data/upload/1/a.gif")  # a file of Label Studio's, but its first bytes are no image of ours
    finally:
        client.close()




def test_the_backend_needs_a_shared_secret_to_start(settings):
    with pytest.raises(InvalidInput, match="YOLO_RETRAIN_LABEL_STUDIO_SECRET"):
        create_backend_app(settings.model_copy(update={"label_studio_secret": None}))


def test_every_call_but_health_needs_the_secret_in_its_header_or_as_basic_auth(settings):
    event = {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    with TestClient(create_backend_app(settings)) as client:
        assert client.get("/health").json()["status"] == "UP"
        assert client.post("/webhook", json=event).status_code == 401
        assert client.post("/webhook", json=event, headers={SECRET_HEADER: "nope"}).status_code == 403
        assert client.post("/predict", json={}, headers={SECRET_HEADER: "nope"}).status_code == 403
        ok = client.post("/webhook", json=event, headers={SECRET_HEADER: "s3cret"})
        assert ok.status_code == 200 and ok.json()["outcome"] == "ignored"
        basic = {"Authorization": "Basic " + base64.b64encode(b"label-studio:s3cret").decode()}
        assert client.post("/webhook", json=event, headers=basic).status_code == 200  # Label Studio: server to server

        # A browser that once logged in with basic auth sends it again, also on a form another site POSTs: a
        # request a web page made (Origin of another site, Sec-Fetch-Site cross-site) is refused.
        for page in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            refused = client.post("/webhook", json=event, headers={**basic, **page})
            assert refused.status_code == 403 and "web page" in refused.json()["detail"], refused.text


def test_refusals_say_why(settings, host):
    headers = {SECRET_HEADER: "s3cret"}
    cat = {"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["cat"]}}
    event = {"action": "ANNOTATION_CREATED", "project": {"id": 2, "label_config": CONFIG},
             "task": {"id": 3, "data": {"image": "/data/upload/2/a.png"}}, "annotation": {"id": 4, "result": [cat]}}
    with TestClient(create_backend_app(settings)) as client:
        refused = client.post("/webhook", json=event, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["outcome"] == "refused"
        assert "project 2 task 3 annotation 4 result[0]: label 'cat' is not one of the model's classes" in refused.json()["reason"]
        assert client.post("/webhook", content=b"{", headers={**headers, "Content-Type": "application/json"}).status_code == 422
        assert client.post("/webhook", content=b"x" * 5000, headers=headers).status_code == 413
        no_champion = client.post("/setup", json={"project": "2.1", "schema": CONFIG}, headers=headers)
        assert no_champion.status_code == 503 and "has no champion yet" in no_champion.json()["detail"]
        bad = client.post("/predict", json={"tasks": [{"id": 1, "data": {}}], "label_config": "<View/>"}, headers=headers)
        assert bad.status_code == 422 and "no <RectangleLabels>" in bad.json()["detail"]

        # Task images are checked before they are decoded: format by their first bytes, size from the header.
        gif = _predict(client, headers, "/data/upload/1/a.gif")
        assert gif.status_code == 422, gif.text
        assert "/data/upload/1/a.gif: not an image, or not one of the accepted formats" in gif.json()["detail"]
        bomb = _predict(client, headers, "/data/upload/1/bomb.png")
        assert bomb.status_code == 422, bomb.text
        assert "/data/upload/1/bomb.png: image too large (25000x100, limit 20000 px a side)" in bomb.json()["detail"]
        host.requests.clear()
        many = _predict(client, headers, *["/data/upload/1/a.png"] * 3)  # the limit is 2 here
        assert many.status_code == 413, many.text
        assert "3 tasks" in many.json()["detail"] and "YOLO_RETRAIN_LABEL_STUDIO_MAX_PREDICT_TASKS" in many.json()["detail"]
        assert host.requests == []  # refused before any image was fetched


PREDICT_CONFIG = (
    '<View><Image name="img" value="$image"/><RectangleLabels name="label" toName="img">'
    '<Label value="square"/><Label value="circle"/></RectangleLabels></View>'
)


def _predict(client: TestClient, headers: dict, *images: str):
    tasks = [{"id": i, "data": {"image": image}} for i, image in enumerate(images, start=1)]
    return client.post("/predict", json={"tasks": tasks, "label_config": PREDICT_CONFIG}, headers=headers)


@pytest.mark.e2e
def test_predictions_follow_the_champion_alias(in_world):
    """After a promotion (or a rollback) the pre-annotations come from the new champion, without a restart."""
    from yolo_retrain import registry
    from yolo_retrain.labelstudio.champion import ChampionPredictor

    client, name = in_world.client, in_world.settings.model_name
    image = next((in_world.data.corrections_dir / "images").iterdir()).read_bytes()
    current = str(registry.version_by_alias(client, name, "champion").version)
    other = next(str(v.version) for v in client.search_model_versions(f"name = '{name}'") if str(v.version) != current)
    predictor = ChampionPredictor(in_world.settings, ["square", "circle"])
    assert predictor.predict(image).model_version == current
    client.set_registered_model_alias(name, "champion", other)
    try:
        assert predictor.predict(image).model_version == other
    finally:
        client.set_registered_model_alias(name, "champion", current)
    assert predictor.predict(image).model_version == current

