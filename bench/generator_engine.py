"""The learned generator's speed: faces/s and latency per batch size and device path, its batching engine
under load, CUDA MFU.

    python bench/generator_engine.py --preset small   # CPU: fp32 eager
    python bench/generator_engine.py --preset base    # on a GPU also fp32, bf16, bf16 + torch.compile

The generator (inference/generator/) is trained only; it does not serve. Jobs run the aging layers
(inference/serving/, OpenCV and numpy on the CPU), which bench/quality.py times. This measures what serving
the generator would cost if a trained one ever beats those layers (docs/aging.md).

Prints tables; not a test. Speed does not depend on the weights, so a freshly initialised model is measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for `import inference`

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from inference.generator.engine import BatchingEngine  # noqa: E402
from inference.generator.model import AgeGenerator, GeneratorConfig  # noqa: E402

BATCH_SIZES = (1, 8, 32, 128)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(
    fn: Callable[[], object], device: torch.device, min_seconds: float, min_iters: int = 3
) -> list[float]:
    """Per-call wall times (s) of `fn` after one warm-up, for at least `min_seconds` and `min_iters` calls."""
    fn()
    sync(device)
    times: list[float] = []
    while len(times) < min_iters or sum(times) < min_seconds:
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@torch.inference_mode()
def forward(run: Callable[..., torch.Tensor], x: torch.Tensor, ages: torch.Tensor,
            dtype: torch.dtype | None) -> torch.Tensor:
    """One forward pass, under autocast to `dtype` if given."""
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        return run(x, ages)


def device_paths(config: GeneratorConfig) -> list[tuple[str, torch.device, torch.dtype | None, bool, bool]]:
    """(name, device, autocast dtype, channels_last, compile) for every path this machine has."""
    paths: list[tuple[str, torch.device, torch.dtype | None, bool, bool]] = [
        ("cpu fp32", torch.device("cpu"), None, False, False)]
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        paths += [("cuda fp32", cuda, None, False, False), ("cuda bf16", cuda, torch.bfloat16, False, False),
                  ("cuda bf16 channels_last", cuda, torch.bfloat16, True, False),
                  ("cuda bf16 compile", cuda, torch.bfloat16, False, True)]
    return paths


def bench_batches(config: GeneratorConfig, min_seconds: float) -> list[dict[str, Any]]:
    """Raw model throughput and latency per device path and batch size."""
    rows = []
    for name, device, dtype, channels_last, compile_ in device_paths(config):
        model = AgeGenerator(config).to(device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        run = torch.compile(model) if compile_ else model
        for bs in BATCH_SIZES:
            if device.type == "cpu" and bs * config.image_size**2 > 128 * 128 * 128:
                continue  # a 256x256 batch of 128 takes minutes on a CPU and says nothing new
            x = torch.rand(bs, 3, config.image_size, config.image_size, device=device) * 2 - 1
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            ages = torch.full((bs,), 60.0, device=device)

            times = timed(partial(forward, run, x, ages, dtype), device, min_seconds)
            rows.append({"path": name, "batch": bs, "faces_per_s": bs / statistics.mean(times),
                         "p50_ms": percentile(times, 50) * 1e3, "p99_ms": percentile(times, 99) * 1e3})
    return rows


def closed_loop(call: Callable[[np.ndarray, float], np.ndarray], callers: int, seconds: float,
                size: int) -> dict[str, float]:
    """`callers` threads each calling `call` back to back for `seconds`: faces/s and per-call latency."""
    face = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def caller() -> None:
        mine = []
        while time.perf_counter() < stop:
            start = time.perf_counter()
            call(face, 70.0)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"faces_per_s": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) * 1e3,
            "p99_ms": percentile(latencies, 99) * 1e3}


def bench_engine(
    config: GeneratorConfig, callers: int, seconds: float, compile_: bool
) -> list[dict[str, Any]]:
    """The batching engine under `callers` concurrent callers against one caller at batch-1 eager fp32."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AgeGenerator(config)
    with BatchingEngine(model, max_batch_size=max(1, min(128, callers)), max_wait_ms=5, device=device,
                        compile=compile_) as engine:
        batched = closed_loop(engine.run_one, callers, seconds, config.image_size)
    eager = model.to(device).eval()

    @torch.inference_mode()
    def one_at_a_time(face: np.ndarray, age: float) -> np.ndarray:
        x = torch.from_numpy(face).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1
        return eager(x, torch.tensor([age], device=device)).clamp(-1, 1).cpu().numpy()

    single = closed_loop(one_at_a_time, 1, seconds, config.image_size)
    return [
        {"mode": f"engine, {callers} callers", **batched},
        {"mode": "one at a time, eager fp32", **single},
    ]


def flops_per_face(config: GeneratorConfig) -> float:
    """Forward FLOPs for one face (multiply-add = 2)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        AgeGenerator(config)(torch.zeros(1, 3, config.image_size, config.image_size), torch.tensor([50.0]))
    return float(counter.get_total_flops())


def bf16_matmul_peak() -> float:
    """Achieved bf16 matmul FLOP/s on this GPU, the denominator for model FLOP utilisation."""
    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    times = timed(lambda: a @ b, torch.device("cuda"), min_seconds=1.0, min_iters=10)
    return 2 * n**3 / min(times)


def table(rows: list[dict[str, Any]], title: str) -> str:
    keys = list(rows[0])
    cells = [[f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = [title, "  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("small", "base"), default="small")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum time per measurement")
    p.add_argument("--callers", type=int, default=32, help="concurrent callers for the engine")
    p.add_argument("--compile", action="store_true", help="torch.compile inside the engine (CUDA)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config = {"small": GeneratorConfig.small, "base": GeneratorConfig.base}[args.preset]()
    flops = flops_per_face(config)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(
        f"{config.name}: {config.image_size}x{config.image_size}, "
        f"{AgeGenerator(config).num_params() / 1e6:.1f}M "
        f"params, {flops / 1e9:.2f} GFLOP/face; torch {torch.__version__}, "
        f"{args.threads} CPU threads, GPU: {gpu}\n"
    )
    rows = bench_batches(config, args.seconds)
    if torch.cuda.is_available():
        peak = bf16_matmul_peak()
        print(f"bf16 matmul: {peak / 1e12:.0f} TFLOP/s measured\n")
        for r in rows:
            if str(r["path"]).startswith("cuda"):
                r["mfu_%"] = 100 * r["faces_per_s"] * flops / peak
    print(table(rows, "model, by device path and batch size (p50/p99: per batch)") + "\n")
    engine = bench_engine(config, args.callers, 3 * args.seconds, args.compile)
    print(table(engine, "batching engine vs one at a time (p50/p99: per face, as a caller sees it)"))
    speedup = engine[0]["faces_per_s"] / engine[1]["faces_per_s"]
    print(f"\nengine / one-at-a-time throughput: {speedup:.2f}x; "
          f"per-face latency one at a time: p50 {engine[1]['p50_ms']:.1f} ms")


if __name__ == "__main__":
    main()
