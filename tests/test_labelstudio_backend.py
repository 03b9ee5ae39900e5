"""The ML backend's HTTP surface: the shared secret, the refusals and their reasons (Label Studio itself: test_labelstudio_live)."""

from __future__ import annotations

import base64

import pytest
import yaml
from conftest import use_home
from fastapi.testclient import TestClient

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labelstudio.backend import SECRET_HEADER, create_backend_app

CONFIG = '<View><Image name="img" value="$image"/><RectangleLabels name="label" toName="img"><Label value="cat"/></RectangleLabels></View>'


@pytest.fixture
def settings(monkeypatch, tmp_path):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"names": ["square", "circle"], "train": "x", "val": "x"}))
    return use_home(monkeypatch, tmp_path / "home", base_data=data_yaml, label_studio_secret="s3cret", max_upload_bytes=4096)


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
        basic = base64.b64encode(b"label-studio:s3cret").decode()
        assert client.post("/webhook", json=event, headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_refusals_say_why(settings):
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


def test_a_browser_page_cannot_call_the_backend_even_with_cached_basic_auth(settings):
    """A browser that once logged in with basic auth sends it again, also on a form another site POSTs: a request
    a web page made (Origin of another site, Sec-Fetch-Site cross-site) is refused; Label Studio sends neither."""
    event = {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    basic = {"Authorization": "Basic " + base64.b64encode(b"label-studio:s3cret").decode()}
    with TestClient(create_backend_app(settings)) as client:
        for page in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            refused = client.post("/webhook", json=event, headers={**basic, **page})
            assert refused.status_code == 403 and "web page" in refused.json()["detail"], refused.text
        assert client.post("/webhook", json=event, headers=basic).status_code == 200  # Label Studio, server to server
