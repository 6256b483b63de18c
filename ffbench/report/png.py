"""A heatmap as an inline PNG (data: URI) without an imaging library.

Attention maps have a few thousand cells; as SVG rectangles they would weigh hundreds of kB per
read, as a PNG a few kB. The browser scales the image up with ``image-rendering: pixelated``.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_rgb(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(h))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def heatmap_data_uri(values: np.ndarray, gamma: float = 0.5) -> str:
    """White (0) to deep blue (1) after a gamma that lifts small attention weights into view."""
    v = np.clip(np.nan_to_num(values.astype(np.float64)), 0.0, 1.0) ** gamma
    lo, hi = np.array([255, 255, 255], float), np.array([8, 48, 107], float)
    rgb = (lo + (hi - lo) * v[..., None]).round().astype(np.uint8)
    return "data:image/png;base64," + base64.b64encode(encode_rgb(rgb)).decode("ascii")
