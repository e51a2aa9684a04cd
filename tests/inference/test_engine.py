"""The batching engine: batches equal single runs, concurrent callers get their own results and errors."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from inference.generator.engine import BatchingEngine
from inference.generator.model import AgeGenerator, GeneratorConfig, to_tensor

TINY = GeneratorConfig(name="tiny", image_size=32, channels=(8, 16, 16), age_dim=16, groups=4)


@pytest.fixture(scope="module")
def model() -> AgeGenerator:
    torch.manual_seed(0)
    model = AgeGenerator(TINY)
    # the output conv starts at zero; give it weights so outputs depend on input and age
    with torch.no_grad():
        model.head[2].weight.normal_(0, 0.2)
    return model.eval()


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_a_batch_equals_one_at_a_time(model):
    batch, ages = faces(8), torch.linspace(5, 95, 8)
    with BatchingEngine(model, device="cpu") as engine:
        together = engine.infer(to_tensor(batch), ages)
        alone = torch.cat([engine.infer(to_tensor(batch[i:i + 1]), ages[i:i + 1]) for i in range(8)])
    assert together.dtype == torch.float32
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)


def test_concurrent_callers_each_get_their_own_result(model):
    inputs, ages = faces(48, seed=1), np.linspace(1, 100, 48)
    with BatchingEngine(model, device="cpu", max_batch_size=16, max_wait_ms=20) as engine:
        expected = [engine.run_one(f, a) for f, a in zip(inputs, ages, strict=True)]
        with ThreadPoolExecutor(max_workers=12) as pool:
            got = list(pool.map(engine.run_one, inputs, ages))
    for want, have in zip(expected, got, strict=True):
        assert have.shape == (32, 32, 3) and have.dtype == np.uint8
        assert np.abs(want.astype(int) - have).max() <= 1  # float noise may flip a rounding


def test_waiting_requests_are_grouped_into_batches(model):
    with BatchingEngine(model, device="cpu", max_batch_size=8, max_wait_ms=200) as engine:
        sizes = []
        real = engine.infer

        def counting(x, ages):
            sizes.append(x.shape[0])
            return real(x, ages)

        engine.infer = counting
        futures = [engine.submit(f, 50.0) for f in faces(8)]
        [f.result(timeout=30) for f in futures]
    assert sum(sizes) == 8 and max(sizes) > 1 and max(sizes) <= 8


def test_errors_reach_the_callers_and_the_worker_survives(model):
    with BatchingEngine(model, device="cpu") as engine:
        real = engine.infer

        def failing(x, ages):
            raise RuntimeError("device fell over")

        engine.infer = failing
        with pytest.raises(RuntimeError, match="device fell over"):
            engine.run_one(faces(1)[0], 30.0)
        engine.infer = real
        assert engine.run_one(faces(1)[0], 30.0).shape == (32, 32, 3)


def test_other_sizes_are_resized_in_and_out(model):
    with BatchingEngine(model, device="cpu") as engine:
        assert engine.image_size == 32
        assert engine.run_one(np.zeros((50, 40, 3), np.uint8), 20.0).shape == (50, 40, 3)


def test_bad_requests_and_closed_engines_are_refused(model):
    engine = BatchingEngine(model, device="cpu")
    with pytest.raises(ValueError):
        engine.submit(np.zeros((32, 32), np.uint8), 30.0)
    with pytest.raises(ValueError):
        engine.submit(faces(1)[0], float("nan"))
    pending = engine.submit(faces(1)[0], 30.0)
    engine.close()
    assert pending.result(timeout=30).shape == (32, 32, 3)  # what was queued before close still runs
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(faces(1)[0], 30.0)
    assert not engine._worker.is_alive()
