"""A perceptual hash of a photo, cut into blocks for an exact-match index (multi-index hashing).

The hash is a DCT pHash of a grey downscale: the low frequencies of the whole picture, each bit saying
whether one coefficient is above their median. A JPEG re-encode, a flipped low bit or a mild resize moves
few of them; a crop or a large edit moves many (measured in tests/test_training_dedupe.py). Split into
`blocks` parts, two hashes within Hamming distance < `blocks` share at least one part exactly (pigeonhole),
so a match is one exact lookup per part. No Django here: governance keys the parts, webplatform stores them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PHashParams:
    side: int = 64  # the grey downscale the DCT reads
    low: int = 16  # the low-frequency square kept: low * low bits
    blocks: int = 8  # parts of the index: any two hashes fewer than `blocks` bits apart share one
    min_spread: float = 4.0  # the AC coefficients' median deviation below this: too flat to hash (no face)


PHASH = PHashParams()


def perceptual_hash(pixels: np.ndarray, params: PHashParams = PHASH) -> np.ndarray | None:
    """The hash's low * low bits (bool), from (H, W) or (H, W, 3) uint8 RGB pixels; None for an image too
    flat to hash (a plain colour, where every bit would be a tie)."""
    grey = pixels if pixels.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey.astype(np.float32), (params.side, params.side), interpolation=cv2.INTER_AREA)
    coefficients = cv2.dct(small)[:params.low, :params.low].ravel()
    ac = coefficients[1:]  # the DC term is the mean brightness: it says nothing of the picture's shape
    median = float(np.median(ac))
    if float(np.median(np.abs(ac - median))) < params.min_spread:  # ties everywhere: the bits are noise
        return None
    bits = coefficients > median
    bits[0] = False  # the DC's bit would only say "brighter than the median", always: fixed
    return bits


def hash_blocks(bits: np.ndarray, params: PHashParams = PHASH) -> list[bytes]:
    """The hash cut into `blocks` parts, part k holding bits k, k + blocks, ... (each part spans all the
    frequencies, so neighbouring coefficients' shared shifts spread over parts); each as packed bytes."""
    return [np.packbits(bits[k::params.blocks]).tobytes() for k in range(params.blocks)]


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a != b))
