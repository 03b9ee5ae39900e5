"""Issue #19 as plain functions (no training): the paired bootstrap against Ultralytics' own AP, the gate's
non-inferiority decision, the screening rule and the forgetting check on constructed predictions of real shapes,
and the store's `suspicious` status with a person's review through the CLI."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from test_store import add_at
from typer.testing import CliRunner
from ultralytics.utils.metrics import ap_per_class

from yolo_retrain.bootstrap import mean_ap, paired_bootstrap
from yolo_retrain.box_evidence import class_confidences, labels_from_text
from yolo_retrain.cli import corrections as cli
from yolo_retrain.config import get_settings
from yolo_retrain.forgetting import forgetting_reason, retention, stable_sample
from yolo_retrain.gate import GateDecision, decide
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.per_image import ImageResults
from yolo_retrain.screening import ScreeningResult, ScreeningRule, holdout_view, relabelled_classes, screen
from yolo_retrain.store import CorrectionStore

NAMES = ["square", "circle"]
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def holdout(seed: int, images: int = 60, skill: float = 0.7) -> ImageResults:
    """Per-image results as the validator makes them: 1-3 labels an image, a prediction per label (right at IoU
    thresholds up to a random one, with probability ``skill``) plus a false positive now and then."""
    rng = np.random.default_rng(seed)
    tp, conf, pred_cls, pred_image, target_cls, target_image = [], [], [], [], [], []
    for i in range(images):
        for _ in range(int(rng.integers(1, 4))):
            cls = int(rng.integers(0, 2))
            target_cls.append(cls)
            target_image.append(i)
            right = rng.random() < skill
            reach = int(rng.integers(1, 11)) if right else 0  # right at the first `reach` IoU thresholds
            tp.append(np.arange(10) < reach)
            conf.append(rng.uniform(0.5, 1.0) if right else rng.uniform(0.05, 0.7))
            pred_cls.append(cls if right or rng.random() < 0.5 else 1 - cls)
            pred_image.append(i)
        if rng.random() < 0.3:
            tp.append(np.zeros(10, bool)), conf.append(rng.uniform(0.05, 0.6)), pred_cls.append(int(rng.integers(0, 2)))
            pred_image.append(i)
    return ImageResults(
        tuple(f"img{i:03d}.png" for i in range(images)),
        np.array(tp), np.array(conf), np.array(pred_cls), np.array(pred_image), np.array(target_cls), np.array(target_image),
    )


def test_the_bootstraps_ap_is_ultralytics_ap():
    results = holdout(1)
    ours, per_class = mean_ap(results, dict(enumerate(NAMES)))
    ap = ap_per_class(results.tp, results.conf, results.pred_cls, results.target_cls)[5]  # (classes, 10)
    assert ours == pytest.approx(float(ap.mean()), abs=1e-9)
    assert per_class == pytest.approx({NAMES[c]: float(ap[c].mean()) for c in range(2)}, abs=1e-9)


def test_the_same_model_twice_is_within_noise_with_a_zero_interval():
    results = holdout(2)
    comparison = paired_bootstrap(results, results, dict(enumerate(NAMES)), resamples=200)
    assert (comparison.map50_95.delta, comparison.map50_95.low, comparison.map50_95.high) == (0.0, 0.0, 0.0)
    assert comparison.map50_95.verdict == "within noise" and comparison.images == 60


def test_a_clearly_better_model_is_better_and_a_reordered_holdout_pairs_the_same_images():
    weak, strong = holdout(3, skill=0.3), holdout(3, skill=0.9)
    reordered = ImageResults(tuple(reversed(strong.images)), strong.tp, strong.conf, strong.pred_cls,
                             len(strong.images) - 1 - strong.pred_image, strong.target_cls, len(strong.images) - 1 - strong.target_image)
    a = paired_bootstrap(weak, strong, dict(enumerate(NAMES)), resamples=200)
    b = paired_bootstrap(weak, reordered.aligned_to(strong.images), dict(enumerate(NAMES)), resamples=200)
    assert a.map50_95.low > 0 and a.map50_95.verdict == "better"
    assert a.map50_95.delta == pytest.approx(mean_ap(strong, {0: "s", 1: "c"})[0] - mean_ap(weak, {0: "s", 1: "c"})[0])
    assert b.map50_95.delta == pytest.approx(a.map50_95.delta)


def test_two_models_of_equal_skill_on_a_small_holdout_are_within_noise():
    comparison = paired_bootstrap(holdout(4, images=20), holdout(5, images=20), dict(enumerate(NAMES)), resamples=300)
    assert comparison.map50_95.low < 0 < comparison.map50_95.high and comparison.map50_95.verdict == "within noise"


def metrics(value: float) -> EvalMetrics:
    return EvalMetrics(map50=value, map50_95=value, precision=0.5, recall=0.5, per_class_ap={"square": value, "circle": value})


def test_the_gate_is_a_non_inferiority_decision_on_the_interval():
    names = dict(enumerate(NAMES))
    same = paired_bootstrap(holdout(6, images=20), holdout(7, images=20), names, resamples=300)
    better = paired_bootstrap(holdout(8, skill=0.3), holdout(8, skill=0.9), names, resamples=200)
    # A point comparison would reject a candidate 0.001 below; the interval says the holdout cannot tell.
    wide = decide(metrics(0.5), metrics(0.501), "mAP50-95", 0.0, 1.0, same, margin=1.0)
    assert wide.promote and "within noise" in wide.reason and "[95%" in wide.reason
    narrow = decide(metrics(0.5), metrics(0.501), "mAP50-95", 0.0, 1.0, same, margin=0.001)
    assert not narrow.promote and "below -margin 0.001" in narrow.reason
    promoted = decide(metrics(0.9), metrics(0.3), "mAP50-95", 0.0, 0.05, better, margin=0.02)
    assert promoted.promote and ": better;" in promoted.reason
    by_class = decide(metrics(0.5), metrics(0.5), "mAP50-95", 0.0, 0.0, same, margin=1.0)  # no class may drop
    assert not by_class.promote and set(by_class.dropped_classes) <= set(NAMES) and by_class.dropped_classes
    assert by_class.refused("why").comparison is same


def test_class_confidences_match_predictions_to_labelled_boxes_by_iou():
    labels = labels_from_text("0 0.25 0.25 0.2 0.2\n1 0.75 0.75 0.2 0.2\n")
    preds = np.array([[0.25, 0.25, 0.2, 0.2], [0.26, 0.25, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]])
    conf = class_confidences(labels, preds, np.array([0.3, 0.8, 0.6, 0.9]), np.array([0, 1, 1, 0]), 2)
    assert conf.tolist() == [[0.3, 0.8], [0.0, 0.6]]  # the far-away 0.9 square matches neither box


RULE = ScreeningRule(confidence=0.5, margin=0.2, candidate_confidence=0.4, agreement_confidence=0.25)


def test_screening_holds_a_swapped_label_and_accepts_a_fix_the_champion_got_wrong():
    labels = {"poisoned": labels_from_text("0 0.5 0.5 0.3 0.3\n"), "fix": labels_from_text("1 0.5 0.5 0.3 0.3\n"),
              "unseen": labels_from_text("1 0.2 0.2 0.1 0.1\n"), "stubborn": labels_from_text("0 0.5 0.5 0.3 0.3\n")}
    champion = {"poisoned": np.array([[0.05, 0.9]]), "fix": np.array([[0.8, 0.1]]), "unseen": np.zeros((1, 2)),
                "stubborn": np.array([[0.9, 0.0]])}
    candidate = {"poisoned": np.array([[0.35, 0.6]]), "fix": np.array([[0.05, 0.85]]), "unseen": np.zeros((1, 2)),
                 "stubborn": np.array([[0.1, 0.7]])}
    verdicts = {v.correction_id: v for v in screen(labels, champion, candidate, NAMES, RULE)}
    assert [k for k, v in verdicts.items() if v.suspicious] == ["poisoned", "stubborn"]
    assert verdicts["poisoned"].reason() == (
        "box 1: 'square' box: the candidate (trained on it) sees 'circle' (0.60; 'square' 0.35)"
    )
    assert "the candidate (trained on it) sees 'circle' (0.70" in verdicts["stubborn"].reason()
    champion["poisoned"], candidate["poisoned"] = np.array([[0.05, 0.9]]), np.array([[0.45, 0.4]])  # candidate unsure
    (held,) = [v for v in screen(labels, champion, candidate, NAMES, RULE) if v.correction_id == "poisoned"]
    assert held.reason() == "box 1: 'square' box: the champion sees 'circle' (0.90; 'square' 0.05), the candidate does not confirm 'square' (0.45)"
    weak = {"w": labels_from_text("1 0.5 0.5 0.3 0.3\n")}  # neither model is sure, both lean to the other class
    (verdict,) = screen(weak, {"w": np.array([[0.30, 0.10]])}, {"w": np.array([[0.35, 0.20]])}, NAMES, RULE)
    assert verdict.reason() == (
        "box 1: 'circle' box: both models prefer another class (champion 'square' 0.30, candidate 'square' 0.35; 'circle' 0.10 / 0.20)"
    )
    (verdict,) = screen(weak, {"w": np.array([[0.30, 0.10]])}, {"w": np.array([[0.20, 0.35]])}, NAMES, RULE)
    assert not verdict.suspicious  # the candidate learned it
    assert not screen(weak, None, {"w": np.array([[0.35, 0.20]])}, NAMES, RULE)[0].suspicious  # no champion yet
    assert ScreeningResult(list(verdicts.values())).share == 0.5


def test_a_candidate_worse_on_the_holdout_is_not_counted_the_champion_judges_alone():
    """A 1-epoch candidate that sees every box as a circle says nothing against a right square."""
    from yolo_retrain.bootstrap import Interval

    assert holdout_view(Interval(-0.4, -0.45, -0.32), 0.02) == "worse"
    assert holdout_view(Interval(-0.04, -0.06, -0.015), 0.02) == "comparable"  # worse, but not beyond the margin
    assert holdout_view(Interval(0.03, 0.01, 0.05), 0.02) == "better"
    labels = {"right": labels_from_text("0 0.5 0.5 0.3 0.3\n"), "wrong": labels_from_text("1 0.2 0.2 0.2 0.2\n")}
    champion = {"right": np.array([[0.94, 0.0]]), "wrong": np.array([[0.8, 0.1]])}
    collapsed = {"right": np.array([[0.6, 0.88]]), "wrong": np.array([[0.0, 0.97]])}
    trusted = {v.correction_id: v.suspicious for v in screen(labels, champion, collapsed, NAMES, RULE)}
    assert trusted == {"right": True, "wrong": False}
    verdicts = {v.correction_id: v for v in screen(labels, champion, collapsed, NAMES, RULE, holdout="worse")}
    assert not verdicts["right"].suspicious
    assert verdicts["wrong"].reason() == (
        "box 1: 'circle' box: the champion sees 'square' (0.80; 'circle' 0.10); the candidate, worse on the holdout, is not counted"
    )


def test_a_candidate_better_on_the_holdout_outweighs_the_champion_alone():
    """The demo's champion memorised the wrong labels its fixes correct; the better candidate sees nothing there."""
    labels = {"fix": labels_from_text("1 0.5 0.5 0.3 0.3\n")}
    champion, candidate = {"fix": np.array([[0.63, 0.0]])}, {"fix": np.zeros((1, 2))}
    assert screen(labels, champion, candidate, NAMES, RULE, holdout="comparable")[0].suspicious
    assert not screen(labels, champion, candidate, NAMES, RULE, holdout="better")[0].suspicious
    candidate = {"fix": np.array([[0.3, 0.1]])}  # but both leaning to the other class still holds it
    assert "both models prefer" in screen(labels, champion, candidate, NAMES, RULE, holdout="better")[0].reason()


def test_a_candidate_trained_on_a_mostly_suspicious_batch_does_not_vouch_for_its_labels():
    """The bench's poisoned batch let one through: a square (swapped from a circle) where the champion sees a circle at
    0.48, just under its threshold, and the candidate, trained on the batch, leans to the square at 0.44 (the figures
    of that run). Among mostly wrong labels the candidate's lean proves nothing: screened again without it, the
    champion's doubt holds the label; a label the champion agrees with still passes. In a batch that is mostly right
    the candidate's view still counts (the same box passes)."""
    weak = {"weak": labels_from_text("0 0.5 0.5 0.3 0.3\n")}
    champion, candidate = {"weak": np.array([[0.0, 0.48]])}, {"weak": np.array([[0.44, 0.08]])}
    swapped = {f"swapped{i}": labels_from_text("0 0.5 0.5 0.3 0.3\n") for i in range(3)}
    agreed = {"agreed": labels_from_text("1 0.5 0.5 0.3 0.3\n")}
    right = {f"right{i}": labels_from_text("1 0.5 0.5 0.3 0.3\n") for i in range(3)}
    champion |= {k: np.array([[0.02, 0.9]]) for k in swapped} | {k: np.array([[0.1, 0.8]]) for k in [*agreed, *right]}
    candidate |= {k: np.array([[0.2, 0.7]]) for k in swapped} | {k: np.array([[0.05, 0.85]]) for k in [*agreed, *right]}

    mostly_wrong = {v.correction_id: v for v in screen(weak | swapped | agreed, champion, candidate, NAMES, RULE)}
    assert [k for k, v in mostly_wrong.items() if not v.suspicious] == ["agreed"]
    assert mostly_wrong["weak"].reason() == (
        "box 1: 'square' box: the champion sees 'circle' (0.48; 'square' 0.00); most of the batch is suspicious, so the"
        " candidate trained on it does not vouch for 'square' (0.44)"
    )
    assert "the candidate (trained on it) sees 'circle' (0.70" in mostly_wrong["swapped0"].reason()  # its disagreement counts
    mostly_right = screen(weak | right | {"swapped0": swapped["swapped0"]}, champion, candidate, NAMES, RULE)
    assert [v.correction_id for v in mostly_right if v.suspicious] == ["swapped0"]
    lenient = ScreeningRule(contaminated_share=1.0)  # the setting: never contaminated, the first pass stands
    assert not {v.correction_id: v for v in screen(weak | swapped, champion, candidate, NAMES, lenient)}["weak"].suspicious


def test_a_relabel_is_found_against_the_label_it_replaces_or_the_champion():
    new = labels_from_text("1 0.5 0.5 0.3 0.3\n0 0.1 0.1 0.1 0.1\n")
    assert relabelled_classes(new, labels_from_text("0 0.5 0.5 0.3 0.3\n0 0.1 0.1 0.1 0.1\n"), None, 0.25) == {0, 1}
    assert relabelled_classes(new, labels_from_text("1 0.5 0.5 0.3 0.3\n"), None, 0.25) == set()
    assert relabelled_classes(new, None, np.array([[0.6, 0.1], [0.7, 0.0]]), 0.25) == {0, 1}  # a new image


def test_forgetting_counts_what_the_candidate_lost_by_class():
    labels = {f"c{i}": labels_from_text(f"{i % 2} 0.5 0.5 0.3 0.3\n") for i in range(20)}
    champion = {k: np.eye(2)[int(v[0, 0])] [None, :] * 0.9 for k, v in labels.items()}
    candidate = dict(champion) | {"c1": np.array([[0.8, 0.3]]), "c3": np.array([[0.7, 0.2]])}  # two circles lost
    kept = retention(labels, champion, candidate, NAMES, 0.5)
    assert (kept.boxes, kept.champion, kept.candidate, dict(kept.unlearned)) == (20, 20, 18, {"circle": 2})
    assert forgetting_reason(kept, 0.2) is None
    assert forgetting_reason(kept, 0.05) == (
        "the candidate un-learned 2 of 20 boxes of earlier accepted corrections that the champion reproduces "
        "(10.0% > 5%; by class: 'circle' 2)"
    )
    assert stable_sample(list(labels), 5) == stable_sample(sorted(labels, reverse=True), 5)
    assert set(stable_sample(list(labels), 5)) <= set(stable_sample([*labels, "new-1", "new-2"], 7))


@pytest.fixture
def store(tmp_path: Path) -> CorrectionStore:
    s = CorrectionStore(f"sqlite:///{tmp_path / 'corrections.db'}", tmp_path / "blobs", NAMES)
    yield s
    s.close()


def test_each_correction_is_recorded_on_its_own_merit_whatever_the_models_fate(store):
    ids = [add_at(store, i, T0 + timedelta(hours=i)) for i in range(3)]
    store.claim("run-1")
    outcome = store.record_screened_batch("run-1", "4", GateDecision(False, "worse"), {ids[1]: "box 1: why"})
    assert (outcome.accepted, outcome.held) == (2, {ids[1]: "box 1: why"})
    rows = {i: store.get(i) for i in ids}
    assert [rows[i].status for i in ids] == ["accepted", "suspicious", "accepted"]
    assert rows[ids[0]].status_reason == "screened v4: accepted on its own merit (model rejected)"
    assert (rows[ids[1]].status_reason, rows[ids[1]].applied_version) == ("screening v4: box 1: why", "4")
    assert store.record_screened_batch("run-1", "4", GateDecision(False, "worse"), {}).accepted == 0  # once
    store.claim("run-2")
    training = store.training_corrections("run-2")
    assert sorted(c.id for c in training.accepted) == sorted([ids[0], ids[2]]) and training.held_rejected == 1


def test_a_person_reviews_suspicious_corrections_with_the_corrections_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RETRAIN_HOME", str(tmp_path))
    get_settings.cache_clear()
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: square, 1: circle}\n")
    with CorrectionStore.from_settings(get_settings()) as store:
        ids = [add_at(store, i, T0 + timedelta(hours=i)) for i in range(3)]
        store.claim("batch-1")
        held = {i: f"box 1: 'square' box: the champion sees 'circle' (0.9{n})" for n, i in enumerate(ids)}
        store.record_screened_batch("batch-1", "2", GateDecision(True, "ok"), held)
    runner = CliRunner()
    listed = runner.invoke(cli.app, ["list", "--status", "suspicious"])
    assert listed.exit_code == 0, listed.output
    assert all(f"screening v2: box 1: 'square' box: the champion sees 'circle' (0.9{n})" in listed.output for n in range(3))
    assert runner.invoke(cli.app, ["accept", ids[0][:12], "--by", "ann"]).exit_code == 0
    assert runner.invoke(cli.app, ["drop", ids[1][:12]]).exit_code == 0
    result = runner.invoke(cli.app, ["requeue", "--batch", "batch-1"])
    assert result.exit_code == 0 and result.output.strip() == f"requeued 1 correction(s): {ids[2][:12]}"
    with CorrectionStore.from_settings(get_settings()) as store:
        assert [store.get(i).status for i in ids] == ["accepted", "dropped", "pending"]
        assert store.get(ids[0]).status_reason.startswith("accepted by ann (was screening v2: box 1:")


def test_the_summary_says_which_were_accepted_which_held_and_why_and_the_interval():
    from yolo_retrain.summary import RetrainReport

    comparison = paired_bootstrap(holdout(9, images=20), holdout(10, images=20), dict(enumerate(NAMES)), resamples=200)
    held = tuple(f"c{i:011d}: box 1: 'square' box: the candidate (trained on it) sees 'circle' (0.9{i}; 'square' 0.01)" for i in range(25))
    report = RetrainReport(
        outcome="rejected", trigger="manual", corrections=30, message="25 of 30 corrections suspicious", run_id="r",
        version="3", pre=metrics(0.5), post=metrics(0.49), batch_id="batch-7", comparison=comparison, accepted_now=5,
        suspicious=held, retention="reproduced boxes, earlier fixes: none; this batch: champion 10%, candidate 20% of 40 boxes",
    )  # fmt: skip
    text, markdown = report.text(), report.markdown()
    iv = comparison.map50_95
    for out in (text, markdown):
        assert "5 of this batch's corrections accepted on their own merit, 25 held as suspicious" in out
        assert "corrections requeue --batch batch-7" in out
        assert f"held {held[0]}" in out and f"held {held[19]}" in out and f"held {held[20]}" not in out
        assert "... and 5 more (`corrections list --status suspicious`)" in out
        assert f"{iv.text()} (20 images, 200 paired bootstrap draws): {iv.verdict}" in out
        assert "this batch: champion 10%, candidate 20% of 40 boxes" in out
    assert f"| mAP50-95 | 0.5000 | 0.4900 | -0.0100 | [{iv.low:+.4f}, {iv.high:+.4f}] {iv.verdict} |" in markdown
