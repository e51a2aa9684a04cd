"""The aging layers' exact output, pinned: a refactor of the layers must not move a single pixel.

Each case runs the serving transform (or the aging of one window) on a real photo and compares a SHA-256 of
the result with the digest recorded before the refactor. A change meant to alter the look records new digests
(`python -m tests.inference.test_aging_golden`) and bumps `aging.VERSION`, since stored results name it.
Float results depend on the libraries' builds, so the digests hold for the versions in PINNED only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from skimage import data

from inference.generator.synthetic import Identity, place_in_photo
from inference.serving.aging import age_window
from inference.serving.faces import find_face
from inference.serving.regions import make_window
from inference.serving.transform import transform_photo

PINNED = {"numpy": np.__version__ == "2.4.6", "opencv": cv2.__version__ == "4.14.0"}


def _astronaut() -> np.ndarray:
    return data.astronaut()


def _cameraman() -> np.ndarray:
    return np.stack([data.camera()] * 3, axis=-1)  # greyscale, a face in three-quarter view


def _synthetic() -> np.ndarray:
    return place_in_photo(Identity.from_seed(4), 30, photo_size=(360, 480), face_size=200, seed=4)[0]


def _scaled(side: int) -> Callable[[], np.ndarray]:
    return lambda: cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)


def _transform(photo: Callable[[], np.ndarray], target: float, current: float | None = None
               ) -> Callable[[], np.ndarray]:
    return lambda: transform_photo(photo(), target, current_age=current).image


def _back_from(older: float, target: float) -> Callable[[], np.ndarray]:
    """The astronaut aged to `older`, then taken back to `target`: grey hair, lines and sag to remove."""
    def run() -> np.ndarray:
        aged = transform_photo(data.astronaut(), older, current_age=31.0).image
        return transform_photo(aged, target, current_age=older - 5.0).image
    return run


def _painted_hair(colours: tuple[tuple[int, int, int], tuple[int, int, int]], current: float, target: float
                  ) -> Callable[[], np.ndarray]:
    """One window's aging, the astronaut's hair painted in stripes of two colours (grey, salt and pepper)."""
    def run() -> np.ndarray:
        photo = data.astronaut()
        window = make_window(photo, find_face(photo))
        hair = window.hair > 0.9
        painted = window.image.copy()
        stripes = (np.arange(painted.shape[1]) // 2 % 3 == 0)[None, :] & hair
        painted[hair], painted[stripes] = colours
        return age_window(dataclasses.replace(window, image=painted), current, target)
    return run


CASES: dict[str, Callable[[], np.ndarray]] = {
    **{f"astronaut-{age}": _transform(_astronaut, age) for age in (10, 30, 55, 75, 90)},
    **{f"cameraman-{age}": _transform(_cameraman, age) for age in (10, 30, 55, 75, 90)},
    **{f"synthetic-{age}": _transform(_synthetic, age) for age in (10, 55, 90)},
    "close-up-15": _transform(_scaled(1024), 15, 31.0),
    "close-up-80": _transform(_scaled(1024), 80, 31.0),
    "large-75": _transform(_scaled(2048), 75, 31.0),
    "back-from-85-to-25": _back_from(85.0, 25.0),
    "grey-hair-70-to-25": _painted_hair(((170, 170, 172), (185, 185, 186)), 70.0, 25.0),
    "salt-and-pepper-46-to-20": _painted_hair(((30, 30, 32), (150, 150, 152)), 46.0, 20.0),
}

# Recorded on the layers as they stood before the parameters were named (commit a2e57b2).
DIGESTS = {
    'astronaut-10': '658ce0a25f6118c6e1cd42dd41dd05bf93d0b2a8f3ce9fdb1249ad676a6087d4',
    'astronaut-30': '717ab7065866bc8cf78666aeed551614510c69e8f6ec421a85a36a38960c8b19',
    'astronaut-55': 'b4bcc35726b370b27de1f64125c268852e104aaec1e5f9114298a40bb26a63c1',
    'astronaut-75': '88c57d22b637b0f95fe351dcf54bf602ef36106e3ce8dc66bda2f25164b76c40',
    'astronaut-90': '719277db7382f4ba1fa1b4452aba52b95e5c41c1cc431b55907ecdf3499e4d1d',
    'back-from-85-to-25': 'c18d906ae6028c4d6b72ea4110ace67edc8168d2e50ad300e6355cad71285232',
    'cameraman-10': 'a38acac0e44c48bb144e71aa64b6931e3f9ddb5b07ffa569d952239bea59f1df',
    'cameraman-30': 'fc18021b69202ee1d336d28668d3f54e500e5a39fe8f3a8911d5edd601504ee4',
    'cameraman-55': '731011ddbd40da9bb843e6d1ab6288cfe1b12f991d00f06e4efcd4e6da037ea2',
    'cameraman-75': 'ee2fe14361fb845a8b5e5d2125264142e5c439df5a9f5f80d7358a79322ebab5',
    'cameraman-90': 'd3dac77f444aac2b99c801df125c84e50509da46ab9431e2a4d4f4a32511e0b7',
    'close-up-15': '9bd614eee37f42bff2f52994cd95feadd5f8d04e3f744bf131b312cddb9a1ea3',
    'close-up-80': '3de8c629a87e59a5b530588f9de9d4aa64f86f2cf4b7f9556527c247ceb3a371',
    'grey-hair-70-to-25': 'f31bb7586a4d3594eda91b126a371c580fd8b5e93d3f2c8b3adf11f330ddb3fc',
    'large-75': 'f33f2e02c6d56e92c25b4bace50183636e6c3da395ae80da85c9b93e5ac1be6b',
    'salt-and-pepper-46-to-20': '77024b5bfefb85c7fb461fa92e2b046d8f6dc5ac23c3ee86b95c7d24ac9610ea',
    'synthetic-10': '36f610acdd591ac18a8388b19a42b2b6a4821daa463fbbf38fb298302ba5b41d',
    'synthetic-55': 'dbf35a11fd19c96958293163a90088b152fa25cc045f90d9de09a6dbe5d00ab5',
    'synthetic-90': '0755473a02b90d2f827c866f1adcad6e7edd32e76376ae6ff4c90f077a8a8d81',
}


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.mark.skipif(not all(PINNED.values()), reason=f"digests recorded with other library builds: {PINNED}")
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_aging_layers_output_is_unchanged(case):
    assert _digest(CASES[case]()) == DIGESTS[case]


if __name__ == "__main__":  # print the digests to record
    for name in sorted(CASES):
        print(f"    {name!r}: {_digest(CASES[name]())!r},")
