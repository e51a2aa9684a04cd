"""The model registry: safetensors only, hash-checked on load, promotion guarded for DP models."""

import ast
import hashlib
import json
from pathlib import Path

import pytest
import torch

from inference.generator.age_estimator import AgeEstimator, EstimatorConfig
from inference.generator.model import AgeGenerator, GeneratorConfig
from inference.generator.registry import PRIVACY_FIELDS, ModelRegistry, RegistryError

TINY = GeneratorConfig(name="tiny", image_size=32, channels=(8, 16), age_dim=16, groups=4)
CODE = "ef" * 32  # the DP code version the cards below were trained with
PRIVACY = {"manifest_sha256": "ab" * 32, "epsilon": 2.5, "delta": 1e-5, "noise_multiplier": 1.1,
           "max_grad_norm": 1.0, "sample_rate": 0.01, "steps": 200, "accountant": "prv",
           "dp_code_version": CODE}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def tiny_model(seed: int = 0) -> AgeGenerator:
    torch.manual_seed(seed)
    model = AgeGenerator(TINY)
    with torch.no_grad():
        model.head[2].weight.normal_(0, 0.1)
    return model


def test_register_and_load_round_trip(registry):
    model = tiny_model()
    version = registry.register(model, TINY, {"training_data": "unit test", "metrics": {"psnr": 30.0}},
                                dtype=torch.float32)
    assert version == "tiny-v1"
    loaded, card = registry.load(version)
    assert isinstance(loaded, AgeGenerator) and not loaded.training
    assert card["architecture"] == "AgeGenerator" and card["config"]["channels"] == [8, 16]
    assert card["param_count"] == model.num_params() and card["metrics"] == {"psnr": 30.0}
    assert card["size_bytes"] == (registry.root / version / "weights.safetensors").stat().st_size
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_float16_storage_loads_back_as_float32(registry):
    model = tiny_model()
    loaded, card = registry.load(registry.register(model, TINY))
    assert card["weights_dtype"] == "float16"
    weights = loaded.state_dict()["head.2.weight"]
    assert weights.dtype == torch.float32
    assert torch.allclose(weights, model.state_dict()["head.2.weight"], atol=1e-3)


def test_versions_count_up_per_name_and_list_in_order(registry):
    names = [registry.register(tiny_model(i), TINY) for i in range(2)]
    names.append(registry.register(AgeEstimator(EstimatorConfig()), EstimatorConfig()))
    assert names == ["tiny-v1", "tiny-v2", "age-estimator-v1"]
    assert registry.list_versions() == names
    assert isinstance(registry.load("age-estimator-v1")[0], AgeEstimator)


def test_tampered_weights_are_refused(registry):
    version = registry.register(tiny_model(), TINY)
    path = registry.root / version / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="SHA-256"):
        registry.load(version)
    with pytest.raises(RegistryError, match="SHA-256"):
        registry.promote(version)


def test_a_card_edited_to_match_other_weights_is_refused(registry):
    first, second = registry.register(tiny_model(0), TINY), registry.register(tiny_model(1), TINY)
    (registry.root / first / "weights.safetensors").write_bytes(
        (registry.root / second / "weights.safetensors").read_bytes())
    with pytest.raises(RegistryError):
        registry.load(first)


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(registry, monkeypatch):
    # Given a version whose weights were swapped for a torch pickle, its hash written onto the card,
    version = registry.register(tiny_model(), TINY)
    weights = registry.root / version / "weights.safetensors"
    torch.save(tiny_model().state_dict(), weights)
    card_path = registry.root / version / "card.json"
    card = json.loads(card_path.read_text())
    card["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))

    def unpickling(*args, **kwargs):
        raise AssertionError("the registry tried to unpickle")

    monkeypatch.setattr(torch, "load", unpickling)
    monkeypatch.setattr("pickle.loads", unpickling)
    monkeypatch.setattr("pickle.load", unpickling)
    # when it is loaded, then safetensors refuses the file and nothing falls back to unpickling it.
    with pytest.raises(Exception) as caught:
        registry.load(version)
    assert not isinstance(caught.value, AssertionError)


def test_loading_code_has_no_pickle_path():
    registry = Path(__file__).resolve().parents[2] / "inference" / "generator" / "registry.py"
    tree = ast.parse(registry.read_text())
    torch_loads = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "load"
                   and isinstance(n.value, ast.Name) and n.value.id == "torch"]
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert torch_loads == [] and not imported & {"pickle", "dill", "joblib", "cloudpickle"}


def test_version_names_cannot_escape_the_registry(registry):
    for bad in ("../etc", "a/b", "", ".hidden"):
        with pytest.raises(RegistryError):
            registry.load(bad)


def test_computed_card_fields_cannot_be_overridden(registry):
    with pytest.raises(RegistryError, match="sha256"):
        registry.register(tiny_model(), TINY, {"sha256": "0" * 64})


def test_promotion_moves_the_pointer(registry):
    assert registry.promoted_version() is None
    first, second = registry.register(tiny_model(0), TINY), registry.register(tiny_model(1), TINY)
    registry.promote(first)
    assert registry.promoted_version() == first
    registry.promote(second)
    assert registry.promoted_version() == second
    assert registry.load_promoted()[1]["version"] == second
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".")] == []  # no temp files left


def certificate(code: str = CODE, **changes) -> dict:
    """An audit report as inference.dp.audit.audit writes it, at the pinned settings unless changed."""
    config = {"canaries": 1000, "sample_rate": 0.25, "steps": 40, "delta": 1e-5, "guesses": 100,
              "confidence": 0.95, "max_grad_norm": 1.0, "probe_people": 4, **changes.pop("config", {})}
    return {"code_version": code, "passed": True, "claims": [2.0, 8.0], "config": config, **changes}


def test_dp_model_without_privacy_fields_is_not_promoted(registry):
    incomplete = {**PRIVACY, "dp": True}
    del incomplete["epsilon"]
    registry.record_audit(certificate())
    version = registry.register(tiny_model(), TINY, incomplete)
    with pytest.raises(RegistryError, match="epsilon"):
        registry.promote(version)
    assert registry.promoted_version() is None


def test_the_registry_itself_refuses_an_unaudited_dp_version(registry):
    # Given a DP version with every privacy field, trained with code that has no passing audit
    version = registry.register(tiny_model(), TINY, {**PRIVACY, "dp": True})
    # When anyone calls promote (a shell included), it is refused
    with pytest.raises(RegistryError, match="audit_privacy"):
        registry.promote(version)
    # Nor does a failed, an under-powered, or another code version's audit certify it
    for report in (certificate(passed=False), certificate(config={"canaries": 50, "steps": 2, "guesses": 2}),
                   certificate(claims=[50.0]), certificate(config={"probe_people": 0}),
                   certificate(code="cd" * 32)):
        registry.record_audit(report)
        with pytest.raises(RegistryError, match="audit_privacy"):
            registry.promote(version)
    # And a pointer written by hand does not serve it either
    (registry.root / "promoted").write_text(version + "\n")
    with pytest.raises(RegistryError, match="audit_privacy"):
        registry.promoted_version()
    with pytest.raises(RegistryError, match="audit_privacy"):
        registry.load_promoted()


def test_dp_model_with_privacy_fields_is_promoted(registry):
    version = registry.register(tiny_model(), TINY, {**PRIVACY, "dp": True, "parent": "small-v1",
                                                     "lineage": "small"})
    registry.record_audit(certificate())
    registry.promote(version)
    card = registry.card(version)
    assert registry.promoted_version() == version
    assert all(card[field] == PRIVACY[field] for field in PRIVACY_FIELDS)
