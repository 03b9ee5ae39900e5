from yolo_retrain.gate import decide
from yolo_retrain.metrics import EvalMetrics


def metrics(map50_95: float, **per_class: float) -> EvalMetrics:
    return EvalMetrics(map50=map50_95 + 0.2, map50_95=map50_95, precision=0.5, recall=0.5, per_class_ap=per_class)


def test_first_model_is_promoted_without_a_champion():
    decision = decide(metrics(0.1), None, "mAP50-95", 0.0, 0.05)
    assert decision.promote and decision.alias == "champion"


def test_better_or_equal_candidate_is_promoted():
    assert decide(metrics(0.50, a=0.5), metrics(0.40, a=0.4), "mAP50-95", 0.0, 0.05).promote
    assert decide(metrics(0.40, a=0.4), metrics(0.40, a=0.4), "mAP50-95", 0.0, 0.05).promote


def test_worse_candidate_becomes_challenger_with_reason():
    decision = decide(metrics(0.39), metrics(0.40), "mAP50-95", 0.0, 0.05)
    assert not decision.promote and decision.alias == "challenger"
    assert "mAP50-95 0.3900 < champion 0.4000" in decision.reason


def test_tolerance_allows_a_small_drop():
    assert decide(metrics(0.39), metrics(0.40), "mAP50-95", 0.02, 0.05).promote
    assert not decide(metrics(0.37), metrics(0.40), "mAP50-95", 0.02, 0.05).promote


def test_a_class_dropping_too_far_blocks_promotion_even_if_the_mean_improves():
    decision = decide(metrics(0.60, a=0.9, b=0.30), metrics(0.50, a=0.4, b=0.60), "mAP50-95", 0.0, 0.05)
    assert not decision.promote
    assert "'b'" in decision.reason and "0.3000" in decision.reason


def test_a_class_missing_from_the_candidate_counts_as_zero():
    assert not decide(metrics(0.6, a=0.6), metrics(0.5, a=0.5, b=0.5), "mAP50-95", 0.0, 0.05).promote


def test_gate_metric_is_configurable():
    candidate = EvalMetrics(map50=0.9, map50_95=0.1, precision=0.5, recall=0.5)
    champion = EvalMetrics(map50=0.8, map50_95=0.2, precision=0.5, recall=0.5)
    assert decide(candidate, champion, "mAP50", 0.0, 1.0).promote
    assert not decide(candidate, champion, "mAP50-95", 0.0, 1.0).promote
