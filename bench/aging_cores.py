"""How the `aging` queue scales with cores: photos aged per second by P worker processes, each aging one photo
at a time with OpenCV's thread pool at T threads, against one process at one thread measured in the same run.

    .venv/bin/python bench/aging_cores.py [--seconds 10] [--processes 1,2] [--threads 1,0]

Each process is what one child of `celery -A webplatform worker -Q aging` runs for a job: the aging layers
(inference/serving/transform.py, OpenCV and numpy on the CPU) on the tests' 360x480 synthetic face photo.
T=0 is OpenCV's default pool (one thread per CPU; the table shows the count a process had); T=1 is what
deploy/systemd/timeveil-worker-aging.service sets (OPENCV_FOR_THREADS_NUM=1). The processes warm up, then
age photos back to back for --seconds together.
Not a test; on a shared machine the figures move with the other load.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

# Each spawned process imports these afresh, after its OPENCV_FOR_THREADS_NUM is set.
from inference.serving.transform import transform_photo  # noqa: E402
from tests.images import face_jpeg  # noqa: E402

TARGET_AGE = 75.0


def _age_back_to_back(photo: bytes, seconds: float, ready: Barrier, counts: mp.Queue) -> None:
    """One worker process: warm up, wait for the others, then age `photo` until `seconds` pass."""
    image = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    transform_photo(image, TARGET_AGE)  # loads the nets: a worker does this once, before its first job
    ready.wait()
    start = time.perf_counter()
    aged = 0
    while time.perf_counter() - start < seconds:
        transform_photo(image, TARGET_AGE)
        aged += 1
    counts.put((aged, time.perf_counter() - start, cv2.getNumThreads()))


def measure(photo: bytes, processes: int, threads: int, seconds: float) -> tuple[float, float, int]:
    """(photos/s over all processes, mean seconds a photo in one process, OpenCV's threads as a process saw
    them) for P processes at T threads."""
    context = mp.get_context("spawn")  # a fresh interpreter each, started with the thread setting it reads
    os.environ["OPENCV_FOR_THREADS_NUM"] = str(threads)
    ready, counts = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_age_back_to_back, args=(photo, seconds, ready, counts))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    results = [counts.get() for _ in workers]
    for worker in workers:
        worker.join()
    rate = sum(aged / elapsed for aged, elapsed, _ in results)
    per_photo = sum(elapsed / aged for aged, elapsed, _ in results) / len(results)
    return rate, per_photo, results[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per configuration")
    parser.add_argument("--processes", default=f"1,{os.cpu_count() or 1}", help="worker processes to try")
    parser.add_argument("--threads", default="1,0", help="OpenCV threads per process (0: OpenCV's default)")
    args = parser.parse_args()
    photo = face_jpeg()
    print(f"{os.cpu_count()} CPUs; {args.seconds:.0f} s per configuration; the 360x480 test photo to 75\n")
    baseline, _, _ = measure(photo, 1, 1, args.seconds)
    print(f"{'processes':>9}  {'threads':>7}  {'photos/s':>8}  {'s/photo':>7}  {'vs 1x1':>6}")
    for processes in (int(p) for p in args.processes.split(",")):
        for threads in (int(t) for t in args.threads.split(",")):
            rate, per_photo, seen = measure(photo, processes, threads, args.seconds)
            print(f"{processes:>9}  {seen:>7}  {rate:>8.2f}  {per_photo:>7.3f}  {rate / baseline:>5.2f}x")


if __name__ == "__main__":
    main()
