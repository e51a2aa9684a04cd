"""Faces: detection, the no-face failure, alignment, and a paste-back that leaves the rest of the photo alone."""

import cv2
import numpy as np
import pytest

from inference.faces import (
    NoFaceFound,
    crop_face,
    detect_faces,
    feather_mask,
    largest_face,
    locate_eyes,
    transform_photo,
)
from inference.synthetic import Identity, backdrop, place_in_photo, render


def invert(face: np.ndarray, age: float) -> np.ndarray:
    """A stand-in generator that changes every pixel of the crop."""
    return 255 - face


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    return place_in_photo(Identity.from_seed(11), 35.0, photo_size=(480, 640), face_size=200, center=(300, 230))


def test_a_photo_without_a_face_raises_no_face():
    with pytest.raises(NoFaceFound) as caught:
        transform_photo(backdrop(240, 320, seed=1), 60.0, invert)
    assert caught.value.reason == "no_face"


def test_the_largest_face_is_taken(photo):
    image, _ = photo
    small_face = render(Identity.from_seed(12), 50.0, 110)
    image = image.copy()
    image[350:460, 500:610] = small_face
    boxes = detect_faces(image)
    assert len(boxes) >= 2
    box = largest_face(image)
    assert box == boxes[0] and 150 < box.x + box.w / 2 < 450


def test_transform_changes_the_face_and_leaves_far_pixels_bit_identical(photo):
    image, (x, y, w, h) = photo
    out = transform_photo(image, 70.0, invert)
    assert out.shape == image.shape and out.dtype == np.uint8
    cx, cy = x + w // 2, y + h // 2
    assert np.abs(out[cy - 20:cy + 20, cx - 20:cx + 20].astype(int) - image[cy - 20:cy + 20, cx - 20:cx + 20]).mean() > 50
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    far = np.maximum(np.abs(xx - cx), np.abs(yy - cy)) > w  # beyond the crop, whatever the alignment did
    assert np.array_equal(out[far], image[far])
    assert not np.shares_memory(out, image)


def test_a_generator_that_changes_nothing_changes_nothing(photo):
    image, _ = photo
    assert np.array_equal(transform_photo(image, 40.0, lambda face, age: face.copy()), image)


def test_the_feathered_mask_fades_to_zero_at_the_crop_border():
    mask = feather_mask(128)
    assert mask[64, 64] > 0.99 and mask.max() <= 1.0
    assert mask[0].max() == mask[-1].max() == mask[:, 0].max() == mask[:, -1].max() == 0


def test_crop_is_framed_like_the_training_faces(photo):
    image, (x, y, w, h) = photo
    crop = crop_face(image, largest_face(image), 128)
    assert crop.image.shape == (128, 128, 3)
    truth = render(Identity.from_seed(11), 35.0, 128,
                   background=cv2.resize(image[y:y + h, x:x + w], (128, 128), interpolation=cv2.INTER_AREA))
    assert np.abs(crop.image.astype(float) - truth).mean() < 20


def test_a_tilted_face_is_levelled_by_its_eyes(photo):
    image, _ = photo
    tilted = cv2.warpAffine(image, cv2.getRotationMatrix2D((300, 230), 12, 1.0), (640, 480),
                            borderMode=cv2.BORDER_REFLECT)
    eyes = locate_eyes(tilted, largest_face(tilted))
    assert eyes is not None
    (lx, ly), (rx, ry) = eyes
    assert -18 < np.degrees(np.arctan2(ry - ly, rx - lx)) < -6  # rotated 12 degrees counter-clockwise
    level = crop_face(tilted, largest_face(tilted), 128)
    (lx, ly), (rx, ry) = cv2.transform(np.array([[eyes[0], eyes[1]]], np.float32), level.matrix)[0]
    assert abs(ry - ly) < 1.0 and abs(lx - rx) > 20


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        transform_photo(np.zeros((64, 64), np.uint8), 30.0, invert)
    with pytest.raises(ValueError):
        transform_photo(np.zeros((64, 64, 3), np.float32), 30.0, invert)


def test_a_large_photo_is_searched_downscaled_and_pasted_at_full_size(photo):
    image, (x, y, w, h) = photo
    large = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)  # 2560 x 1920
    box = largest_face(large)
    assert abs(box.x + box.w / 2 - 4 * (x + w / 2)) < 4 * w / 4 and box.w > 4 * w / 3
    out = transform_photo(large, 70.0, invert)
    assert out.shape == large.shape and np.array_equal(out[:200], large[:200])
