#!/usr/bin/env bash
# Fill a folder with the wheels bench/gpu_check.sh installs from on a GPU machine without network.
#
#   bench/make_wheelhouse.sh WHEELS_DIR
#
# Run it on a machine with network, in this checkout, with .venv installed (make install). It writes a
# wheel for every package the project needs, at the versions .venv has, except torch and torchvision
# (the GPU machine's own are used) and what only they need (nvidia-*, triton, sympy...), plus setuptools
# (pip needs it there to install the checkout itself). About 340 MB.
#
# Wheels are specific to a Python version and platform: by default those of .venv. For a GPU machine
# with another Python, set TARGET_PYTHON (e.g. TARGET_PYTHON=3.12): binary wheels for that version and
# manylinux x86_64 are downloaded instead (a package published only as source then makes this fail, and
# requirement markers are judged for .venv's Python: a backport an older Python needs is missing, named by pip).
# If that machine's PyTorch comes without torchvision, add the torchvision wheel built for its torch:
#   pip download --no-deps torchvision==<version matching its torch> -d WHEELS_DIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 WHEELS_DIR" >&2
    exit 2
fi
WHEELS_DIR=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV_PYTHON=$ROOT/.venv/bin/python
[[ -x $VENV_PYTHON ]] || { echo "no $VENV_PYTHON: run 'make install' first" >&2; exit 1; }
mkdir -p "$WHEELS_DIR"
REQUIREMENTS=$WHEELS_DIR/requirements.txt

# pyproject.toml's dependencies and, from .venv, everything they need, pinned; torch and torchvision are not
# followed. (Not .venv's metadata of the project itself: an editable install's can lag behind pyproject.toml.)
"$VENV_PYTHON" - "$ROOT/pyproject.toml" > "$REQUIREMENTS" <<'EOF'
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement

SKIP = {"torch", "torchvision"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def needed(requirements: list[str], extras: set[str]) -> list[tuple[str, frozenset[str]]]:
    """(name, extras) of the requirements that apply (markers evaluated with the extras asked for)."""
    out = []
    for text in requirements:
        req = Requirement(text)
        applies = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras})
        if applies and canonical(req.name) not in SKIP:
            out.append((req.name, frozenset(req.extras)))
    return out


with open(sys.argv[1], "rb") as f:
    todo = needed(tomllib.load(f)["project"]["dependencies"], set())
extras_of: dict[str, set[str]] = {}  # package -> the extras asked for
while todo:
    name, extras = todo.pop()
    key = canonical(name)
    if key in extras_of and extras <= extras_of[key]:
        continue
    extras_of[key] = extras_of.get(key, set()) | extras
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        raise SystemExit(f"{name} is needed but not installed in .venv: run 'make install'") from None
    todo += needed(dist.requires or [], extras_of[key])
for key in sorted(extras_of):
    print(f"{key}=={distribution(key).version}")
EOF
echo "$(wc -l < "$REQUIREMENTS") requirements -> $REQUIREMENTS"

if [[ -n ${TARGET_PYTHON:-} ]]; then
    binary_for_target=(--only-binary=:all: --python-version "$TARGET_PYTHON" --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64)
    "$VENV_PYTHON" -m pip download --no-deps "${binary_for_target[@]}" -r "$REQUIREMENTS" -d "$WHEELS_DIR"
    "$VENV_PYTHON" -m pip download --no-deps "${binary_for_target[@]}" "setuptools>=68" -d "$WHEELS_DIR"
else
    # pip wheel: downloads the published wheels, builds one for anything published only as source.
    "$VENV_PYTHON" -m pip wheel --no-deps -r "$REQUIREMENTS" -w "$WHEELS_DIR"
    "$VENV_PYTHON" -m pip download --no-deps "setuptools>=68" -d "$WHEELS_DIR"
fi
echo "wheelhouse $WHEELS_DIR: $(find "$WHEELS_DIR" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS_DIR" | cut -f1)"
