"""The procedural faces: seeded, drawn like faces, and aging the way people do."""

import itertools

import cv2
import numpy as np
import pytest

from inference.generator.synthetic import AgeSigns, Identity, make_dataset, place_in_photo, render

AGES = [3.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0]


def test_same_seed_same_face_and_different_seeds_differ():
    a, b = render(Identity.from_seed(7), 40.0), render(Identity.from_seed(7), 40.0)
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - render(Identity.from_seed(8), 40.0)).mean() > 5


def test_dataset_is_deterministic_per_seed():
    one, two = make_dataset(3, [20.0, 60.0], seed=5, size=64), make_dataset(3, [20.0, 60.0], seed=5, size=64)
    assert one.images.shape == (3, 2, 64, 64, 3)
    assert np.array_equal(one.images, two.images) and one.identities == two.identities


@pytest.mark.parametrize("seed", range(20))
def test_age_signs_are_monotonic(seed):
    identity = Identity.from_seed(seed)
    signs = [AgeSigns.at(identity, a) for a in np.linspace(1, 100, 60)]
    for field in ("grey", "recession", "wrinkles", "sag", "spots"):
        values = [getattr(s, field) for s in signs]
        assert values == sorted(values), field
    youth = [s.youth for s in signs]
    assert youth == sorted(youth, reverse=True) and youth[0] > 0.9 and youth[-1] == 0


def hair_colourfulness(image: np.ndarray, identity: Identity) -> float:
    """Mean saturation of the hair above the forehead: grey hair has none."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(float)
    return hsv[14:30, 44:84, 1].mean()


def forehead_line_energy(image: np.ndarray) -> float:
    """Vertical high-frequency energy in the forehead band, where the lines run horizontally."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(float)
    band = gray[34:48, 48:80]
    return float(np.abs(np.diff(band, axis=0)).mean())


def test_visible_signs_grow_with_age_in_the_pixels():
    # Given identities whose hair is coloured and not fully receded,
    ids = [
        i
        for i in map(Identity.from_seed, range(40))
        if max(i.hair) - min(i.hair) > 0.15 and i.recession < 0.6
    ]
    assert len(ids) >= 6
    # when rendered young, middle-aged and old,
    young, middle, old = ([render(i, a) for i in ids] for a in (20.0, 55.0, 90.0))
    # then hair loses colour and the forehead gains lines, on average and for most identities.
    sat = np.array(
        [
            [hair_colourfulness(img, i) for img, i in zip(row, ids, strict=True)]
            for row in (young, middle, old)
        ]
    )
    assert sat[0].mean() > sat[1].mean() > sat[2].mean()
    assert (sat[0] > sat[2]).mean() >= 0.8
    lines = np.array([[forehead_line_energy(img) for img in row] for row in (young, middle, old)])
    assert lines[0].mean() < lines[1].mean() < lines[2].mean()


def test_the_face_changes_smoothly_with_age():
    identity = Identity.from_seed(3)
    frames = [render(identity, a).astype(float) for a in np.arange(20.0, 80.0, 1.0)]
    steps = [np.abs(b - a).mean() for a, b in itertools.pairwise(frames)]
    assert max(steps) < 3.0  # no jumps between consecutive years


def test_the_real_face_detector_sees_the_rendered_faces_in_photos():
    # The platform's tests stand synthetic faces in for people: BlazeFace and the mesh must accept them.
    from inference.serving.faces import NoFaceFound, find_face

    hits = 0
    for k in range(20):
        photo, (x, y, w, h) = place_in_photo(Identity.from_seed(500 + k), AGES[k % len(AGES)], seed=k,
                                             face_size=120 + 30 * (k % 4), center=(220 + 4 * k, 240))
        try:
            box = find_face(photo).detection.box
        except NoFaceFound:
            continue
        hits += x < box.x + box.w / 2 < x + w and y < box.y + box.h / 2 < y + h
    assert hits / 20 >= 0.8
