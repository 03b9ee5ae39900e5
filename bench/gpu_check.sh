#!/usr/bin/env bash
# GPU check of benchmark 1 (bench/overhead.py, docs/benchmarks.md): the whole retrain flow against a bare
# Ultralytics script at a GPU size (640 px, 2500 + 300 generated images, 10 epochs, batch 32, 8 dataloader
# workers, GPU 0; both sides train with the flow's whole recipe and their args.yaml are compared), on a machine
# with an NVIDIA GPU and PyTorch but none of this project's other packages, and no network. It installs from a folder of wheels, runs A B pairs within the time left, prints the
# ratio, the difference, the allowed extra (5 s + 3 %) and GPU utilisation per side. Within 8 minutes.
#
#   bench/gpu_check.sh WHEELS_DIR [OUT_DIR]
#
# WHEELS_DIR: a wheel of every package the project needs but torch and torchvision (the machine's are used),
# for the GPU machine's Python version, plus setuptools. Fill it on a machine with network:
#
#   bench/make_wheelhouse.sh WHEELS_DIR                     # .venv's versions, .venv's Python
#   TARGET_PYTHON=3.12 bench/make_wheelhouse.sh WHEELS_DIR  # for a GPU machine with another Python
#
# or by hand, from .venv's pinned versions without torch and what only torch needs (the list also carries
# the test tools, which do no harm):
#
#   .venv/bin/pip freeze --exclude-editable | grep -vE '^(torch|torchvision|triton)==|^(cuda-|nvidia-c|nvidia-n)' > reqs.txt
#   .venv/bin/pip wheel --no-deps -r reqs.txt -w WHEELS_DIR
#   .venv/bin/pip download --no-deps 'setuptools>=68' -d WHEELS_DIR
#
# If the machine's PyTorch has no torchvision, add the torchvision wheel built for its torch version.
#
# OUT_DIR (default bench/results): gpu_check.json (the figures) and gpu_check-logs/ (every process's log).
# Environment: PYTHON (default python3: the interpreter with the machine's PyTorch), GPU_CHECK_VENV (default
# /tmp/yolo-retrain-gpu-venv, reused if there), GPU_CHECK_PAIRS (default 2), GPU_CHECK_BUDGET_S (default 480).
set -euo pipefail

fail() {
    echo "gpu_check: $*" >&2
    exit 1
}

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 WHEELS_DIR [OUT_DIR]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WHEELS_DIR=$(realpath "$1")
OUT_DIR=$(realpath -m "${2:-$ROOT/bench/results}")
PYTHON=${PYTHON:-python3}
VENV=${GPU_CHECK_VENV:-/tmp/yolo-retrain-gpu-venv}
PAIRS=${GPU_CHECK_PAIRS:-2}
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
SECONDS=0 # bash counts from here

# 1. The machine: a GPU, PyTorch with CUDA, wheels for this Python.
command -v nvidia-smi > /dev/null || fail "no nvidia-smi on PATH: this check needs a machine with an NVIDIA GPU and its driver"
nvidia-smi -L || fail "nvidia-smi finds no GPU"
"$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "torch.cuda.is_available() is False"' ||
    fail "$PYTHON has no PyTorch that sees the GPU (set PYTHON to the interpreter that has it)"
[[ -d $WHEELS_DIR ]] || fail "no wheel folder $WHEELS_DIR (see the top of $0 to fill one)"
py_tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
compgen -G "$WHEELS_DIR/numpy-*-$py_tag-*.whl" > /dev/null ||
    fail "$WHEELS_DIR has no wheels for this Python ($py_tag): refill it with TARGET_PYTHON=${py_tag:2:1}.${py_tag:3} bench/make_wheelhouse.sh"
has_torchvision='import importlib.util, sys; sys.exit(importlib.util.find_spec("torchvision") is None)'
if ! "$PYTHON" -c "$has_torchvision" && ! compgen -G "$WHEELS_DIR/torchvision-*.whl" > /dev/null; then
    fail "no torchvision here nor in $WHEELS_DIR: add the torchvision wheel built for $("$PYTHON" -c 'import torch; print("torch", torch.__version__)')"
fi

# 2. Install without network; the machine's PyTorch is seen through the system site-packages.
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --isolated --quiet --no-index --find-links "$WHEELS_DIR" -e "$ROOT" ||
    fail "installing from $WHEELS_DIR failed (a missing wheel is named above)"
"$VENV/bin/python" - << 'EOF' || fail "the installed packages do not import"
import mlflow, prefect, torch, torchvision, ultralytics
import yolo_retrain
assert torch.cuda.is_available()
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}), torchvision {torchvision.__version__},"
      f" ultralytics {ultralytics.__version__}, prefect {prefect.__version__}, mlflow {mlflow.__version__}")
EOF
[[ -x $VENV/bin/yolo-retrain && -x $VENV/bin/prefect ]] || fail "yolo-retrain or prefect command missing in $VENV/bin"
echo "installed in ${SECONDS} s"

# 3. Benchmark 1 at the GPU size, in the time left: overhead.py starts no pair it cannot finish by
#    --budget-s (judged by the last one), and timeout is the backstop. SIGINT, not SIGTERM, so that
#    overhead.py still stops its Prefect server and keeps the logs.
left=$((BUDGET_S - SECONDS))
((left >= 180)) || fail "only ${left} s of the ${BUDGET_S} s left after installing: not enough for one pair"
mkdir -p "$OUT_DIR"
JSON=$OUT_DIR/gpu_check.json
rm -f "$JSON"
status=0
timeout --signal=INT --kill-after=15 $((left - 25)) "$VENV/bin/python" "$ROOT/bench/overhead.py" --sizes gpu \
    --pairs "$PAIRS" --champion-epochs 1 --budget-s $((left - 40)) --keep-logs "$OUT_DIR/gpu_check-logs" \
    --out "$JSON" > /dev/null || status=$?
((status != 124 && status != 137)) || fail "overhead.py passed the ${BUDGET_S} s budget and was stopped (logs: $OUT_DIR/gpu_check-logs if any)"
((status == 0)) || fail "overhead.py failed ($status); logs in $OUT_DIR/gpu_check-logs"

# 4. The figures.
"$VENV/bin/python" - "$JSON" << 'EOF'
import json, sys

result = json.load(open(sys.argv[1]))
s = result["sizes"]["gpu"]
size = s["size"]
print(f"\nGPU check: {', '.join(result['machine']['gpus'])}; {result['machine']['cores']} cores")
print(f"  {size['train']} + {size['val']} images at {size['imgsz']} px, {size['epochs']} epochs, batch {size['batch']},"
      f" device {size['device']}, {size['workers']} workers; {len(s['pairs'])} of {s['pairs_requested']} pair(s)")
for i, p in enumerate(s["pairs"], 1):
    print(f"  pair {i}: bare {p['bare']['wall_s']:.1f} s, flow {p['flow']['wall_s']:.1f} s")
print(f"  median: bare {s['median_bare_s']:.1f} s, flow {s['median_flow_s']:.1f} s, ratio {s['median_ratio']:.3f},"
      f" difference {s['median_extra_s']:+.1f} s, allowed extra {s['allowed_extra_s']:.1f} s (5 s + 3 %):"
      f" goal {'met' if s['goal_met'] else 'MISSED'}")
for side, g in (s["gpu_util"] or {}).items():
    print(f"  GPU utilisation, {side}: mean {g['util_mean_pct']:.0f} %, max {g['util_max_pct']:.0f} %,"
          f" memory up to {g['memory_max_mib']:.0f} MiB")
EOF
echo "figures: $JSON; total ${SECONDS} s"
