"""Training governance: manifests hold only consenting users (a property test), one photo per user, and the
privacy budget refuses a run before it starts — also when two are asked for at once on PostgreSQL."""

from __future__ import annotations

import io
import itertools
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from governance.consent import TRAINING, consent_is_active, consent_set
from governance.errors import BudgetExceeded, Conflict
from governance.models import ConsentRecord, Lineage, ManifestEntry, RunStatus, TrainingRun
from governance.training import (
    ManifestItem,
    run_finish,
    run_reserve,
    run_start,
    training_candidates,
)
from inference import dp
from tests.lifecycle_support import Clock
from tests.lifecycle_support import photo_make as stored_photo
from webplatform.lifecycle.consent_changes import consent_change
from webplatform.lifecycle.erasure import user_erase
from webplatform.photos.models import Photo
from webplatform.training.ledger import ledger_accountant, run_history
from webplatform.training.services import eligible_items

RUN = {"delta": 1e-6, "sample_rate": 0.1, "max_grad_norm": 1.0, "steps": 20, "accountant": "prv",
       "participants": 100, "count_noise": 10.0}


_colours = itertools.count(1)


def photo_make(**fields) -> Photo:
    """A stored photo whose pixels no other has (identical images from two accounts enter a run once), kept
    for training unless told: only a photo its owner chose is ever trained on."""
    fields.setdefault("kept_for_training", True)
    c = next(_colours)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (c % 256, (c // 256) % 256, 31)).save(buffer, format="PNG")
    return stored_photo(plaintext=buffer.getvalue(), **fields)


@pytest.fixture(autouse=True)
def _small_cohorts(settings):
    settings.DP_MIN_PARTICIPANTS = 1  # these tests are about manifests and caps, not the cohort floor


def reserve(items, noise=6.0, lineage="test-lineage") -> TrainingRun:
    """A run of 20 steps at q 0.1. Under the Rényi filter the caps check: noise 6 about 0.6, 1.0 5.8 (two
    7.0, three 8.2), 0.9 7.0 (two 9.1)."""
    epsilon = dp.compose_epsilon(history=[(noise, 0.1, 20), (10.0, 1.0, 1)], delta=1e-6)
    return run_reserve(lineage_name=lineage, items=items, epsilon=epsilon, noise_multiplier=noise,
                       ledger=ledger_accountant(), **RUN)


# ---- the property: random consent histories never put a non-consenting user in a manifest -------------

ACTIONS = st.lists(
    st.tuples(st.sampled_from(["grant", "withdraw", "erase", "expire", "upload", "snapshot"]),
              st.integers(min_value=0, max_value=4)),
    min_size=1, max_size=25)


# A reservation reads each person's stored Rényi-filter sums (one row each, whatever their history), so 30
# examples of up to 25 actions run in CI's time again.
@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_no_manifest_ever_holds_a_user_without_training_consent(make_actor, monkeypatch, actions):
    clock = Clock(monkeypatch)
    actors = [make_actor(consents=()) for _ in range(5)]
    erased: set[int] = set()
    for action, i in actions:
        user_id = actors[i].pk
        if user_id in erased:
            continue
        if action == "grant":
            consent_change(user_id=user_id, purpose_slug=TRAINING, granted=True, policy_version=1)
        elif action == "withdraw":
            consent_change(user_id=user_id, purpose_slug=TRAINING, granted=False, policy_version=None)
        elif action == "erase":
            user_erase(user_id=user_id)
            erased.add(user_id)
        elif action == "expire":
            clock.advance(hours=49)
        elif action == "upload":
            photo_make(owner_id=user_id)
        else:
            items = eligible_items()
            if not items:
                continue
            run = reserve(items, lineage=f"prop-{len(actions)}")
            # Then every entry's owner consents right now, through the one question everybody asks,
            users = [it.user_id for it in items]
            assert all(consent_is_active(user_id=u, purpose_slug=TRAINING) for u in users)
            assert not erased & set(users)
            # at most one photo per user, and each photo is the owner's and within retention.
            assert len(users) == len(set(users)) == run.entries.count()
            for it in items:
                photo = Photo.objects.get(pk=it.photo_id)
                assert photo.owner_id == it.user_id and photo.expires_at > clock.now
                record = ConsentRecord.objects.get(pk=it.consent_record_id)
                assert record.granted and record.user_id == it.user_id


def test_a_stale_consent_record_is_refused_at_reservation(make_actor):
    # Given a manifest built while the user consented
    actor = make_actor(consents=("processing", "training"))
    photo_make(owner_id=actor.pk)
    items = eligible_items()
    assert [i.user_id for i in items] == [actor.pk]
    # When they withdraw before the reservation is made, the reservation is refused and nothing is stored
    consent_set(user_id=actor.pk, purpose_slug=TRAINING, granted=False, policy_version=None)
    with pytest.raises(Conflict):
        reserve(items)
    assert TrainingRun.objects.count() == 0 and ManifestEntry.objects.count() == 0


def test_two_photos_of_one_user_are_refused(make_actor):
    actor = make_actor(consents=("processing", "training"))
    a, b = photo_make(owner_id=actor.pk), photo_make(owner_id=actor.pk)
    record = training_candidates()[0].consent_record_id
    items = [ManifestItem(user_id=actor.pk, photo_id=p.id, consent_record_id=record) for p in (a, b)]
    with pytest.raises(Conflict):
        reserve(items)


def test_eligible_set_prefers_the_photo_kept_for_training(make_actor, monkeypatch):
    clock = Clock(monkeypatch)
    actor = make_actor(consents=("processing", "training"))
    kept = photo_make(owner_id=actor.pk, kept_for_training=True)
    clock.advance(hours=1)
    photo_make(owner_id=actor.pk, kept_for_training=False)  # newer, but not chosen
    assert [i.photo_id for i in eligible_items()] == [kept.id]


def test_withdrawal_between_two_runs_removes_the_user_from_the_second(make_actor):
    stay = make_actor(consents=("processing", "training"))
    leave = make_actor(consents=("processing", "training"))
    for actor in (stay, leave):
        photo_make(owner_id=actor.pk, kept_for_training=True)
    first = reserve(eligible_items())
    run_finish(run_start(first))
    assert first.entries.count() == 2
    leave.client.put("/api/v1/me/consents/training", {"granted": False}, format="json")
    second = reserve(eligible_items())
    assert second.entries.count() == 1
    assert set(second.entries.values_list("photo_id", flat=True)) == set(
        Photo.objects.filter(owner_id=stay.pk).values_list("id", flat=True))


def test_manifest_hash_is_of_its_entries(make_actor):
    from governance.training import manifest_sha256, run_entries

    actor = make_actor(consents=("processing", "training"))
    photo_make(owner_id=actor.pk)
    run = reserve(eligible_items())
    assert run.manifest_sha256 == manifest_sha256(run_entries(run))
    ManifestEntry.objects.filter(run=run).update(photo_id="00000000-0000-0000-0000-000000000000")
    assert run.manifest_sha256 != manifest_sha256(run_entries(run))


# ---- the budget ledger -----------------------------------------------------------------------------------

@override_settings(DP_EPSILON_CAP=8.0, DP_USER_EPSILON_CAP=1000.0)
def test_a_run_that_would_pass_the_cap_is_refused_before_it_starts(make_actor):
    actor = make_actor(consents=("processing", "training"))
    photo_make(owner_id=actor.pk)
    items = eligible_items()
    first = reserve(items, noise=0.9)  # the filter's epsilon about 7.0
    # Reserved (not yet spent) epsilon already counts against the cap, composed with the new run
    with pytest.raises(BudgetExceeded) as refused:
        reserve(items, noise=0.9)  # 7.0 alone; under the filter with the first, 9.1
    assert refused.value.status == 409 and refused.value.details["cap"] == 8.0
    assert refused.value.details["total"] > 8.0 > refused.value.details["requested"]
    assert TrainingRun.objects.count() == 1
    # Finishing (even failing) releases nothing: the whole reservation stays spent
    run_finish(run_start(first), error="boom")
    first.refresh_from_db()
    assert first.status == RunStatus.FAILED and first.epsilon_spent == first.epsilon_reserved
    with pytest.raises(BudgetExceeded):
        reserve(items, noise=0.9)
    # A quieter run fits (about 0.6 alone; with the first, 7.0)
    assert reserve(items, noise=6.0).status == RunStatus.RESERVED
    # A separate lineage that fine-tunes no model of this one has its own budget
    assert reserve(items, noise=0.9, lineage="other").status == RunStatus.RESERVED


@pytest.mark.django_db(transaction=True)
@override_settings(DP_EPSILON_CAP=8.0, DP_USER_EPSILON_CAP=1000.0)
def test_concurrent_reservations_never_pass_the_cap_together(purposes, make_actor):
    if connection.vendor != "postgresql":
        pytest.skip("row locks across connections need PostgreSQL (SQLite serializes writers anyway)")
    actor = make_actor(consents=("processing", "training"))
    photo_make(owner_id=actor.pk)
    items = eligible_items()
    Lineage.objects.create(name="race", epsilon_cap=8.0, delta=1e-6, created_at=timezone.now())
    barrier, outcomes = threading.Barrier(4), []

    def ask() -> None:
        barrier.wait()
        try:
            reserve(items, noise=1.0, lineage="race")  # under the filter two reach 7.0, three 8.2
            outcomes.append("reserved")
        except BudgetExceeded:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "refused", "reserved", "reserved"]
    runs = list(TrainingRun.objects.filter(lineage__name="race"))
    assert dp.accounting.filter_epsilon(history=[h for r in runs for h in run_history(r)], delta=1e-6) <= 8.0


def test_erased_users_are_never_candidates(make_actor, django_capture_on_commit_callbacks):
    actor = make_actor(consents=("processing", "training"))
    photo_make(owner_id=actor.pk)
    with django_capture_on_commit_callbacks(execute=True):
        user_erase(user_id=actor.pk)
    assert eligible_items() == []
    assert not get_user_model().objects.filter(pk=actor.pk).exists()


def test_expired_photos_are_not_eligible(make_actor, monkeypatch, settings):
    clock = Clock(monkeypatch)
    actor = make_actor(consents=("processing", "training"))
    photo_make(owner_id=actor.pk)  # chosen for training: kept RETENTION_TRAINING
    clock.advance(seconds=settings.RETENTION_TRAINING.total_seconds() + 1)
    assert eligible_items() == []
    clock.advance(seconds=-2)
    assert len(eligible_items()) == 1
