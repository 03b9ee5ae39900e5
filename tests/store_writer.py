"""A correction-store writer in its own process, for the race tests (tests/test_store_races.py).

Run as ``python tests/store_writer.py``; it reads one JSON command per line on stdin and answers one JSON line on
stdout: ``{"op": "open", "url": URL, "blobs": DIR, "names": [...]}`` opens a store with those class names (closing
the one open before), ``{"op": "add", "image": PATH, "labels": TEXT, "author": WHO}`` adds a correction to it. The answer is ``{"ok": ...}`` or ``{"error":
<exception class>, "message": ...}``. Imports happen before the first command, so a command starts at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from yolo_retrain.store import CorrectionStore


def main() -> None:
    store: CorrectionStore | None = None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["op"] == "open":
                if store is not None:
                    store.close()
                    store = None
                store = CorrectionStore(command["url"], Path(command["blobs"]), command["names"])
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
    main()
