"""A training run over two local processes (DP_TRAIN_PROCESSES=2): Opacus DPDDP on gloo, from the run's
reservation to its registered version, accounted once. The DP-SGD equivalence itself (two ranks give the
one-process weights, noise added once) is tests/inference/test_dp_distributed.py."""

from __future__ import annotations

import pytest

from governance.models import RunStatus
from inference.dp import distributed
from tests.test_training_run import _small_cohort, consenting_users  # noqa: F401 - fixtures
from webplatform.models_registry import model_registry
from webplatform.training.services import RunRequest, training_run_create, training_run_execute

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the")


def test_a_run_over_two_processes_registers_its_version_with_the_reserved_epsilon(
        consenting_users, settings, monkeypatch):  # noqa: F811
    settings.DP_TRAIN_PROCESSES = 2
    spawned: list[int] = []
    real = distributed.train_dp_ranks

    def spy(*, ranks, **kwargs):
        spawned.append(ranks.processes)
        return real(ranks=ranks, **kwargs)

    monkeypatch.setattr(distributed, "train_dp_ranks", spy)
    request = RunRequest(epochs=1, target_epsilon=2.0, batch_size=4, lr=1e-4)
    # Given a reserved run; when it trains over two ranks
    run = training_run_execute(training_run_create(request), request, progress=False)
    # Then it ran as two processes, spent exactly what it reserved (one accountant, one noise) and registered
    assert spawned == [2]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.epsilon_spent == run.epsilon_reserved
    card = model_registry().card(run.model_version)
    assert card["dp"] is True and card["manifest_sha256"] == run.manifest_sha256
