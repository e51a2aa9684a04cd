"""A short real DP training run on CPU: consenting synthetic users → registered version with privacy
fields."""

from __future__ import annotations

import io
import json
import logging

import pytest
import torch
from django.conf import settings
from django.core.management import CommandError, call_command
from PIL import Image

from governance.models import AuditEvent, ManifestEntry, PrivacyAudit, RunStatus, TrainingRun
from inference import dp
from inference.dp.audit import code_version
from inference.generator.synthetic import Identity, place_in_photo
from webplatform.models_registry import model_registry
from webplatform.photos.models import Photo
from webplatform.training.ledger import ancestry_epsilon
from webplatform.training.services import (
    RunRequest,
    eligible_items,
    training_run_create,
    training_run_execute,
)

from .lifecycle_support import photo_make

PRIVACY_FIELDS = ("manifest_sha256", "epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate",
                  "steps", "accountant")


def face_png(seed: int) -> bytes:
    photo, _ = place_in_photo(Identity.from_seed(seed), 25 + seed % 50, photo_size=(240, 320), face_size=160,
                              seed=seed)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _small_cohort(settings):
    # Eight synthetic people: a CPU-sized run. The floor applies to the released count (std 10 by default),
    # so there is none here: at 8, or even 1, the count's noise would refuse eight people now and then.
    settings.DP_MIN_PARTICIPANTS = 0


@pytest.fixture
def consenting_users(make_actor):
    """Eight users who opted in to training, each with one face photo; two who did not."""
    users = [make_actor(consents=("processing", "training")) for _ in range(8)]
    for i, actor in enumerate(users):
        photo_make(owner_id=actor.pk, plaintext=face_png(seed=100 + i), kept_for_training=True)
    outsiders = [make_actor(consents=("processing",)) for _ in range(2)]
    for i, actor in enumerate(outsiders):
        photo_make(owner_id=actor.pk, plaintext=face_png(seed=200 + i))
    return users, outsiders


def test_only_a_photo_its_owner_chose_is_ever_trained_on(consenting_users, make_actor):
    users, outsiders = consenting_users
    # Given a person who allows training but never chose a photo (their newest upload is not a choice)
    undecided = make_actor(consents=("processing", "training"))
    photo_make(owner_id=undecided.pk, plaintext=face_png(seed=300))
    # Then a run's eligible photos are exactly the chosen ones, and none of theirs
    items = eligible_items()
    assert {item.user_id for item in items} == {u.pk for u in users}
    assert {item.photo_id for item in items} == set(
        Photo.objects.filter(kept_for_training=True).values_list("pk", flat=True))


def test_short_dp_run_registers_a_version_with_its_privacy_card(consenting_users, officer, monkeypatch,
                                                                 caplog):
    users, outsiders = consenting_users
    caplog.set_level(logging.DEBUG)  # every log line, to search for the keys
    request = RunRequest(epochs=1, target_epsilon=2.0, batch_size=4, lr=1e-4)
    seeds: list[int] = []
    real = dp.randomness.fresh_key
    monkeypatch.setattr(dp.randomness, "fresh_key", lambda: seeds.append(real()) or seeds[-1])  # a spy

    # Given a reserved run over exactly the consenting users
    run = training_run_create(request)
    assert run.entries.count() == len(users) and run.status == RunStatus.RESERVED
    assert run.epsilon_reserved == pytest.approx(2.0, rel=0.05)

    # When it trains under DP on CPU
    run = training_run_execute(run, request, progress=False)

    # Then a version is registered whose card carries every privacy field, matching the run
    assert run.status == RunStatus.SUCCEEDED, run.error
    card = model_registry().card(run.model_version)
    assert card["dp"] is True and all(card.get(f) is not None for f in PRIVACY_FIELDS)
    assert card["manifest_sha256"] == run.manifest_sha256
    assert (card["epsilon"] == pytest.approx(ancestry_epsilon(run)[0])
            and run.epsilon_spent == run.epsilon_reserved)
    assert card["epsilon_filter"] == pytest.approx(dp.accounting.filter_epsilon(
        history=[(run.noise_multiplier, run.sample_rate, run.steps), (run.count_noise, 1.0, 1)],
        delta=card["delta"]))
    assert card["epsilon_filter"] >= card["epsilon"]
    assert card["ancestry"] == [str(run.id)] and "one account's photo" in card["privacy_unit"]
    # And nothing private for free: the count only as released with noise, no losses or batch statistics
    assert card["participants_released"] == run.participants and card["participants_noise_std"] > 0
    assert "participants" not in card and set(card["metrics"]) == {"before", "after"}
    assert set(run.metrics) == {"before", "after"}
    assert AuditEvent.objects.filter(action="training.finished", object_ref=f"run:{run.id}").exists()

    # And each participant sees the run and their epsilon; an outsider sees none
    privacy = users[0].client.get("/api/v1/me/privacy?estimate=prv").json()
    assert [r["run_id"] for r in privacy["runs"]] == [str(run.id)]
    assert privacy["prv_epsilon"] == pytest.approx(run.epsilon_reserved)
    assert privacy["total_epsilon"] == pytest.approx(dp.accounting.filter_epsilon(
        history=[(run.noise_multiplier, run.sample_rate, run.steps), (run.count_noise, 1.0, 1)],
        delta=settings.DP_DELTA))
    assert "epsilon" in privacy["explanation"]
    assert outsiders[0].client.get("/api/v1/me/privacy").json()["runs"] == []

    # Compliance sees the run (its released count) and the version with its card
    runs = officer.client.get("/api/v1/training-runs").json()["results"]
    assert runs[0]["manifest_sha256"] == run.manifest_sha256 and runs[0]["participants"] == run.participants
    assert runs[0]["participants_noise_std"] == run.count_noise
    models = officer.client.get("/api/v1/models").json()
    assert run.model_version in [v["version"] for v in models["versions"]]

    # A second run on the same inputs trains different weights: fresh secret randomness per run
    again = training_run_execute(training_run_create(request), request, progress=False)
    first, _ = model_registry().load(run.model_version)
    second, _ = model_registry().load(again.model_version)
    assert not all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())

    # And no 128-bit key drawn for either run (count, sampling, noise, coins) is persisted: not in the
    # database, the cards, the registry files or the logs
    assert len(set(seeds)) == len(seeds) == 8 and min(seeds).bit_length() > 64
    stored = json.dumps([list(TrainingRun.objects.values()), list(ManifestEntry.objects.values()),
                         list(AuditEvent.objects.values())], default=str)
    stored += "".join(p.read_text(errors="ignore") for p in model_registry().root.rglob("*") if p.is_file()
                      and p.suffix != ".safetensors")
    stored += caplog.text
    assert not any(str(seed) in stored or f"{seed:x}" in stored for seed in seeds)

    # Promotion waits until the DP code the model was trained with passes its empirical audit
    assert card["dp_code_version"] == code_version()
    with pytest.raises(CommandError, match="audit_privacy"):
        call_command("promote_model", run.model_version)
    call_command("audit_privacy", stdout=io.StringIO())  # the pinned settings: about a minute
    assert PrivacyAudit.objects.get(code_version=code_version()).passed

    # Promotion is explicit and audited
    call_command("promote_model", run.model_version)
    assert model_registry().promoted_version() == run.model_version
    assert AuditEvent.objects.filter(action="model.promoted",
                                     object_ref=f"model:{run.model_version}").exists()


def test_promotion_refuses_a_dp_card_without_privacy_fields(purposes):
    registry = model_registry()
    base = registry.promoted_version()
    model, card = registry.load(base)
    version = registry.register(model, model.config, {"dp": True, "epsilon": 1.0}, version="incomplete-dp")
    with pytest.raises(CommandError, match="lacks"):
        call_command("promote_model", version)
    assert registry.promoted_version() == base


def test_train_command_refuses_over_budget_before_training(consenting_users, settings):
    settings.DP_EPSILON_CAP = 1.0
    with pytest.raises(CommandError, match="privacy_budget_exceeded"):
        call_command("train", "--target-epsilon", "2", "--epochs", "1", "--batch-size", "4")
    # Nothing trained: the only row is the refusal charging the released count to the eight people
    (refused,) = TrainingRun.objects.all()
    assert refused.status == RunStatus.REFUSED and refused.steps == 0 and refused.entries.count() == 8


def test_a_person_erased_after_the_snapshot_is_left_out_of_training_not_a_crash(consenting_users):
    from governance.keys import data_key_destroy
    from webplatform.training.services import _load_faces

    users, _ = consenting_users
    run = training_run_create(RunRequest(epochs=1, target_epsilon=2.0, batch_size=4, lr=1e-4))
    # erasure accepted after the snapshot: their ciphertext is unreadable
    data_key_destroy(user_id=users[0].pk)
    data = _load_faces(run, 64)
    assert len(data.faces) == len(users) - 1  # everyone else, and only the teacher's view of them
    assert (data.renders.shape == (len(users) - 1, 4, 64, 64, 3)
            and data.render_ages.shape == (len(users) - 1, 4))
