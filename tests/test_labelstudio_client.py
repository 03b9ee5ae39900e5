"""What the backend fetches from Label Studio and what it decodes: a real HTTP server on loopback stands where
Label Studio runs and records every request, so a test sees whether one was sent (Label Studio itself:
test_labelstudio_live)."""

from __future__ import annotations

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


CONFIG = (
    '<View><Image name="img" value="$image"/><RectangleLabels name="label" toName="img">'
    '<Label value="square"/><Label value="circle"/></RectangleLabels></View>'
)


@pytest.fixture
def backend(monkeypatch, tmp_path, host: FakeHost) -> Iterator[TestClient]:
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"names": ["square", "circle"], "train": "x", "val": "x"}))
    settings = use_home(
        monkeypatch, tmp_path / "home", base_data=data_yaml, label_studio_secret="s3cret", label_studio_url=host.url,
        label_studio_api_key="legacy-key", label_studio_max_predict_tasks=2,
    )
    with TestClient(create_backend_app(settings), headers={SECRET_HEADER: "s3cret"}) as client:
        yield client


def _predict(client: TestClient, *images: str):
    tasks = [{"id": i, "data": {"image": image}} for i, image in enumerate(images, start=1)]
    return client.post("/predict", json={"tasks": tasks, "label_config": CONFIG})


def test_task_images_are_checked_before_they_are_decoded_and_predict_takes_few_tasks(backend: TestClient, host: FakeHost) -> None:
    gif = _predict(backend, "/data/upload/1/a.gif")
    assert gif.status_code == 422, gif.text
    assert "/data/upload/1/a.gif: not an image, or not one of the accepted formats" in gif.json()["detail"]

    bomb = _predict(backend, "/data/upload/1/bomb.png")
    assert bomb.status_code == 422, bomb.text
    assert "/data/upload/1/bomb.png: image too large (25000x100, limit 20000 px a side)" in bomb.json()["detail"]

    host.requests.clear()
    many = _predict(backend, "/data/upload/1/a.png", "/data/upload/1/a.png", "/data/upload/1/a.png")
    assert many.status_code == 413, many.text
    assert "3 tasks" in many.json()["detail"] and "YOLO_RETRAIN_LABEL_STUDIO_MAX_PREDICT_TASKS" in many.json()["detail"]
    assert host.requests == []  # refused before any image was fetched
