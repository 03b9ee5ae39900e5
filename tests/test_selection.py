"""Selection for review (#22), its plain parts: the signals, near-duplicates, the choice (budget, coverage), the pool's
sources, and the sample pool (capture rules, rate and retention limits, never selected twice) through POST /samples."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import use_home
from fastapi.testclient import TestClient
from PIL import Image

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labelstudio.convert import ScoredBox
from yolo_retrain.selection.boxes import parse_boxes
from yolo_retrain.selection.capture import CaptureRules, RateLimits
from yolo_retrain.selection.choose import Candidate, choose
from yolo_retrain.selection.diversity import dhash, hamming
from yolo_retrain.selection.pool import images_from
from yolo_retrain.selection.samples import SampleRateLimited, SampleStore, SelectedImage
from yolo_retrain.selection.scoring import Signals, confusion, disagreement, signals, uncertainty
from yolo_retrain.store import CorrectionStore

NAMES = ["square", "circle"]
TOKEN = "selection-test-token"


def _box(cls: int, conf: float, x: float = 0.5, y: float = 0.5, size: float = 0.2) -> ScoredBox:
    return ScoredBox((cls, x, y, size, size), conf)


def _picture(seed: int, side: int = 48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, size=(side, side, 3), dtype=np.uint8))


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    _picture(seed).save(buffer, format="PNG")
    return buffer.getvalue()


# Signals ------------------------------------------------------------------------------------------


def test_uncertainty_peaks_at_the_threshold_and_is_zero_without_boxes():
    assert uncertainty([_box(0, 0.25)], 0.25) == pytest.approx(1.0)
    assert uncertainty([_box(0, 1.0)], 0.25) == pytest.approx(0.0)
    assert uncertainty([_box(0, 0.95), _box(1, 0.3)], 0.25) == pytest.approx(1 - 0.05 / 0.75)  # the least sure box counts
    assert uncertainty([], 0.25) == 0.0


def test_confusion_needs_two_classes_on_one_object():
    assert confusion([_box(0, 0.4), _box(1, 0.4)]) == pytest.approx(1.0)  # a coin toss between classes
    assert confusion([_box(0, 0.8), _box(1, 0.2)]) == pytest.approx(0.25)
    assert confusion([_box(0, 0.4, x=0.2), _box(1, 0.4, x=0.8)]) == 0.0  # two objects, not one confused
    assert confusion([_box(0, 0.4), _box(0, 0.3)]) == 0.0


def test_disagreement_with_the_production_model():
    same = [_box(0, 0.9)]
    assert disagreement(same, [_box(0, 0.8)], 0.25) == 0.0
    assert disagreement(same, [_box(1, 0.8)], 0.25) == 1.0  # the other class: nothing matches
    assert disagreement(same + [_box(1, 0.9, x=0.1)], [_box(0, 0.8)], 0.25) == pytest.approx(1 - 2 / 3)
    assert disagreement(same, [_box(1, 0.1)], 0.25) == 1.0  # their box under the threshold is no box
    assert signals(same, None, 0.25).disagreement is None  # nothing posted: not counted in the mean
    assert Signals(0.6, 0.0, None).informativeness == pytest.approx(0.3)
    assert Signals(0.6, 0.0, 0.9).informativeness == pytest.approx(0.5)


# Near-duplicates and the choice -------------------------------------------------------------------


def test_dhash_sees_a_resized_copy_as_a_near_duplicate_and_another_scene_as_new():
    scene = Image.new("RGB", (96, 96), (20, 20, 20))
    scene.paste((230, 230, 230), (10, 20, 50, 70))
    other = Image.new("RGB", (96, 96), (20, 20, 20))
    other.paste((230, 230, 230), (50, 5, 90, 40))
    assert hamming(dhash(scene), dhash(scene.resize((64, 64)))) <= 4
    assert hamming(dhash(scene), dhash(other)) > 12


def _candidate(name: str, info: float, classes: tuple[int, ...], hash_: int) -> Candidate:
    return Candidate(name, Path(name), "folder", name * 8, 48, 48, hash_, [], Signals(info, 0.0), classes)


def test_choice_keeps_the_budget_skips_near_duplicates_and_covers_a_rare_class():
    far = [0x0, 0xFFFF_FFFF, 0xFFFF_0000_FFFF_0000, 0x00FF_00FF_00FF_00FF, 0xF0F0_F0F0_F0F0_F0F0]
    pool = [
        _candidate("a", 0.90, (0,), far[0]),
        _candidate("a-copy", 0.89, (0,), far[0] ^ 0b11),  # 2 bits from "a"
        _candidate("b", 0.80, (0,), far[1]),
        _candidate("c", 0.75, (0,), far[2]),
        _candidate("rare", 0.60, (1,), far[3]),
        _candidate("d", 0.70, (0,), far[4]),
    ]
    plain = choose(pool, 3, NAMES, max_bits=6, coverage_weight=0.0)
    assert [p.candidate.name for p in plain.picks] == ["a", "b", "c"]
    assert plain.near_duplicates == [("a-copy", "a")]
    covered = choose(pool, 3, NAMES, max_bits=6, coverage_weight=0.3)
    assert [p.candidate.name for p in covered.picks] == ["a", "rare", "b"]  # 0.60 + 0.3 beats 0.80 + 0.15
    assert "circle" in covered.picks[1].why and "class coverage" in covered.picks[1].why
    assert len(choose(pool, 10, NAMES).picks) == 5  # fewer than the budget: all but the duplicate


# Sources ------------------------------------------------------------------------------------------


def test_pool_from_a_folder_a_glob_and_a_list_once_each(tmp_path):
    (tmp_path / "cams" / "a").mkdir(parents=True)
    for name in ("cams/a/1.png", "cams/2.png", "cams/3.jpg"):
        _picture(0).save(tmp_path / name)
    (tmp_path / "cams" / "notes.md").write_text("not an image")
    listed = tmp_path / "list.txt"
    listed.write_text("# production images\ncams/2.png\n\n")
    found = images_from([str(tmp_path / "cams"), str(tmp_path / "cams" / "*.png"), str(listed)])
    assert sorted(p.path.name for p in found) == ["1.png", "2.png", "3.jpg"]
    with pytest.raises(InvalidInput, match="no such file or folder"):
        images_from([str(tmp_path / "missing")])
    with pytest.raises(InvalidInput, match="matches no image"):
        images_from([str(tmp_path / "*.gif")])
    listed.write_text("cams/2.png\ncams/gone.png\n")
    with pytest.raises(InvalidInput, match=r"list.txt:2: cams/gone.png: no such file"):
        images_from([str(listed)])


def test_production_boxes_are_read_by_class_name():
    (box,) = parse_boxes('[{"class": "circle", "confidence": 0.4, "box": [0.5, 0.5, 0.2, 0.3]}]', NAMES, "boxes")
    assert box.box == (1, 0.5, 0.5, 0.2, 0.3) and box.score == 0.4
    with pytest.raises(InvalidInput, match=r"boxes\[0\]: class 'cat' is not one of the project's classes"):
        parse_boxes('[{"class": "cat", "box": [0.5, 0.5, 0.2, 0.2]}]', NAMES, "boxes")
    with pytest.raises(InvalidInput, match="not normalised"):
        parse_boxes('[{"class": "square", "box": [0.5, 0.5, 2, 0.2]}]', NAMES, "boxes")


def test_capture_rules_band_and_classes():
    rules = CaptureRules(0.3, 0.6, frozenset({1}), tuple(NAMES))
    assert rules.refusal([_box(1, 0.45)]) is None
    assert "confidence in [0.3, 0.6] of class circle" in rules.refusal([_box(1, 0.9), _box(0, 0.45)])
    assert "no production boxes" in rules.refusal(None)
    assert CaptureRules().refusal(None) is None  # no rules: everything is kept
    assert RateLimits(per_minute=2).exceeded(2, 2)[1] == 60 and RateLimits(per_minute=2).exceeded(1, 50) is None


# The sample pool through POST /samples ---------------------------------------------------------------


@pytest.fixture
def settings(monkeypatch, tmp_path):
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"names": NAMES, "train": "x", "val": "x"}))
    return use_home(monkeypatch, tmp_path / "home", base_data=data_yaml, api_token=TOKEN, samples_min_confidence=0.2,
                    samples_max_confidence=0.6, samples_per_minute=3)


def _post(client: TestClient, seed: int, boxes: list | None = None, **form: str):
    data = dict(form, **({"boxes": json.dumps(boxes)} if boxes is not None else {}))
    return client.post("/samples", files={"image": (f"{seed}.png", _png(seed), "image/png")}, data=data)


def test_samples_are_captured_by_the_rules_rate_limited_and_stored_once(settings):
    from yolo_retrain.api import create_app

    uncertain = [{"class": "circle", "confidence": 0.4, "box": [0.5, 0.5, 0.2, 0.2]}]
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.post("/samples", files={"image": ("x.png", _png(0), "image/png")}, headers={"Authorization": "Bearer no"}).status_code == 403
        sure = _post(client, 1, [{"class": "circle", "confidence": 0.95, "box": [0.5, 0.5, 0.2, 0.2]}])
        assert sure.status_code == 200 and sure.json()["captured"] is False and "confidence in [0.2, 0.6]" in sure.json()["reason"]
        first = _post(client, 2, uncertain, meta='{"camera": "dock-3"}', model_version="prod-7")
        assert first.status_code == 201, first.text
        again = _post(client, 2, uncertain)
        assert again.status_code == 200 and again.json()["new"] is False and again.json()["sample"]["id"] == first.json()["sample"]["id"]
        bad = _post(client, 3, [{"class": "cat", "confidence": 0.4, "box": [0.5, 0.5, 0.2, 0.2]}])
        assert bad.status_code == 422 and "'cat'" in bad.json()["detail"]
        assert _post(client, 4, uncertain, meta="[1]").status_code == 422
        assert _post(client, 5, uncertain).status_code == 201
        assert _post(client, 6, uncertain).status_code == 201
        limited = _post(client, 7, uncertain)  # a 4th within the minute
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "60" and "SAMPLES_PER_MINUTE=3" in limited.json()["detail"]
    with SampleStore.from_settings(settings) as store:
        waiting = list(store.waiting())
        assert [s.original_name for s in waiting] == ["2.png", "5.png", "6.png"]  # refused ones stored nothing
        assert waiting[0].meta == {"camera": "dock-3"} and waiting[0].production_model_version == "prod-7"
        assert waiting[0].production_boxes == [ScoredBox((1, 0.5, 0.5, 0.2, 0.2), 0.4)]
        assert all(s.image_path.is_file() for s in waiting)


def test_retention_drops_the_oldest_waiting_samples_and_their_images_never_selected_ones(settings):
    now = datetime.now(timezone.utc)
    with SampleStore.from_settings(settings) as store:
        posted = [store.post(_png(i), image_name=f"{i}.png", now=now - timedelta(days=10 - i)).sample for i in range(5)]
        store.record_selection("sel-1", [_selected(posted[0])], now=now)  # the oldest, but selected: kept as the record
        dropped = store.retire(max_kept=2, max_age_days=9, now=now)  # 1.png is older than 9 days; 2.png beyond 2 kept
        assert sorted(dropped) == sorted([posted[1].id, posted[2].id])
        assert not posted[1].image_path.exists() and posted[3].image_path.exists()
        assert [s.original_name for s in store.waiting()] == ["3.png", "4.png"]
        assert [s.original_name for s in store.list(status="selected")] == ["0.png"]


def _selected(sample) -> SelectedImage:
    return SelectedImage(sample.image_sha256, sample.image_path, sample.original_name, sample.source, 48, 48, 0.5, {"why": "test"}, sample.id)


def test_an_image_selected_or_corrected_is_never_selectable_again(settings):
    with SampleStore.from_settings(settings) as store:
        a, b = (store.post(_png(i), image_name=f"{i}.png").sample for i in (10, 11))
        store.record_selection("sel-1", [_selected(a)])
        assert store.not_selectable([a.image_sha256, b.image_sha256]) == {a.image_sha256}
        with pytest.raises(InvalidInput, match="selected or corrected meanwhile"):
            store.record_selection("sel-2", [_selected(a), _selected(b)])  # all or nothing
        assert [s.id for s in store.waiting()] == [b.id]
        with CorrectionStore.from_settings(settings) as corrections:
            corrections.add(_png(11), "1 0.5 0.5 0.2 0.2\n", image_name="11.png")  # a reviewer corrected b elsewhere
        assert store.not_selectable([b.image_sha256]) == {b.image_sha256}
        folder = SelectedImage("f" * 64, Path("/data/x.png"), "x.png", "folder", 48, 48, 0.4, {})
        store.record_selection("sel-3", [folder])
        with pytest.raises(InvalidInput):
            store.record_selection("sel-4", [folder])
        store.release("sel-3", [folder.sha256])  # never reached reviewers: selectable again
        assert store.not_selectable([folder.sha256]) == set()


def test_select_refuses_a_missing_source_naming_it_last(settings, tmp_path):
    from typer.testing import CliRunner

    from yolo_retrain.cli import app

    result = CliRunner().invoke(app, ["select", str(tmp_path / "nowhere"), "--budget", "5"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"error: {tmp_path / 'nowhere'}: no such file or folder"


def test_picks_that_never_reach_label_studio_go_back_to_the_pool(settings, tmp_path, monkeypatch):
    from yolo_retrain.labelstudio.client import LabelStudioUnavailable
    from yolo_retrain.selection import run
    from yolo_retrain.selection.score_pool import ScoredPool

    settings = settings.model_copy(update={"label_studio_url": "http://127.0.0.1:9"})  # nothing listens there
    with SampleStore.from_settings(settings) as store:
        posted = store.post(_png(20), image_name="posted.png").sample
    folder_image = tmp_path / "cam.png"
    _picture(21).save(folder_image)
    from yolo_retrain.hashing import file_sha256

    candidates = [
        Candidate("posted.png", posted.image_path, "intake", posted.image_sha256, 48, 48, 0, [], Signals(0.9, 0.0), (1,), posted.id),
        Candidate("cam.png", folder_image, "folder", file_sha256(folder_image), 48, 48, 2**64 - 1, [], Signals(0.8, 0.0), (0,)),
    ]
    choice = choose(candidates, 2, NAMES)
    selection = run.new_selection(settings, run.Champion("3", tmp_path / "w.pt"), 2, [str(tmp_path)], ScoredPool(), choice, NAMES)
    run.record(settings, selection)
    with SampleStore.from_settings(settings) as store:
        assert store.not_selectable(c.sha256 for c in candidates) == {c.sha256 for c in candidates}
    with pytest.raises(LabelStudioUnavailable):
        run.send(settings, selection, project=1)
    assert [name for name, _ in selection.not_sent] == ["posted.png", "cam.png"] and not selection.tasks
    with SampleStore.from_settings(settings) as store:
        assert store.not_selectable(c.sha256 for c in candidates) == set()  # both selectable again
        assert [s.id for s in store.waiting()] == [posted.id]
