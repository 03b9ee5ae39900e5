"""One image of a selection's picks with the champion's boxes drawn: what a person checks at a glance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from yolo_retrain.labels import decode_image, read_image_file
from yolo_retrain.selection.choose import Pick

TILE = 160
CAPTION = 28
COLORS = [(230, 60, 60), (60, 160, 230), (80, 200, 90), (240, 180, 40), (180, 90, 220), (40, 200, 200)]


def contact_sheet(path: Path, picks: Sequence[Pick], class_names: Sequence[str], threshold: float, columns: int = 6) -> Path | None:
    """Write the sheet to ``path`` (PNG): one tile per pick, its rank and score, the champion's boxes at or above
    ``threshold`` thick, those down to half of it thin; None when there are no picks."""
    if not picks:
        return None
    columns = min(columns, len(picks))
    rows = math.ceil(len(picks) / columns)
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, pick in enumerate(picks):
        x0, y0 = (i % columns) * TILE, (i // columns) * (TILE + CAPTION)
        c = pick.candidate
        picture = decode_image(read_image_file(c.path), c.name)
        scale = TILE / max(picture.width, picture.height)  # small images enlarged too: boxes must be readable
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))
        sheet.paste(picture, (x0, y0))
        sx, sy = picture.width, picture.height
        for box in [b for b in c.boxes if b.score >= threshold / 2][:8]:  # the weakest would hide the image
            k, cx, cy, w, h = box.box
            color = COLORS[k % len(COLORS)]
            rect = [x0 + (cx - w / 2) * sx, y0 + (cy - h / 2) * sy, x0 + (cx + w / 2) * sx, y0 + (cy + h / 2) * sy]
            draw.rectangle(rect, outline=color, width=2 if box.score >= threshold else 1)
            draw.text((rect[0] + 2, rect[1] + 1), f"{class_names[k]} {box.score:.2f}", fill=color)
        draw.text((x0 + 3, y0 + TILE + 2), f"#{pick.rank} gain {pick.gain:.2f}", fill="black")
        draw.text((x0 + 3, y0 + TILE + 14), pick.why.split(";")[0][:28], fill=(90, 90, 90))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
