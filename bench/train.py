"""DP fine-tuning cost and utility: each grad-sample mode against the same training without DP, same run.

    .venv/bin/python bench/train.py [--size 128] [--batch 16] [--reps 5] [--runs 1] [--threads 1]
                                    [--modes hooks,functorch,ghost,ghost_conv] [--skip-utility]
                                    [--utility-size 64] [--users 256] [--dp-steps 60] [--base-steps 400]

Speed: one subprocess per mode builds the small generator (`GeneratorConfig.small()` at --size), two
teacher renderings per face and one fixed batch, then times DP steps (inference.dp.PrivateTrainer.step) and
non-private steps (same objective, same Adam, same batch, same device) interleaved, so load from other
processes hits both alike; the ratio is median DP / median non-DP. Peak memory (`--runs N` repeats it,
each run against its own non-private baseline, and sums the ratios up against MEMORY_GOAL): on CUDA
torch.cuda.max_memory_allocated above the set-up's allocation; on CPU the growth of the process' peak
RSS (resource.getrusage ru_maxrss) over the set-up, measured in separate subprocesses for the DP and the
non-private steps, so neither sees the other's peak.

Utility: trains a base generator and a judging age estimator on synthetic faces, fine-tunes on `--users`
private synthetic users (one photo each, taught by the same identity rendered at two other ages, as the
aging layers teach real faces) at epsilon 1, 4, 8 and without DP for the same steps, and scores each on the
held-out synthetic benchmark (inference.generator.quality). The judge is never a loss.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import dp_modes  # noqa: E402
from inference import dp  # noqa: E402
from inference.generator.age_estimator import EstimatorConfig  # noqa: E402
from inference.generator.model import AgeGenerator, GeneratorConfig  # noqa: E402

warnings.filterwarnings("ignore", message="Full backward hook is firing")

MEMORY_GOAL = 1.3  # a DP step's peak memory at most this times a non-private step's (issue 20.8)


def maxrss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PlainStep:
    """The same fine-tuning step without DP: objective mean over the batch, Adam, no clipping, no noise."""

    def __init__(self, model: AgeGenerator, config: dp.DPConfig, device: torch.device):
        self.model = AgeGenerator(model.config).to(device).train()
        self.model.load_state_dict(model.state_dict())
        self.objective = dp.DPObjective()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.rng = torch.Generator().manual_seed(0)  # the non-private baseline: no secret needed
        self.config, self.device = config, device

    def __call__(self, faces: torch.Tensor, ages: torch.Tensor, renders: torch.Tensor,
                 render_ages: torch.Tensor) -> dict[str, float]:
        b = len(faces)
        x = _images(faces, self.device)  # as dp does
        recon = (torch.rand(b, generator=self.rng) < self.config.recon_fraction).float()
        pick, rows = torch.randint(renders.shape[1], (b,), generator=self.rng), torch.arange(b)
        age = torch.where(recon.bool(), ages.float(), render_ages[rows, pick].float()).to(self.device)
        target = torch.where(recon.bool().to(self.device)[:, None, None, None], x,
                             _images(renders[rows, pick], self.device))
        loss = self.objective(self.model(x, age), target, recon.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return self.objective.last


def _images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> contiguous float (B, 3, H, W) in [-1, 1]."""
    return (images.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_step_data(size: int, batch: int
                     ) -> tuple[AgeGenerator, tuple[np.ndarray, ...], tuple[torch.Tensor, ...]]:
    """A small generator at `size`, 4 batches of random faces, ages and two renders each (speed and memory do
    not care what the pixels show), and the first batch as tensors."""
    gen_cfg = GeneratorConfig.small()
    gen_cfg.image_size = size
    model = AgeGenerator(gen_cfg)
    rng = np.random.default_rng(0)
    n = 4 * batch
    arrays = (rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
              rng.uniform(5, 85, n).astype(np.float32),
              rng.integers(0, 256, (n, 2, size, size, 3), dtype=np.uint8),
              rng.uniform(5, 85, (n, 2)).astype(np.float32))
    return model, arrays, tuple(torch.from_numpy(a[:batch]) for a in arrays)


def worker(args: argparse.Namespace) -> None:
    """One mode in a fresh process: print JSON with step times and peak-memory growth."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model, (faces, ages, renders, render_ages), batch = random_step_data(args.size, args.batch)
    n = len(faces)
    config = dp.DPConfig(
        sample_rate=1 / 4,
        grad_sample_mode=args.worker if args.worker != "nondp" else "hooks",
        expected_batch_size=n / 4,
        device=str(device),
    )
    plain = PlainStep(model, config, device)
    trainer = None if args.worker == "nondp" else dp.PrivateTrainer(
        model=model, faces=faces, source_ages=ages, renders=renders, render_ages=render_ages, config=config)
    step = plain if trainer is None else trainer.step

    # Peak memory of this process' own kind of step, above everything set up so far.
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = maxrss_mb()
    for _ in range(2):
        step(*batch)
    _sync(device)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else maxrss_mb()) - base

    # Step time, interleaved with non-private steps in the same process (only in the DP workers).
    dp_times, plain_times = [], []
    for _ in range(args.reps):
        for fn, times in ((step, dp_times), (plain, plain_times)):
            _sync(device)
            start = time.perf_counter()
            fn(*batch)
            _sync(device)
            times.append(time.perf_counter() - start)
    print(json.dumps({"mode": args.worker, "device": str(device), "peak_mb": peak,
                      "step_s": statistics.median(dp_times), "plain_step_s": statistics.median(plain_times)}))


def run_worker(mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--size", str(args.size), "--batch", str(args.batch),
           "--reps", str(args.reps), "--threads", str(args.threads)]
    cmd += ["--device", args.device] if args.device else []
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        return {
            "mode": mode,
            "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed",
        }
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(args: argparse.Namespace) -> None:
    print(f"== step time and peak memory: small generator at {args.size}x{args.size}, batch {args.batch}, "
          f"{args.threads} thread(s), median of {args.reps}, {args.runs} run(s) ==")
    modes = args.modes.split(",")
    mem_ratios: dict[str, list[float]] = {mode: [] for mode in modes}
    for run in range(1, args.runs + 1):
        base = run_worker("nondp", args)  # each run its own baseline: the ratio is within the run
        how = "cuda max_memory_allocated" if base["device"].startswith("cuda") else "CPU ru_maxrss growth"
        print(f"-- run {run}: device {base['device']}; non-private step peak memory growth "
              f"{base['peak_mb']:.0f} MB ({how})")
        print(f"{'mode':<11} {'DP step':>9} {'plain step':>10} {'time x':>7} {'DP mem MB':>10} {'mem x':>6}")
        for mode in modes:
            r = run_worker(mode, args)
            if "error" in r:
                print(f"{mode:<11} failed: {r['error']}")
                continue
            mem_ratios[mode].append(r["peak_mb"] / max(base["peak_mb"], 1e-9))
            print(f"{mode:<11} {r['step_s']:9.3f} {r['plain_step_s']:10.3f} "
                  f"{r['step_s'] / r['plain_step_s']:7.2f} {r['peak_mb']:10.0f} {mem_ratios[mode][-1]:6.2f}")
    print(f"-- peak memory, DP / non-private, over {args.runs} run(s) (goal <= {MEMORY_GOAL}x in every run)")
    for mode, ratios in mem_ratios.items():
        if ratios:
            met = sum(r <= MEMORY_GOAL for r in ratios)
            print(f"{mode:<11} {' '.join(f'{r:.2f}' for r in ratios)}  min {min(ratios):.2f} median "
                  f"{statistics.median(ratios):.2f} max {max(ratios):.2f}  goal met {met}/{len(ratios)}")


def utility(args: argparse.Namespace) -> None:
    from inference.generator.quality import benchmark, heldout_pairs
    from inference.generator.synthetic import DETECTOR_JITTER, make_dataset
    from inference.generator.train import train_age_estimator, train_base

    torch.set_num_threads(args.threads)
    size = args.utility_size
    print(f"\n== utility: {size}x{size}, base {args.base_steps} steps, fine-tune {args.dp_steps} steps on "
          f"{args.users} private users, sample rate 1/{args.rate_k}, delta {args.delta} ==")
    start = time.perf_counter()
    gen_cfg = GeneratorConfig.small()
    gen_cfg.image_size = size
    base, _ = train_base(
        gen_cfg, steps=args.base_steps, batch_size=16, seed=1, progress=False, identities=200
    )
    judge, _ = train_age_estimator(
        EstimatorConfig(image_size=size),
        steps=args.base_steps,
        batch_size=32,
        seed=3,
        progress=False,
        identities=200,
    )
    print(f"base generator and estimators trained in {time.perf_counter() - start:.0f} s")
    # The private users: fresh identities, one photo each at a random age (never the held-out ones).
    users = make_dataset(args.users, (50.0, 25.0, 75.0), 77, size=size, age_jitter=45.0,
                         framing_jitter=DETECTOR_JITTER)
    faces, ages = users.images[:, 0], users.ages[:, 0]
    renders, render_ages = users.images[:, 1:], users.ages[:, 1:]  # the teacher: the same face, other ages
    pairs = heldout_pairs(args.heldout, size=size)

    def score(model: AgeGenerator) -> dict:
        model.eval()
        return benchmark(lambda x, a: model(x, a), judge, pairs)

    rows = [("base (no fine-tune)", None, score(base))]
    q = 1 / args.rate_k
    for eps in [float(e) for e in args.epsilons.split(",")]:
        sigma = dp.noise_for_epsilon(target_epsilon=eps, sample_rate=q, steps=args.dp_steps, delta=args.delta)
        cfg = dp.DPConfig(noise_multiplier=sigma, sample_rate=q, steps=args.dp_steps, delta=args.delta,
                          lr=args.lr, max_grad_norm=args.clip, grad_sample_mode=args.mode,
                          expected_batch_size=q * len(faces))
        result = dp.train_dp(
            model=base,
            faces=faces,
            source_ages=ages,
            renders=renders,
            render_ages=render_ages,
            config=cfg,
            progress=False,
        )
        rows.append((f"DP eps {result.epsilon_spent:.2f} (sigma {sigma:.2f})", result, score(result.model)))
    plain = PlainStep(base, dp.DPConfig(lr=args.lr), torch.device("cpu"))
    rng = np.random.default_rng(0)
    b = round(q * len(faces))
    for _ in range(args.dp_steps):
        idx = rng.choice(len(faces), size=b, replace=False)
        plain(*(torch.from_numpy(a[idx]) for a in (faces, ages, renders, render_ages)))
    rows.append(("no DP (same steps)", None, score(plain.model)))
    ident = rows[0][2]["identity_baseline"]
    print(f"held-out pairs {rows[0][2]['pairs']}; judge estimator's own error on ground truth "
          f"{rows[0][2]['estimator_error_on_ground_truth']:.1f} y; "
          f"identity baseline PSNR {ident['psnr']:.2f} "
          f"SSIM {ident['ssim']:.3f} age error {ident['age_error']:.1f} y")
    print(f"{'run':<30} {'PSNR dB':>8} {'SSIM':>6} {'age err y':>9} {'s/step':>7}")
    for name, result, s in rows:
        m = s["model"]
        per = f"{result.metrics['seconds_per_step']:7.2f}" if result else f"{'':>7}"
        print(f"{name:<30} {m['psnr']:8.2f} {m['ssim']:6.3f} {m['age_error']:9.1f} {per}")
    plot_utility(rows, Path(__file__).resolve().parent / "out" / "dp_utility.png")


def plot_utility(rows: list, path: Path) -> None:
    """PSNR and age error against epsilon, with the no-DP run and the identity baseline as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dp_rows = [(r.epsilon_spent, s["model"]) for _, r, s in rows if r is not None]
    plain = next(s["model"] for _, r, s in rows if r is None)
    ident = rows[0][2]["identity_baseline"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, label in ((axes[0], "psnr", "PSNR vs ground truth (dB, higher is better)"),
                           (axes[1], "age_error", "age error (years, lower is better)")):
        ax.plot([e for e, _ in dp_rows], [m[key] for _, m in dp_rows], "o-", label="DP fine-tune")
        ax.axhline(plain[key], color="grey", linestyle="--", label="no DP, same steps")
        ax.axhline(ident[key], color="red", linestyle=":", label="identity baseline")
        ax.set_xlabel("epsilon spent")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=128, help="image side for the speed bench")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5, help="timed steps per path and mode")
    parser.add_argument("--runs", type=int, default=1,
                        help="speed runs, each with its own non-private baseline (the memory ratio is noisy)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the box is shared)")
    parser.add_argument("--device", default=None)
    every_mode = dict.fromkeys([*dp_modes.BENCH_MODES, *dp.GRAD_SAMPLE_MODES])  # each once, in order
    parser.add_argument("--modes", default=",".join(every_mode))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-utility", action="store_true")
    parser.add_argument("--utility-size", type=int, default=64)
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--rate-k", type=int, default=8, help="sample rate 1/k")
    parser.add_argument("--dp-steps", type=int, default=60)
    parser.add_argument("--base-steps", type=int, default=400)
    parser.add_argument("--heldout", type=int, default=6, help="held-out identities (x30 ordered pairs)")
    parser.add_argument("--epsilons", default="1,4,8")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument(
        "--mode", default=dp.DEFAULT_GRAD_SAMPLE_MODE, help="grad-sample mode for utility runs"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not args.skip_speed:
        speed(args)
    if not args.skip_utility:
        utility(args)


if __name__ == "__main__":
    main()
