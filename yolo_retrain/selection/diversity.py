"""Near-duplicates: a 64-bit difference hash (dHash) per image, compared by Hamming distance.

dHash: the image in grey, 9x8 pixels; each bit says whether a pixel is brighter than its right neighbour. The same
scene re-encoded, resized or slightly shifted keeps almost every bit (a few bits of 64); different scenes differ
in about half. It costs one resize of the already decoded image (see docs/benchmarks.md, selection cost).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def dhash(image: Image.Image) -> int:
    """The 64-bit difference hash of ``image``."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    """Bits in which two hashes differ."""
    return (a ^ b).bit_count()


def near_duplicate(candidate: int, chosen: list[int], max_bits: int) -> int | None:
    """The index of the first chosen hash within ``max_bits`` of ``candidate``; None if it is new."""
    return next((i for i, h in enumerate(chosen) if hamming(candidate, h) <= max_bits), None)
