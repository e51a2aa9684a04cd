"""Face geometry, real photos: the detector's face, not the largest box; the mesh; masks off the backdrop."""

import hashlib
import socket

import cv2
import numpy as np
import pytest
from skimage import data

from inference.serving import assets, regions
from inference.serving.apparent_age import age_chip, estimate_age
from inference.serving.faces import (
    NoFaceFound,
    detect_faces,
    find_face,
    registered_crop,
    summarize_faces,
)
from inference.serving.landmarks import FACE_OVAL, FOREHEAD_TOP
from inference.serving.regions import make_window


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # Eileen Collins, NASA portrait: public domain, shipped by scikit-image


@pytest.fixture(scope="module")
def face(astronaut):
    return find_face(astronaut)


def test_the_astronauts_face_is_found_and_not_the_shuttle(astronaut):
    detections = detect_faces(astronaut)
    assert len(detections) == 1
    box = detections[0].box
    # Her face (measured by hand at about x178 y82 92x92); the shuttle stands right of x 350.
    assert abs(box.x - 178) < 12 and abs(box.y - 82) < 12 and 75 < box.w < 115
    assert detections[0].score > 0.8


def test_photos_without_a_face_find_none(astronaut):
    for photo in (data.coffee(), data.chelsea(), np.full((300, 400, 3), 127, np.uint8)):
        assert detect_faces(photo) == []
        with pytest.raises(NoFaceFound):
            find_face(photo)
        assert summarize_faces(photo).count == 0


def test_the_mesh_lands_on_eyes_nose_and_mouth(face):
    points = face.landmarks
    right_eye, left_eye = points[33], points[263]
    # Outer eye corners (measured by hand near x194 and x256 at y102), nose tip, lips and chin below them.
    assert 186 < right_eye[0] < 202 and 248 < left_eye[0] < 264
    assert abs(right_eye[1] - left_eye[1]) < 8 and 94 < right_eye[1] < 110
    assert points[1][1] > right_eye[1] and points[13][1] > points[1][1] and points[152][1] > points[13][1]
    assert 40 < face.eye_distance < 50


def test_a_summary_names_the_face_that_will_change(astronaut):
    summary = summarize_faces(astronaut)
    assert summary.count == 1 and summary.box is not None and summary.box.to_list()[0] > 150


def test_a_rotated_photo_still_gets_a_level_mesh(astronaut):
    tilted = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((226, 128), 20, 1.0), (512, 512),
                            borderMode=cv2.BORDER_REPLICATE)
    points = find_face(tilted).landmarks
    angle = np.degrees(np.arctan2(*(points[263] - points[33])[::-1]))
    assert -28 < angle < -12  # the eyes follow the photo's 20 degree turn
    crop = registered_crop(tilted, find_face(tilted), 128)
    assert crop.shape == (128, 128, 3)


def test_masks_cover_face_and_hair_and_exclude_the_backdrop(astronaut, face):
    window = make_window(astronaut, face)
    h, w = window.allowed.shape
    # The backdrop corners and the suit below the chin are never changed.
    assert window.allowed[:10, :10].max() == 0 and window.allowed[:10, -10:].max() == 0
    chin = window.landmarks[152]
    assert window.allowed[min(h - 1, int(chin[1] + 0.4 * window.unit)):, :].max() == 0
    # Skin inside the face oval, hair above it; eyes and lips excluded from skin.
    cheek = window.landmarks[205].astype(int)
    assert window.skin[cheek[1], cheek[0]] > 0.9
    eye = window.landmarks[159].astype(int)  # the upper lid's centre
    assert window.skin[eye[1], eye[0]] == 0
    oval = window.landmarks[FACE_OVAL]
    top, left, right = int(oval[:, 1].min()), int(oval[:, 0].min()), int(oval[:, 0].max())
    above = window.hair[max(0, top - int(0.8 * window.unit)):top, left:right]  # over the forehead: her hair
    assert above.mean() > 0.3
    assert window.hair[:, :10].max() == 0 and window.hair[:, -10:].max() == 0


def test_the_hairs_outermost_strands_change_with_the_rest(astronaut, face):
    # The feather that keeps the backdrop untouched lies outside the hair's edge, so no dark rim of
    # unchanged strands outlines greyed hair.
    window = make_window(astronaut, face)
    assert window.allowed[window.hair > 0.3].min() > 0.95


def test_a_shaded_ear_coloured_like_skin_is_not_hair(astronaut, face):
    # Given a head whose crown shows dark, colourless hair (painted over her own)
    window = make_window(astronaut, face)
    image = window.image.copy()
    top = window.landmarks[FOREHEAD_TOP]
    y1 = int(top[:, 1].min() - 0.1 * window.unit)
    x0, x1 = int(top[:, 0].min()), int(top[:, 0].max()) + 1
    image[max(0, y1 - int(0.5 * window.unit)):y1, x0:x1] = (40, 38, 37)
    cheek = window.landmarks[205].astype(int)
    skin_colour = image[cheek[1] - 2:cheek[1] + 3, cheek[0] - 2:cheek[0] + 3].reshape(-1, 3).mean(0)
    # And two patches beside the face: skin's hue in shade (an ear), and the crown's colour (hair)
    ear, strands = (10, 10), (10, 30)
    image[ear] = (skin_colour * 0.6).astype(np.uint8)
    image[strands] = (45, 42, 40)
    person = np.ones(image.shape[:2], np.float32)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    like_skin, _ = regions._skin_like(lab, window.landmarks, window.unit)
    like_crown = regions._like_crown(lab, window.landmarks, person, like_skin, window.unit)
    # Then the shaded skin is not hair-coloured, and the strands are
    assert like_crown is not None
    assert like_crown[ear] < 0.2 and like_crown[strands] > 0.8
    # And with no crown to sample (a bald head) there is no answer, so nothing is dropped for colour
    assert regions._like_crown(lab, window.landmarks, np.zeros_like(person), like_skin, window.unit) is None


def test_the_current_age_reads_a_real_face_as_an_adult(astronaut, face):
    chip = age_chip(astronaut, face)
    assert chip.shape == (64, 64, 3)
    assert 22 < estimate_age(astronaut, face) < 45  # she was 42 and looks younger; 10 or 70 would be wrong


def test_model_files_load_only_with_their_pinned_hashes(tmp_path, monkeypatch):
    for asset in assets.ALL:
        assert hashlib.sha256((assets.ASSETS / asset.name).read_bytes()).hexdigest() == asset.sha256
    tampered = tmp_path / assets.FACE_MESH.name
    tampered.write_bytes(b"not the model")
    monkeypatch.setattr(assets, "ASSETS", tmp_path)
    assets.path.cache_clear()
    try:
        with pytest.raises(assets.AssetError, match="pinned"):
            assets.path(assets.FACE_MESH)
    finally:
        assets.path.cache_clear()


def test_nothing_is_downloaded_at_run_time(astronaut, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("inference tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from inference.serving.transform import transform_photo

    assert transform_photo(astronaut, 70.0).image.shape == astronaut.shape


def test_faces_small_against_a_wide_photo_are_still_found(astronaut):
    # Three portraits side by side: letterboxed whole, each face would be 23 px of the detector's 128.
    wide = np.concatenate([astronaut, astronaut[:, ::-1], astronaut], axis=1)
    assert summarize_faces(wide).count == 3
    centres = sorted(d.box.x + d.box.w / 2 for d in detect_faces(wide))
    expected = (226, 512 + 286, 1024 + 226)  # her face centre, mirrored in the middle one
    assert len(centres) == 3 and all(abs(c - e) < 30 for c, e in zip(centres, expected, strict=True))


def test_an_upside_down_photo_counts_only_faces_the_mesh_confirms(astronaut):
    assert summarize_faces(np.ascontiguousarray(astronaut[::-1])).count <= 1


def test_a_small_face_in_a_large_photo_is_found_by_the_finer_windows(astronaut):
    # Her face is about 95 px in a 2016x1512 photo: 8 px of the detector's input when the photo is read
    # whole, 16 px in a half-size window, so only the finer tier (and its shared resize) finds it.
    canvas = np.full((1512, 2016, 3), 120, np.uint8)
    canvas[600:1112, 200:712] = astronaut
    (face,) = detect_faces(canvas)
    assert abs(face.box.x + face.box.w / 2 - (200 + 226)) < 20 and abs(face.box.y + face.box.h / 2 - 720) < 30
    assert summarize_faces(canvas).count == 1


def test_threads_load_their_nets_one_at_a_time(astronaut, monkeypatch):
    # cv2.dnn's importers race when two threads load at once (one failed with "Unsupported operator type PAD":
    # a 500 under 64 concurrent uploads). Each thread keeps its own net, and the loads take turns.
    import threading

    import inference.serving.faces as faces

    real = cv2.dnn.readNetFromTFLite
    loading, overlaps = [0], [0]
    start = threading.Barrier(4)
    guard = threading.Lock()

    def watched(path):
        with guard:
            loading[0] += 1
            overlaps[0] += loading[0] > 1
        try:
            return real(path)  # a real load takes long enough for an unguarded second thread to start one
        finally:
            with guard:
                loading[0] -= 1

    monkeypatch.setattr(cv2.dnn, "readNetFromTFLite", watched)
    nets: list[object] = []

    def fresh_thread() -> None:
        start.wait()
        nets.append(faces._net(assets.FACE_DETECTOR))

    threads = [threading.Thread(target=fresh_thread) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(nets) == 4 and len({id(n) for n in nets}) == 4  # one net per thread, none shared
    assert overlaps[0] == 0
