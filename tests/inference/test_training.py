"""Training entry points and the quality benchmark, on tiny settings; and the shipped model's quality."""

import numpy as np
import pytest
from PIL import Image

from inference.generator.age_estimator import AgeEstimator, EstimatorConfig
from inference.generator.model import AgeGenerator, GeneratorConfig
from inference.generator.quality import benchmark, heldout_pairs
from inference.generator.registry import SHIPPED, ModelRegistry
from inference.generator.train import load_age_folder, train_age_estimator, train_base

TINY = GeneratorConfig(name="tiny", image_size=32, channels=(8, 16), age_dim=16, groups=4)


def test_train_base_runs_and_reports(tmp_path):
    model, metrics = train_base(TINY, steps=3, batch_size=4, seed=0, progress=False, identities=4)
    assert isinstance(model, AgeGenerator) and not model.training
    assert metrics["steps"] == 3 and np.isfinite(metrics["final_loss"])
    assert "synthetic" in metrics["training_data"]


def test_train_age_estimator_runs_and_reports():
    model, metrics = train_age_estimator(
        EstimatorConfig(image_size=32, channels=(8, 16)),
        steps=2,
        batch_size=4,
        seed=0,
        progress=False,
        identities=4,
    )
    assert isinstance(model, AgeEstimator) and np.isfinite(metrics["final_loss"])


def write_faces(folder, names):
    folder.mkdir()
    for i, name in enumerate(names):
        Image.fromarray(np.full((40, 50, 3), 20 * i, np.uint8)).save(folder / name)


def test_a_folder_of_aged_images_loads_by_file_name(tmp_path):
    write_faces(tmp_path / "faces", ["34_a.png", "7_b.jpg", "notes.txt.png", "61.5_c.png"])
    real = load_age_folder(tmp_path / "faces", 32)
    assert real.images.shape == (3, 32, 32, 3)
    assert sorted(real.ages.tolist()) == [7.0, 34.0, 61.5]


def test_a_folder_of_aged_images_loads_by_labels_csv(tmp_path):
    write_faces(tmp_path / "faces", ["x.png", "y.png"])
    (tmp_path / "faces" / "labels.csv").write_text("filename,age\nx.png,25\ny.png,80\n")
    assert load_age_folder(tmp_path / "faces", 16).ages.tolist() == [25.0, 80.0]
    (tmp_path / "faces" / "labels.csv").write_text("filename,age\n../x.png,25\n")
    with pytest.raises(ValueError, match="outside"):
        load_age_folder(tmp_path / "faces", 16)


def test_an_unlabelled_folder_is_refused(tmp_path):
    write_faces(tmp_path / "faces", ["a.png"])
    with pytest.raises(ValueError, match="labels.csv"):
        load_age_folder(tmp_path / "faces", 16)


def test_real_photos_join_the_generator_batches(tmp_path):
    write_faces(tmp_path / "faces", ["30_a.png", "70_b.png"])
    _, metrics = train_base(TINY, steps=2, batch_size=4, seed=0, progress=False, identities=2,
                            data_dir=tmp_path / "faces")
    assert "2 real photos" in metrics["training_data"]


def test_the_identity_scores_as_the_identity_baseline():
    pairs = heldout_pairs(2, size=64, ages=(10.0, 70.0))
    estimator = AgeEstimator(EstimatorConfig(image_size=64))
    result = benchmark(lambda x, age: x, estimator, pairs)
    assert result["pairs"] == 4 and result["model"] == result["identity_baseline"]


@pytest.fixture(scope="module")
def shipped():
    registry = ModelRegistry(SHIPPED)
    generator, card = registry.load_promoted()
    estimator, _ = registry.load(card["age_estimator"])
    return generator, estimator, card


def test_shipped_model_beats_the_identity_baseline(shipped):
    generator, estimator, card = shipped
    result = benchmark(generator, estimator, heldout_pairs(6, ages=(10.0, 35.0, 60.0, 85.0)))
    model, baseline = result["model"], result["identity_baseline"]
    assert model["psnr"] > baseline["psnr"] + 1.0
    assert model["ssim"] > baseline["ssim"]
    assert model["age_error"] < baseline["age_error"] * 0.75


def test_shipped_card_records_the_benchmark(shipped):
    generator, _, card = shipped
    metrics = card["metrics"]
    assert card["architecture"] == "AgeGenerator" and card["dp"] is False
    assert card["param_count"] == generator.num_params()
    assert metrics["model"]["psnr"] > metrics["identity_baseline"]["psnr"]
    assert metrics["model"]["ssim"] > metrics["identity_baseline"]["ssim"]
    assert metrics["model"]["age_error"] < metrics["identity_baseline"]["age_error"]
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*")) < 8_000_000  # small enough for git
