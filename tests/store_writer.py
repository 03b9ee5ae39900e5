"""A correction-store writer in its own process, for the race tests (tests/test_store_races.py).

Run as ``python tests/store_writer.py URL BLOBS_DIR``; it reads one JSON command per line on stdin and answers one
JSON line on stdout: ``{"op": "open", "names": [...]}`` opens the store with those class names, ``{"op": "add",
"image": PATH, "labels": TEXT, "author": WHO}`` adds a correction. The answer is ``{"ok": ...}`` or ``{"error":
<exception class>, "message": ...}``. Imports happen before the first command, so a command starts at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from yolo_retrain.store import CorrectionStore


def main(url: str, blobs: str) -> None:
    store: CorrectionStore | None = None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["op"] == "open":
                store = CorrectionStore(url, Path(blobs), command["names"])
                answer = {"ok": store.class_names}
            else:
                assert store is not None, "open the store first"
                image = Path(command["image"])
                answer = {"ok": store.add(image, command["labels"], author=command.get("author")).id}
        except Exception as exc:  # noqa: BLE001 — the test reads which error it was
            answer = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(answer), flush=True)
    if store is not None:
        store.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
