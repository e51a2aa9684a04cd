"""The one-run privacy audit: it passes the training code path, catches a mechanism noisier on paper than
in fact, and its statistics behave (no bound from chance guesses, bounds grow with right guesses)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.dp import audit

CI = audit.AuditConfig(canaries=200, sample_rate=0.25, steps=30, guesses=40, delta=1e-5)

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the", "ignore:Full backward hook is firing")


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


def test_the_code_version_is_that_of_the_dp_sources():
    assert len(audit.code_version()) == 64 and audit.code_version() == audit.code_version()
