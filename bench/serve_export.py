"""The champion's ONNX export (#24): how long the export takes, how well it agrees with the .pt on the demo's holdout,
and inference latency per image of the .pt (PyTorch) against ONNX Runtime on this CPU, side by side in one run.

Reads a home the demo left (``yolo-retrain demo``, YOLO_RETRAIN_HOME=HOME): its champion.pt and the demo's holdout.

- export: ``export_weights`` (Ultralytics, onnxslim) ``--repeat`` times, median;
- agreement: what the retrain's export step measures (yolo_retrain/exports/agreement.py): matched boxes, class
  agreement, mAP50-95 of each on the holdout;
- latency, interleaved rounds (.pt, then ONNX, per round), each after warm-up:
  *end to end*: Ultralytics' predict on each holdout image (decode, letterbox, model, NMS), ms per image;
  *model only*: one forward pass on a preprocessed 1×3×S×S tensor, PyTorch (fused, eval, no grad) against an
  ``onnxruntime.InferenceSession`` (default CPU threads), at the demo's 64 px and at 640 px (exported again there).

    .venv/bin/python bench/serve_export.py HOME --out bench/results/serve_export.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from _common import emit, header, median  # noqa: E402


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _forward_latency(weights: Path, onnx: Path, size: int, rounds: int, calls: int) -> dict:
    """Model-only latency (ms) of PyTorch and ONNX Runtime on the same random 1×3×size×size input, interleaved."""
    import onnxruntime
    import torch
    from ultralytics import YOLO

    model = YOLO(str(weights)).model.fuse().eval()
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    tensor = torch.rand(1, 3, size, size)
    array = tensor.numpy()
    with torch.inference_mode():
        for _ in range(5):  # warm-up
            model(tensor)
            session.run(None, {name: array})
        torch_ms, onnx_ms = [], []
        for _ in range(rounds):
            torch_ms.append(_timed(lambda: [model(tensor) for _ in range(calls)]) * 1000 / calls)
            onnx_ms.append(_timed(lambda: [session.run(None, {name: array}) for _ in range(calls)]) * 1000 / calls)
    pt, ort = median(torch_ms), median(onnx_ms)
    return {"imgsz": size, "pytorch_ms": round(pt, 3), "onnxruntime_ms": round(ort, 3), "onnx_over_pt": round(ort / pt, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ["YOLO_RETRAIN_HOME"] = str(args.home.resolve())

    from yolo_retrain.config import configure_environment, get_settings

    settings = configure_environment(get_settings())
    from ultralytics import YOLO

    from yolo_retrain.data_yaml import load_data_yaml
    from yolo_retrain.exports.agreement import compare_boxes, holdout_map, predict_boxes
    from yolo_retrain.exports.export import export_weights
    from yolo_retrain.recipe import trained_imgsz
    from yolo_retrain.config import SERVING_CONFIDENCE

    weights = settings.champion_weights
    imgsz = trained_imgsz(weights)
    data_yaml = settings.base_data
    holdout = load_data_yaml(data_yaml, required=("val",)).images("val")
    result = header("serve_export") | {"weights": str(weights), "imgsz": imgsz, "holdout_images": len(holdout)}

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        seconds = [export_weights(weights, "onnx", imgsz, scratch / f"onnx-{i}", "cpu").seconds for i in range(args.repeat)]
        onnx = scratch / "onnx-0" / "model.onnx"
        result["export_seconds"] = {"median": round(median(seconds), 2), "all": [round(s, 2) for s in seconds]}
        result["onnx_mb"] = round(onnx.stat().st_size / 2**20, 1)
        result["pt_mb"] = round(weights.stat().st_size / 2**20, 1)

        pt_model, onnx_model = YOLO(str(weights)), YOLO(str(onnx), task="detect")
        agreement = compare_boxes(
            "onnx",
            predict_boxes(pt_model, holdout, imgsz, SERVING_CONFIDENCE),
            predict_boxes(onnx_model, holdout, imgsz, SERVING_CONFIDENCE),
            holdout_map(pt_model, data_yaml, imgsz, scratch / "val-pt"),
            holdout_map(onnx_model, data_yaml, imgsz, scratch / "val-onnx"),
        )
        result["agreement"] = agreement.as_dict()
        result["agreement_line"] = agreement.figures()
        result["passes_defaults"] = agreement.problem(settings.export_min_agreement, settings.export_map_tolerance) is None

        # End to end, Ultralytics' predict on every holdout image; .pt and ONNX interleaved per round.
        for model in (pt_model, onnx_model):
            predict_boxes(model, holdout[:5], imgsz, SERVING_CONFIDENCE)
        pt_ms, onnx_ms = [], []
        for _ in range(args.rounds):
            pt_ms.append(_timed(lambda: predict_boxes(pt_model, holdout, imgsz, SERVING_CONFIDENCE)) * 1000 / len(holdout))
            onnx_ms.append(_timed(lambda: predict_boxes(onnx_model, holdout, imgsz, SERVING_CONFIDENCE)) * 1000 / len(holdout))
        result["end_to_end_ms_per_image"] = {
            "pt": round(median(pt_ms), 2), "onnxruntime": round(median(onnx_ms), 2),
            "onnx_over_pt": round(median(onnx_ms) / median(pt_ms), 3),
        }  # fmt: skip

        large = export_weights(weights, "onnx", 640, scratch / "onnx-640", "cpu")
        result["export_seconds_640"] = round(large.seconds, 2)
        result["model_only"] = [
            _forward_latency(weights, onnx, imgsz, args.rounds, 50),
            _forward_latency(weights, large.path, 640, args.rounds, 5),
        ]
    result["load_average_at_end"] = os.getloadavg()
    emit(result, args.out)


if __name__ == "__main__":
    main()
