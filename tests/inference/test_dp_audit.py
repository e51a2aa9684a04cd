"""The one-run privacy audit: it passes the training code path, catches a mechanism noisier on paper than
in fact, and its statistics behave (no bound from chance guesses, bounds grow with right guesses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inference.dp import audit, samplers
from inference.generator import certificates as version
from inference.generator.model import AgeGenerator
from inference.generator.registry import SHIPPED, ModelRegistry

CI = audit.AuditConfig(canaries=200, sample_rate=0.25, steps=30, guesses=40, delta=1e-5)

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the", "ignore:Full backward hook is firing")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared CI machine: one core each
    yield
    torch.set_num_threads(threads)


def test_a_ci_sized_audit_passes_the_training_code_path():
    result = audit.audit_one_run(claimed_epsilon=4.0, config=CI)
    assert result.passed, result.failures
    # The no-noise control reaches the maximum: the test could see a leak if there were one
    assert (result.control_lower_bound == pytest.approx(result.max_lower_bound)
            and result.max_lower_bound > 1.0)
    assert result.epsilon_lower_bound <= result.claimed_epsilon
    assert result.noise_measured == pytest.approx(result.noise_multiplier, rel=0.1)


def test_the_audit_fails_code_that_adds_less_noise_than_it_claims(monkeypatch):
    # Given DP code with a bug: the optimizer adds a tenth of the planned noise
    real = audit.make_private

    def buggy(**kwargs):
        parts = real(**kwargs)
        parts.optimizer.noise_multiplier /= 10
        return parts

    monkeypatch.setattr(audit, "make_private", buggy)
    result = audit.audit_one_run(claimed_epsilon=2.0, config=CI)
    # Then the audit fails it, measuring the noise it really adds
    assert not result.passed
    assert any("measured noise multiplier" in f for f in result.failures)
    assert result.noise_measured == pytest.approx(result.noise_multiplier / 10, rel=0.2)


def test_chance_guesses_prove_nothing_and_more_right_guesses_prove_more():
    bound = [audit.epsilon_lower_bound(m=1000, r=100, v=v, delta=1e-5, confidence=0.95)
             for v in (50, 70, 90, 100)]
    assert bound[0] == 0.0
    assert bound == sorted(bound) and bound[-1] > bound[-2] > bound[1] > 0
    # With delta 0 and every guess right, the bound is where randomised response's r-fold accuracy hits 5%
    exact = audit.epsilon_lower_bound(m=1000, r=100, v=100, delta=0.0, confidence=0.95)
    assert audit.p_value(m=1000, r=100, v=100, epsilon=exact, delta=0.0) == pytest.approx(0.05, rel=1e-3)


def test_the_no_noise_control_judges_guesses_against_the_canaries_the_sampler_drew():
    rng = np.random.default_rng(0)
    included = np.arange(200) % 2 == 0
    appearances = np.where(included, 1 + np.arange(200) % 7, 0).astype(float)
    appearances[0] = 0.0  # an in-canary never drawn: no leak to see, not a blind audit
    assert all(audit.control_right_guesses(appearances, included, 40, rng) == 40 for _ in range(50))
    # A pipeline that lost the canaries' signal, or put it on the wrong canaries, misses
    assert audit.control_right_guesses(np.zeros(200), included, 40, rng) < 40
    assert audit.control_right_guesses(np.where(included, 0.0, 3.0), included, 40, rng) <= 20


def test_the_code_version_covers_every_file_on_the_dp_path_and_the_libraries(monkeypatch):
    assert len(audit.code_version()) == 64 and audit.code_version() == audit.code_version()
    names = {str(p.relative_to(version.ROOT)) for p in version.dp_files()}
    assert {"inference/dp/trainer.py", "inference/dp/samplers.py", "inference/dp/randomness.py",
            "inference/generator/model.py", "webplatform/training/services.py",
            "governance/training.py"} <= names
    before = audit.code_version()
    monkeypatch.setattr(version, "version", lambda name: "0.0-other" if name == "opacus" else "1")
    assert audit.code_version() != before  # another Opacus is other code


# ---- the pinned settings, and what they catch. These run the pinned (certifying) sizes: about 15 s for
# the linear canaries and 6 s for the probe on one core.

@pytest.fixture(scope="module")
def generator() -> AgeGenerator:
    """The generator DP training fine-tunes, with its shipped (trained) weights."""
    model, _ = ModelRegistry(SHIPPED).load_promoted()
    assert isinstance(model, AgeGenerator)
    return model


def test_the_pinned_settings_are_the_certifying_minimums():
    assert audit.meets_minimums(audit.PINNED, list(audit.PINNED_CLAIMS))
    assert not audit.meets_minimums(audit.AuditConfig(canaries=10, steps=2, guesses=2), [50.0])
    assert not audit.meets_minimums(audit.PINNED, [50.0])


def test_the_clipping_probe_passes_the_real_generator_through_every_layer_type(generator):
    result = audit.clipping_probe(generator)
    assert result.passed, result.failures
    kinds = {type(m).__name__ for m in generator.modules() if any(True for _ in m.parameters(recurse=False))}
    assert set(result.layer_types) == kinds and {"Conv2d", "GroupNorm", "Linear"} <= kinds
    assert all(share >= audit.PROBE_MIN_SHARE for share in result.layer_types.values())


def test_the_pinned_probe_fails_a_conv_norm_bug_that_halves_conv_norms(generator, monkeypatch):
    # Given DP code with a bug: book-keeping's Conv2d norms come out halved (squares quartered)
    real = samplers.BOOK_KEEPING_LAYERS[nn.Conv2d]

    def halved(layer, a, g):
        sq, add = real(layer, a, g)
        return sq / 4, add

    monkeypatch.setitem(samplers.BOOK_KEEPING_LAYERS, nn.Conv2d, halved)
    result = audit.clipping_probe(generator, people=audit.PINNED.probe_people)
    # Then each person's clipped contribution exceeds the clip, and the probe fails it
    assert not result.passed and max(result.contributions) > 1.5 * result.max_grad_norm


def test_the_pinned_audit_fails_a_tenth_of_the_noise(monkeypatch):
    real = audit.make_private

    def buggy(**kwargs):
        parts = real(**kwargs)
        parts.optimizer.noise_multiplier /= 10
        return parts

    monkeypatch.setattr(audit, "make_private", buggy)
    result = audit.audit_one_run(claimed_epsilon=2.0, config=audit.PINNED)
    assert not result.passed
    assert any("measured noise multiplier" in f for f in result.failures)
    # and the canaries themselves refute the claim: the lower bound passes 2
    assert result.epsilon_lower_bound > 2.0
