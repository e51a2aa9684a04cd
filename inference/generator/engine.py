"""A thread-safe batching engine: callers submit faces and get futures; one worker runs them in batches."""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from inference.generator.model import AgeGenerator, to_images, to_tensor


def best_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class _Request:
    face: np.ndarray  # (S, S, 3) uint8, already at the model's size
    age: float
    shape: tuple[int, int]  # the caller's (H, W), to resize the result back to
    future: Future[np.ndarray]


class BatchingEngine:
    """Run an AgeGenerator for many threads at once, grouping their requests into batches.

    A worker thread takes the first waiting request, waits at most `max_wait_ms` for more (up to
    `max_batch_size`), and runs them together: on CUDA with bf16 autocast and channels_last (and
    torch.compile if `compile`, in `compile_mode` such as "max-autotune"), else on the CPU in float32.
    Resizing happens in the callers' threads, off the worker's critical path. Errors reach the callers
    through their futures. The model is moved to the device in place.
    """

    def __init__(
        self,
        model: AgeGenerator,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        device: str | torch.device | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        channels_last: bool | None = None,
    ) -> None:
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0")
        self.device = torch.device(device) if device is not None else best_device()
        self.cuda = self.device.type == "cuda"
        self.size = model.config.image_size
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.channels_last = self.cuda if channels_last is None else channels_last
        model = model.to(self.device).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it
        self.model = torch.compile(model, mode=compile_mode) if compile else model
        # A compiled model specialises on batch size: pad batches to powers of two so a few shapes cover all.
        self.buckets = compile
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        # Warm up on the worker thread itself: compiled graphs and CUDA state are best used where made.
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._worker = threading.Thread(target=self._loop, name="timeveil-batching-engine", daemon=True)
        self._worker.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise RuntimeError("the batching engine failed to warm up") from self._startup_error

    @property
    def image_size(self) -> int:
        """Side of the square face crop the model takes."""
        return self.size

    def _padded(self, n: int) -> int:
        return min(self.max_batch_size, 2 ** math.ceil(math.log2(n))) if self.buckets else n

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """Run the model on a batch (B, 3, S, S) in [-1, 1] with ages (B,): float32 (B, 3, S, S) on CPU."""
        n = x.shape[0]
        pad = self._padded(n) - n
        if pad:
            x, ages = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)]), torch.cat([ages, ages[-1:].expand(pad)])
        if self.cuda:
            x, ages = x.pin_memory(), ages.pin_memory()
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            out = self.model(x, ages.to(self.device, non_blocking=True))
        return out[:n].float().cpu()

    def warmup(self) -> None:
        """Run every batch shape the worker will use once, so the first callers do not pay for it."""
        sizes = sorted({self._padded(n) for n in range(1, self.max_batch_size + 1)}) if self.buckets else [1]
        for n in sizes:
            self.infer(torch.zeros(n, 3, self.size, self.size), torch.full((n,), 40.0))

    def submit(self, face: np.ndarray, target_age: float) -> Future[np.ndarray]:
        """Queue a face (H, W, 3) uint8 RGB for `target_age` years; the future yields the same shape."""
        if not (
            isinstance(face, np.ndarray) and face.dtype == np.uint8 and face.ndim == 3 and face.shape[2] == 3
        ):
            raise ValueError("expected a face as a uint8 RGB array of shape (H, W, 3)")
        if not math.isfinite(target_age):
            raise ValueError(f"target_age must be a finite number of years, got {target_age!r}")
        shape = (face.shape[0], face.shape[1])
        if shape != (self.size, self.size):
            face = cv2.resize(face, (self.size, self.size), interpolation=cv2.INTER_AREA)
        request = _Request(face=face, age=float(target_age), shape=shape, future=Future())
        with self._lock:
            if self._closed:
                raise RuntimeError("the batching engine is closed")
            self._queue.put(request)
        return request.future

    def run_one(self, face: np.ndarray, target_age: float) -> np.ndarray:
        """Submit one face and wait for it: the `run` callable faces.transform_photo takes."""
        return self.submit(face, target_age).result()

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """The first request plus whatever arrives within max_wait; also whether close() was called."""
        batch, deadline = [first], time.monotonic() + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, batch: list[_Request]) -> None:
        """Run one batch and resolve its futures (cancelled ones are skipped)."""
        batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            out = to_images(self.infer(to_tensor(np.stack([r.face for r in batch])),
                                       torch.tensor([r.age for r in batch], dtype=torch.float32)))
        except Exception as exc:  # every caller in the batch learns why, the worker carries on
            for r in batch:
                r.future.set_exception(exc)
            return
        for r, image in zip(batch, out, strict=True):
            if r.shape != (self.size, self.size):
                image = cv2.resize(image, (r.shape[1], r.shape[0]), interpolation=cv2.INTER_LINEAR)
            r.future.set_result(image)

    def _loop(self) -> None:
        try:
            self.warmup()
        except BaseException as exc:  # handed to the constructor, which raises it
            self._startup_error = exc
            return
        finally:
            self._ready.set()
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._collect(first)
            self._run(batch)
            if stopping:
                return

    def close(self) -> None:
        """Finish what was submitted, then stop the worker; later submits raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._worker.join()

    def __enter__(self) -> BatchingEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
