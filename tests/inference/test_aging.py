"""The aging on a real photo: lines where faces form them, gone for younger targets, nothing else touched."""

import dataclasses

import cv2
import numpy as np
import pytest
from skimage import data

from inference.serving.aging import AgeLook, Change, age_window
from inference.serving.faces import find_face
from inference.serving.landmarks import BROW_TOP, FOREHEAD_TOP
from inference.serving.regions import make_window
from inference.serving.transform import transform_photo


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def face(astronaut):
    return find_face(astronaut)


@pytest.fixture(scope="module")
def close_up(astronaut) -> np.ndarray:
    """Twice the size: her forehead, mostly under her fringe, gets enough pixels to measure lines on."""
    return cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def close_face(close_up):
    return find_face(close_up)


@pytest.fixture(scope="module")
def forehead_skin(close_up, close_face) -> np.ndarray:
    """The close-up's skin mask in photo pixels: her fringe is hair, and greying keeps its strands."""
    window = make_window(close_up, close_face)
    skin = np.zeros(close_up.shape[:2], np.float32)
    skin[window.y0:window.y1, window.x0:window.x1] = cv2.resize(
        window.skin, (window.x1 - window.x0, window.y1 - window.y0))
    return skin


def forehead_line_energy(image: np.ndarray, face, skin: np.ndarray) -> float:
    """Mean magnitude of fine horizontal structure (vertical second derivative) on the bare forehead: between
    the brows and the top of the forehead, weighted by the skin mask."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lines = np.abs(cv2.Sobel(cv2.GaussianBlur(gray, (0, 0), 0.8), cv2.CV_32F, 0, 2, ksize=3))
    brow, top = face.landmarks[BROW_TOP], face.landmarks[FOREHEAD_TOP]
    x0, x1 = int(brow[2][0]), int(brow[-3][0])  # between the brows' middles
    y0, y1 = int(top[:, 1].mean()) + 3, int(brow[:, 1].min()) - 3
    weight = skin[y0:y1, x0:x1]
    assert x1 - x0 > 10 and y1 - y0 > 5 and weight.sum() > 50, "the forehead must show some bare skin"
    return float((lines[y0:y1, x0:x1] * weight).sum() / weight.sum())


def test_an_older_target_adds_lines_on_the_forehead(close_up, close_face, forehead_skin):
    before = forehead_line_energy(close_up, close_face, forehead_skin)
    older = transform_photo(close_up, 80.0, face=close_face, current_age=31.0).image
    assert forehead_line_energy(older, close_face, forehead_skin) > 1.3 * before


def test_a_younger_target_removes_lines_from_the_forehead(close_up, close_face, forehead_skin):
    face, skin = close_face, forehead_skin
    aged = transform_photo(close_up, 80.0, face=face, current_age=31.0).image  # a face with lines to lose
    lined = forehead_line_energy(aged, face, skin)
    younger = transform_photo(aged, 25.0, face=face, current_age=75.0).image
    assert forehead_line_energy(younger, face, skin) < 0.8 * lined
    teen = transform_photo(close_up, 15.0, face=face, current_age=31.0).image
    assert forehead_line_energy(teen, face, skin) < forehead_line_energy(close_up, face, skin)


def test_pixels_outside_the_face_and_hair_mask_come_back_bit_identical(astronaut, face):
    window = make_window(astronaut, face)
    for target in (15.0, 85.0):
        out = transform_photo(astronaut, target, face=face, current_age=31.0).image
        outside = np.ones(astronaut.shape[:2], bool)
        outside[window.y0:window.y1, window.x0:window.x1] = window.allowed == 0
        assert np.array_equal(out[outside], astronaut[outside])
        assert np.abs(out.astype(int) - astronaut).sum() > 0


def test_the_same_age_changes_nothing(astronaut, face):
    assert np.array_equal(transform_photo(astronaut, 31.0, face=face, current_age=31.0).image, astronaut)


def test_a_large_photo_is_changed_at_its_own_resolution(astronaut):
    large = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    result = transform_photo(large, 80.0, current_age=31.0)
    assert result.image.shape == large.shape
    window = make_window(large, result.face)
    assert window.scale < 1.0  # worked at a smaller scale, the change brought back up
    assert np.array_equal(result.image[:, :500], large[:, :500])  # the flag, far left, untouched
    assert np.abs(result.image.astype(int) - large).sum() > 0


def test_results_are_reproducible(astronaut, face):
    first = transform_photo(astronaut, 70.0, face=face).image
    assert np.array_equal(first, transform_photo(astronaut, 70.0, face=face).image)


def test_how_much_changes_follows_the_distance_between_ages():
    assert Change.between(30, 30).add == AgeLook(0, 0, 0, 0, 0)
    assert Change.between(30, 80).add.lines > Change.between(30, 50).add.lines > 0
    assert Change.between(70, 75).add.lines < Change.between(30, 75).add.lines
    young = Change.between(75, 25)
    assert young.remove.grey > 0.5 and young.youth == 1.0 and young.add == AgeLook(0, 0, 0, 0, 0)
    assert Change.between(31, 15).childlike > 0 and Change.between(31, 25).childlike == 0
    # Grey comes out by share: a 46-year-old keeps none of it at 20, a 70-year-old some of it at 55
    assert Change.between(46, 20).ungrey == 1.0 and 0 < Change.between(70, 55).ungrey < 1.0


def test_the_generator_is_taught_by_the_layers_at_ages_around_the_current_one(astronaut, face):
    from inference.generator.teacher import teacher_pairs

    x, renders, ages = teacher_pairs(astronaut, face, 31.0, 64)
    assert x.shape == (64, 64, 3) and renders.shape == (4, 64, 64, 3) and x.dtype == renders.dtype == np.uint8
    assert ages.tolist() == [5.0, 16.0, 46.0, 61.0]  # 31 - 30 is clipped to 5 years
    assert all(np.abs(r.astype(int) - x).mean() > 0.2 for r in renders)  # each target changes the face


def test_a_younger_target_takes_the_grey_out_of_salt_and_pepper_hair(astronaut, face):
    # Given her hair painted salt and pepper: black strands and grey ones, a little greyer than the curve
    # expects at 46 (mostly dark, so not "grey hair" to be turned brown)
    window = make_window(astronaut, face)
    hair = window.hair > 0.9
    painted = window.image.copy()
    stripes = (np.arange(painted.shape[1]) // 2 % 3 == 0)[None, :] & hair
    painted[hair] = (30, 30, 32)
    painted[stripes] = (150, 150, 152)
    younger = age_window(dataclasses.replace(window, image=painted), 46.0, 20.0)
    # Then the grey strands take the dark ones' shade, and the dark ones stay dark
    grey_before, grey_after = painted[stripes].mean(), younger[stripes].mean()
    assert grey_after < grey_before - 70
    assert abs(younger[hair & ~stripes].mean() - painted[hair & ~stripes].mean()) < 10
