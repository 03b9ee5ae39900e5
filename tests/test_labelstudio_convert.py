"""Label Studio <-> YOLO: percent rectangles, labels by name, the label config, the per-class diff."""

from __future__ import annotations

import pytest

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labelstudio.convert import ScoredBox, box_to_region, result_to_boxes
from yolo_retrain.labelstudio.diff import BoxDiff, ClassDiff, diff_boxes, iou, merge
from yolo_retrain.labelstudio.label_config import box_tag

CLASSES = ["square", "circle", "triangle"]
CONFIG = """<View>
  <Image name="img" value="$picture"/>
  <RectangleLabels name="boxes" toName="img">
    <Label value="triangle"/><Label value="circle"/><Label value="square"/><Label value="cat"/>
  </RectangleLabels>
</View>"""


def _region(label, x, y, w, h, **extra):
    return {"type": "rectanglelabels", "from_name": "boxes", "to_name": "img",
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label], **extra}}


def test_percent_rectangles_become_yolo_boxes_with_classes_by_name():
    boxes = result_to_boxes([_region("circle", 10, 20, 30, 40), _region("square", 0, 0, 100, 100)], CLASSES, "a")
    assert boxes[0] == pytest.approx((1, 0.25, 0.40, 0.30, 0.40))
    assert boxes[1] == pytest.approx((0, 0.5, 0.5, 1.0, 1.0))


def test_yolo_box_round_trips_through_a_region():
    region = box_to_region(ScoredBox((2, 0.25, 0.40, 0.30, 0.40), 0.9), CLASSES, "boxes", "img", 640, 480)
    assert region["value"]["rectanglelabels"] == ["triangle"]
    assert (region["original_width"], region["original_height"], region["score"]) == (640, 480, 0.9)
    assert result_to_boxes([region], CLASSES, "p")[0] == pytest.approx((2, 0.25, 0.40, 0.30, 0.40))


def test_other_region_types_are_ignored_and_edge_overshoot_is_clipped():
    text = {"type": "textarea", "value": {"text": ["note"]}}
    (box,) = result_to_boxes([text, _region("square", -0.2, 50, 100.3, 50)], CLASSES, "a")
    assert box == pytest.approx((0, 0.5, 0.75, 1.0, 0.5))


@pytest.mark.parametrize(
    ("region", "reason"),
    [
        (_region("cat", 1, 1, 5, 5), "label 'cat' is not one of the model's classes"),
        ({**_region("square", 1, 1, 5, 5), "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["square", "circle"]}}, "exactly one label"),
        (_region("square", 1, 1, 5, 5, rotation=30), "rotated box"),
        (_region("square", 1, 1, 0, 5), "positive width and height"),
        (_region("square", 90, 1, 20, 5), "outside the image"),
        (_region("square", "1", 1, 5, 5), "'x' must be a finite number"),
    ],
)
def test_a_bad_region_is_refused_with_the_reason(region, reason):
    with pytest.raises(InvalidInput, match="task 7") as exc:
        result_to_boxes([region], CLASSES, "task 7")
    assert reason in str(exc.value)


def test_label_config_gives_the_box_tag_its_image_field_and_unknown_labels():
    tag = box_tag(CONFIG)
    assert (tag.from_name, tag.to_name, tag.image_key) == ("boxes", "img", "picture")
    assert tag.labels == ("triangle", "circle", "square", "cat")
    assert tag.unknown_labels(CLASSES) == ["cat"]
    with pytest.raises(InvalidInput, match="no <RectangleLabels>"):
        box_tag('<View><Image name="i" value="$image"/><Choices name="c" toName="i"/></View>')
    with pytest.raises(InvalidInput, match="not valid XML"):
        box_tag("<View>")


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    a = (0, 0.5, 0.5, 0.2, 0.2)
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, (0, 0.1, 0.1, 0.1, 0.1)) == 0.0
    assert iou(a, (0, 0.6, 0.5, 0.2, 0.2)) == pytest.approx(1 / 3)


def test_diff_counts_kept_moved_relabelled_added_and_removed_per_class():
    predicted = [
        (0, 0.2, 0.2, 0.1, 0.1),  # kept: square, same place
        (1, 0.5, 0.5, 0.2, 0.2),  # moved: circle, redrawn (IoU 1/3)
        (0, 0.8, 0.8, 0.1, 0.1),  # relabelled: square -> triangle
        (1, 0.1, 0.9, 0.05, 0.05),  # removed: a false circle
    ]
    corrected = [
        (0, 0.2, 0.2, 0.1, 0.1),
        (1, 0.6, 0.5, 0.2, 0.2),
        (2, 0.8, 0.8, 0.1, 0.1),
        (2, 0.4, 0.1, 0.1, 0.1),  # added: a missed triangle
    ]
    diff = diff_boxes(predicted, corrected, CLASSES)
    assert diff.classes == {
        "square": ClassDiff(kept=1),
        "circle": ClassDiff(moved=1, removed=1),
        "triangle": ClassDiff(relabelled=1, added=1),
    }
    assert diff.relabels == {"square -> triangle": 1}
    assert (diff.total("added"), diff.total("removed"), diff.unchanged) == (1, 1, False)
    assert BoxDiff.from_json(diff.to_json()) == diff


def test_an_untouched_prediction_is_all_kept_and_diffs_add_up():
    boxes = [(0, 0.2, 0.2, 0.1, 0.1), (1, 0.7, 0.7, 0.2, 0.2)]
    same = diff_boxes(boxes, boxes, CLASSES)
    assert same.unchanged and same.total("kept") == 2
    empty = diff_boxes([], boxes, CLASSES)
    assert empty.total("added") == 2
    total = merge([same, empty])
    assert total.classes["square"] == ClassDiff(added=1, kept=1)


def test_a_retrains_diff_summary_gives_a_table_and_metrics_per_class():
    from yolo_retrain.reviewer_diffs import DiffSummary

    total = merge([diff_boxes([(0, 0.2, 0.2, 0.1, 0.1)], [(1, 0.2, 0.2, 0.1, 0.1), (2, 0.7, 0.7, 0.1, 0.1)], CLASSES)])
    summary = DiffSummary(corrections=3, with_diff=1, total=total)
    table = summary.markdown()
    assert "(1 of 3 corrections diffed against a prediction)" in table
    assert "| circle | 0 | 0 | 1 | 0 | 0 |" in table and "| triangle | 1 | 0 | 0 | 0 | 0 |" in table
    assert "square -> circle (1)" in table
    metrics = summary.metrics()
    assert (metrics["reviewer_relabelled"], metrics["reviewer_added_triangle"], metrics["reviewer_kept"]) == (1, 1, 0)
    assert DiffSummary(corrections=2, with_diff=0, total=BoxDiff()).markdown() == ""
