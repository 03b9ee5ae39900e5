"""Everyone told (#23 item 3): a retrain's outcome is a Prefect event; `yolo-retrain notify` wires an automation on
a real Prefect server whose Custom Webhook notification reaches a local HTTP receiver when a retrain is rejected."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import TINY, use_home
from typer.testing import CliRunner

from flows.retrain import retrain
from yolo_retrain import registry, tracking
from yolo_retrain.cli import app
from yolo_retrain.store import CorrectionStore

pytestmark = pytest.mark.e2e

NO_CLASS_MAY_DROP = {"gate_margin": 1.0, "gate_max_class_drop": 0.0}  # a tiny model's class interval reaches 0: rejected


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP endpoint that keeps every JSON body POSTed to it."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def _wait_for(received: list[dict], text: str, seconds: float = 90) -> dict:
    """The first message containing ``text``, polled until a deadline (the server's trigger and action services
    run asynchronously)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [m for m in received if text in m.get("text", "")]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no notification containing {text!r} within {seconds} s; received: {received}")


def test_notify_refuses_what_it_cannot_wire(prefect_server):
    runner = CliRunner()
    for args, said in (
        (["notify"], "give either --webhook URL or --block TYPE/NAME"),
        (["notify", "--webhook", "ftp://example.org/x"], "--webhook 'ftp://example.org/x': not an http(s) URL"),
        (["notify", "--block", "custom-webhook/no-such-block"], "--block 'custom-webhook/no-such-block': no such block"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith(f"error: {said}"), result.output


def test_a_rejected_retrain_reaches_the_webhook(world, world_copy, receiver, monkeypatch):
    url, received = receiver
    settings = use_home(
        monkeypatch, world_copy.home, **TINY, **NO_CLASS_MAY_DROP, artifact_location=world_copy.artifact_location, approval="required"
    )
    wired = CliRunner().invoke(app, ["notify", "--webhook", url])
    assert wired.exit_code == 0 and "automation 'yolo-retrain-notify'" in wired.output, wired.output
    assert CliRunner().invoke(app, ["notify", "--webhook", url]).output.count("replaced") == 1  # still one automation
    client = tracking.client_for(settings)
    champion = registry.version_by_alias(client, settings.model_name, "champion").version
    image = sorted((settings.base_data.parent / "images" / "train").glob("*.png"))[0]
    with CorrectionStore.from_settings(settings) as store:
        store.add(image, settings.base_data.parent / "labels" / "train" / f"{image.stem}.txt")

    report = retrain(trigger="manual")

    assert report.outcome == "rejected"  # approval required changes nothing for a candidate the gate refuses
    assert registry.version_by_alias(client, settings.model_name, "champion").version == champion
    assert registry.version_by_alias(client, settings.model_name, "awaiting-approval") is None
    message = _wait_for(received, "yolo-retrain.retrain.rejected")
    assert f"registered version {report.version}" in message["text"] and report.message in message["text"]
