"""The generator and the age estimator: shapes, age conditioning, and fitness for Opacus."""

import pytest
import torch
from opacus.validators import ModuleValidator

from inference.generator.age_estimator import AgeEstimator, EstimatorConfig
from inference.generator.model import (
    AgeGenerator,
    GeneratorConfig,
    ResBlock,
    sinusoidal,
    to_images,
    to_tensor,
)


@pytest.fixture(scope="module")
def small() -> AgeGenerator:
    torch.manual_seed(0)
    model = AgeGenerator(GeneratorConfig.small()).eval()
    with torch.no_grad():  # the output conv starts at zero; give it weights so the age can show
        model.head[2].weight.normal_(0, 0.05)
    return model


@pytest.mark.parametrize(
    "model",
    [
        AgeGenerator(GeneratorConfig.small()),
        AgeGenerator(GeneratorConfig.base()),
        AgeEstimator(EstimatorConfig()),
    ],
    ids=["small", "base", "estimator"],
)
def test_opacus_validator_finds_nothing_to_fix(model):
    assert ModuleValidator.validate(model, strict=False) == []


def test_small_preset_maps_a_batch_to_the_same_shape(small):
    x = torch.rand(2, 3, 128, 128) * 2 - 1  # (B, C, H, W)
    with torch.no_grad():
        assert small(x, torch.tensor([10.0, 70.0])).shape == (2, 3, 128, 128)


def test_base_preset_size_and_a_forward():
    model = AgeGenerator(GeneratorConfig.base())
    assert 30e6 < model.num_params() < 40e6
    # fully convolutional: a 64x64 input exercises every layer at a fraction of the cost
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64), torch.tensor([50.0])).shape == (1, 3, 64, 64)


def test_untrained_generator_is_the_identity():
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        assert torch.equal(AgeGenerator(GeneratorConfig.small())(x, torch.tensor([5.0, 90.0])), x)


def test_the_target_age_conditions_the_output(small):
    x = torch.rand(1, 3, 128, 128).expand(3, -1, -1, -1) * 2 - 1  # one face, three ages
    with torch.no_grad():
        out = small(x, torch.tensor([10.0, 40.0, 80.0]))
    assert (out[0] - out[1]).abs().mean() > 1e-3 and (out[1] - out[2]).abs().mean() > 1e-3
    # Every resolution, down, middle and up, has blocks whose scale and shift come from the age.
    for level in [*small.down, small.mid, *small.up]:
        assert level.blocks and all(
            isinstance(b, ResBlock) and b.film.in_features == 64 for b in level.blocks
        )


def test_sinusoidal_embedding_separates_nearby_ages():
    emb = sinusoidal(torch.tensor([30.0, 31.0, 30.0]), 64)
    assert emb.shape == (3, 64)
    assert torch.equal(emb[0], emb[2]) and (emb[0] - emb[1]).abs().max() > 0.05


def test_config_round_trips_through_json_fields():
    config = GeneratorConfig.base()
    assert GeneratorConfig.from_dict(config.to_dict()) == config


def test_estimator_reads_a_batch_as_years():
    with torch.no_grad():
        ages = AgeEstimator(EstimatorConfig())(torch.zeros(4, 3, 128, 128))
    assert ages.shape == (4,)


def test_image_tensor_conversion_round_trips():
    images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8).numpy()
    x = to_tensor(images)
    assert x.shape == (2, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert (to_images(x) == images).all()
