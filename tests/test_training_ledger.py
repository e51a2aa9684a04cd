"""The privacy ledgers and the run state machine: ancestry and per-person composition, caps at reservation,
runs that execute once, the cohort floor, one image per run, and shown epsilons that are never too low."""

from __future__ import annotations

import io
import itertools
import statistics
import threading
from unittest.mock import patch

import pytest
from django.db import connection, connections
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from governance.audit import pseudonym
from governance.errors import BudgetExceeded, CohortTooSmall, Conflict, InvalidInput
from governance.models import ManifestEntry, RunStatus, SubjectLedger, TrainingRun
from governance.training import (
    ManifestItem,
    curve_load,
    lineage_committed_epsilon,
    lineage_totals,
    run_finish,
    run_reserve,
    run_start,
    subject_sums,
    training_candidates,
)
from inference import dp
from tests.lifecycle_support import photo_make
from webplatform.lifecycle.report import compliance_report
from webplatform.pages.selectors import budget_chart
from webplatform.photos.models import Photo
from webplatform.privacy import privacy_page, privacy_report
from webplatform.training import ledger as training_ledger
from webplatform.training.ledger import ancestry_epsilon, ledger_accountant, run_history
from webplatform.training.services import (
    RunRequest,
    eligible_items,
    released_count,
    run_plan,
    training_run_create,
    training_run_execute,
)

_colours = itertools.count(1)


def distinct_png(colour: int | None = None) -> bytes:
    """A small PNG whose pixels no other call repeats (unless given the same colour)."""
    c = next(_colours) if colour is None else colour
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (c % 256, (c // 256) % 256, 77)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _ledger_settings(settings):
    settings.DP_MIN_PARTICIPANTS = 1
    settings.DP_EPSILON_CAP = 1000.0
    settings.DP_USER_EPSILON_CAP = 1000.0


@pytest.fixture
def people(make_actor):
    """Factory: n people with training consent, each with one distinct photo."""
    def make(n: int):
        actors = [make_actor(consents=("processing", "training")) for _ in range(n)]
        for actor in actors:
            photo_make(owner_id=actor.pk, plaintext=distinct_png(), kept_for_training=True)
        return actors
    return make


def reserve(items, *, noise=6.0, q=0.1, steps=20, lineage="L", parent="", count_noise=10.0) -> TrainingRun:
    """A run whose epsilon is about 0.5 (noise 6), 0.8 (noise 3), 4.3 (noise 1) or 6.8 (noise 0.8)."""
    epsilon = dp.compose_epsilon(history=[(noise, q, steps), (count_noise, 1.0, 1)], delta=1e-6)
    return run_reserve(lineage_name=lineage, items=items, epsilon=epsilon, delta=1e-6, sample_rate=q,
                       noise_multiplier=noise, max_grad_norm=1.0, steps=steps, accountant="prv",
                       participants=len(items), count_noise=count_noise, parent_version=parent,
                       ledger=ledger_accountant())


def finish(run: TrainingRun, version: str = "") -> TrainingRun:
    run_finish(run_start(run), model_version=version)
    return run


def composed(*runs: TrainingRun) -> float:
    """PRV: the estimate for runs fixed in advance, shown beside the filter."""
    return dp.compose_epsilon(history=[h for r in runs for h in run_history(r)], delta=1e-6)


def filtered(*runs: TrainingRun, extra: list[tuple[float, float, int]] | None = None) -> float:
    """The Rényi filter's epsilon of these runs from scratch (what the caps check), at delta 1e-6."""
    return dp.accounting.filter_epsilon(history=[h for r in runs for h in run_history(r)] + (extra or []),
                                        delta=1e-6)


# ---- ancestry: a new lineage cannot escape the budget of the model it fine-tunes --------------------

def test_a_new_lineage_composes_the_ancestry_of_the_model_it_fine_tunes(people, settings):
    # Given a model trained in lineage A (filter epsilon about 5.8) and a cap of 6.5
    people(2)
    items = eligible_items()
    parent = finish(reserve(items, noise=1.0, lineage="a"), version="a-dp-1")
    settings.DP_EPSILON_CAP = 6.5
    # When a new lineage B asks to fine-tune that model with a run that alone would fit (5.8 again)
    with pytest.raises(BudgetExceeded) as refused:
        reserve(items, noise=1.0, lineage="b", parent="a-dp-1")
    # Then it is refused: B's filter holds A's run too (7.0)
    assert refused.value.details["total"] == pytest.approx(filtered(parent, extra=[(1.0, 0.1, 20),
                                                                                   (10.0, 1.0, 1)]))
    # And a fine-tune that fits with the ancestry gets a card epsilon over the whole ancestry
    child = reserve(items, lineage="b", parent="a-dp-1")
    epsilon, delta = ancestry_epsilon(child)
    assert epsilon == pytest.approx(composed(parent, child)) and epsilon > child.epsilon_reserved
    assert delta == 1e-6
    assert lineage_committed_epsilon(child.lineage, ledger_accountant()) == pytest.approx(
        filtered(parent, child))


# ---- each person's ledger ------------------------------------------------------------------------

def test_a_run_that_would_take_a_person_past_the_cap_leaves_that_person_out(people, settings):
    # Given one person who was in a run of lineage X (filter epsilon about 5.8)
    first, second = people(2)
    everyone = eligible_items()
    only_first = [i for i in everyone if i.user_id == first.pk]
    x = reserve(only_first, noise=1.0, lineage="x")
    settings.DP_USER_EPSILON_CAP = 6.5
    # When a run in another lineage would take them past the per-account cap (to 7.0)
    y = reserve(everyone, noise=1.0, lineage="y")
    # Then that run goes ahead without them: the other person is in its manifest, they are not
    assert list(y.entries.values_list("subject", flat=True)) == [pseudonym(second.pk)]
    # And they are charged only the noisy count that counted them, on a refused run's row
    (charge,) = TrainingRun.objects.filter(status=RunStatus.REFUSED)
    assert list(charge.entries.values_list("subject", flat=True)) == [pseudonym(first.pk)]
    assert charge.steps == 0 and charge.lineage.name == "y"
    assert privacy_report(first.pk)["total_epsilon"] == pytest.approx(filtered(x, charge))
    assert privacy_report(first.pk)["total_epsilon"] <= 6.5
    # And a run that would take every participant past the cap is refused, naming how many
    with pytest.raises(BudgetExceeded) as refused:
        reserve(only_first, noise=1.0, lineage="y")
    assert refused.value.details == {"participants_over_cap": 1, "user_cap": 6.5}


def test_people_whose_budget_is_spent_are_left_out_of_the_next_snapshot(people, settings):
    first, _ = people(2)
    reserve(eligible_items(), noise=0.8)  # filter epsilon about 9 for both
    settings.DP_USER_EPSILON_CAP = 8.0  # now both are past it
    assert eligible_items() == []
    settings.DP_USER_EPSILON_CAP = 10.0
    assert {i.user_id for i in eligible_items()} == {first.pk, first.pk + 1}


def test_the_privacy_report_composes_every_run_that_held_the_person_and_states_the_unit(people):
    first, second = people(2)
    everyone = eligible_items()
    a = finish(reserve(everyone, noise=1.0))
    b = reserve([i for i in everyone if i.user_id == first.pk], noise=3.0)  # reserved: counted already
    assert first.client.get("/api/v1/me/privacy").json()["prv_epsilon"] is None  # composed only if asked
    report = first.client.get("/api/v1/me/privacy?estimate=prv").json()
    assert [r["run_id"] for r in report["runs"]] == [str(a.id), str(b.id)]
    # The total is the Rényi filter's, the figure the cap checks, at the ledger's delta
    assert report["total_epsilon"] == report["filter_epsilon"] == pytest.approx(filtered(a, b))
    assert report["total_delta"] == 1e-6 and report["filter_order"] in dp.accounting.FILTER_ORDERS
    assert report["total_epsilon"] < filtered(a) + filtered(b)  # composed, not summed
    # PRV's figure for runs fixed in advance stands beside it, tighter, labelled as an estimate
    assert report["prv_epsilon"] == pytest.approx(composed(a, b))
    assert report["prv_epsilon"] <= report["total_epsilon"]
    # And the words claim no more than is proven: the unit is an account's photo, not a person; (epsilon,
    # delta) is not "except with probability delta"; the cap checks the filter, and PRV is an estimate
    assert "one account's photo with its near copies, not you as a person" in report["unit"]
    assert "cropped or edited copy" in report["unit"] and report["unit"] in report["explanation"]
    assert "except with probability" not in report["explanation"]
    assert "Rényi filter" in report["explanation"] and "does not yet" not in report["explanation"]
    assert "not what the cap checks" in report["explanation"]
    assert second.client.get("/api/v1/me/privacy").json()["total_epsilon"] == pytest.approx(filtered(a))


RUNS = st.lists(st.tuples(st.floats(0.8, 4.0), st.floats(0.01, 0.2), st.integers(1, 100), st.booleans()),
                min_size=1, max_size=3)


@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=RUNS)
def test_the_shown_epsilon_is_never_below_an_independent_pld_bound(people, runs):
    from dp_accounting import dp_event, pld

    # Given a fresh pair of people (earlier examples' people stay, out of these runs) and random runs
    me, other = people(2)
    everyone = [i for i in eligible_items() if i.user_id in {me.pk, other.pk}]
    mine = []
    for sigma, q, steps, with_me in runs:
        items = everyone if with_me else [i for i in everyone if i.user_id != me.pk]
        run = reserve(items, noise=sigma, q=q, steps=steps, lineage="prop")
        if with_me:
            mine.append(run)
    report = me.client.get("/api/v1/me/privacy?estimate=prv").json()
    # Google's dp_accounting (PLD, pessimistic), composing the same releases: the shown figure is never lower
    accountant = pld.PLDAccountant(value_discretization_interval=1e-3)
    for run in mine:
        accountant.compose(dp_event.PoissonSampledDpEvent(run.sample_rate, dp_event.GaussianDpEvent(
            run.noise_multiplier)), run.steps)
        accountant.compose(dp_event.GaussianDpEvent(run.count_noise))
    independent = accountant.get_epsilon(1e-6) if mine else 0.0
    # PLD's pessimistic rounding sits above the truth by about 0.5%, or up to about one interval (1e-3) at
    # tiny epsilons: the slack is the larger of the two (as in tests/inference/test_dp.py).
    slack = min(independent * 0.995, independent - 1e-3) - 1e-9
    assert report["prv_epsilon"] >= slack, (report["prv_epsilon"], independent)
    assert report["total_epsilon"] >= report["prv_epsilon"] - 1e-9  # the filter's bound is the looser


# ---- runs as a state machine ---------------------------------------------------------------------

def test_a_run_executes_once_from_reserved_and_a_failed_run_never_runs_again(people):
    people(1)
    run = reserve(eligible_items())
    # When execution fails (no promoted parent here), the run is FAILED and its reservation spent
    with pytest.raises(Exception, match="No promoted base model"):
        training_run_execute(run, RunRequest(target_epsilon=1.0), progress=False)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.epsilon_spent == run.epsilon_reserved
    # Then executing it again is refused and changes nothing
    with pytest.raises(Conflict, match="not reserved"):
        training_run_execute(run, RunRequest(target_epsilon=1.0), progress=False)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    with pytest.raises(Conflict):
        run_finish(run)  # a finished run cannot be finished again either


@pytest.mark.django_db(transaction=True)
def test_two_workers_starting_one_run_start_it_once(purposes, make_actor, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks across connections need PostgreSQL (SQLite serializes writers anyway)")
    settings.DP_MIN_PARTICIPANTS = 1
    actor = make_actor(consents=("processing", "training"))
    photo_make(owner_id=actor.pk, plaintext=distinct_png(), kept_for_training=True)
    run = reserve(eligible_items())
    barrier, outcomes = threading.Barrier(4), []

    def start() -> None:
        barrier.wait()
        try:
            run_start(TrainingRun.objects.get(pk=run.pk))
            outcomes.append("started")
        except Conflict:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "started"]


# ---- the cohort floor, the count, the unit ---------------------------------------------------------

def test_a_cohort_below_the_minimum_is_refused_with_a_clear_error(people, settings):
    people(2)
    settings.DP_MIN_PARTICIPANTS = 3
    with pytest.raises(CohortTooSmall) as refused:
        reserve(eligible_items())
    assert refused.value.status == 409 and refused.value.code == "cohort_too_small"
    # the count stays private
    assert "at least 3" in refused.value.message and "2" not in refused.value.message
    assert TrainingRun.objects.count() == 0


def test_the_floor_applies_to_the_released_count_and_a_refusal_after_it_is_charged(people, settings):
    first, second = people(2)
    settings.DP_MIN_PARTICIPANTS, settings.DP_COUNT_NOISE = 3, 0.1  # the released count is 2 (5 sigma)
    request = RunRequest(target_epsilon=2.0, batch_size=1)
    # When a run is asked for below the floor, it is refused without a figure derived from the count
    with pytest.raises(CohortTooSmall) as refused:
        training_run_create(request)
    assert not any(c.isdigit() for c in refused.value.message.replace("3", ""))
    # But the noisy count was drawn and released: the refusal charges it to both people, not the lineage
    (charge,) = TrainingRun.objects.all()
    assert charge.status == RunStatus.REFUSED and charge.steps == 0 and charge.participants == 2
    count_epsilon = dp.accounting.filter_epsilon(history=[(0.1, 1.0, 1)], delta=settings.DP_DELTA)
    for person in (first, second):
        assert privacy_report(person.pk)["total_epsilon"] == pytest.approx(count_epsilon)
    assert lineage_committed_epsilon(charge.lineage, ledger_accountant()) == 0.0
    # And repeated attempts spend budgets instead of averaging free counts: past the cap nobody is counted
    settings.DP_USER_EPSILON_CAP = 1.5 * count_epsilon
    with pytest.raises(InvalidInput, match="No eligible photos"):
        training_run_create(request)
    # The floor is on the released count, never the exact one (the count's noise is random: fixed here)
    settings.DP_USER_EPSILON_CAP, settings.DP_COUNT_NOISE = 1000.0, 10.0
    with patch("webplatform.training.services.released_count", return_value=3):
        assert training_run_create(request).status == RunStatus.RESERVED


def test_a_target_epsilon_covers_the_whole_release_count_included(settings):
    settings.DP_COUNT_NOISE = 10.0
    plan = run_plan(RunRequest(target_epsilon=2.0, batch_size=16, epochs=1), 200)
    assert 2.0 - dp.accounting.EPSILON_TOLERANCE - 1e-9 <= plan.epsilon <= 2.0
    assert plan.epsilon == pytest.approx(dp.compose_epsilon(
        history=[(plan.noise_multiplier, plan.sample_rate, plan.steps), (10.0, 1.0, 1)], delta=plan.delta))


def test_a_refused_plan_names_nothing_derived_from_the_count(settings):
    with pytest.raises(InvalidInput) as refused:
        run_plan(RunRequest(target_epsilon=1e-9, batch_size=16, epochs=1), 37)
    assert not any(c.isdigit() for c in refused.value.message)  # no sample rate, steps or delta


def test_each_persons_and_lineages_total_is_stored_at_reservation_and_pages_read_it(people, monkeypatch):
    first, _ = people(2)
    everyone = eligible_items()
    a = finish(reserve(everyone, noise=1.0))
    b = reserve([i for i in everyone if i.user_id == first.pk], noise=3.0)
    assert b.lineage_epsilon_after == pytest.approx(filtered(a, b))
    # When the running totals can no longer be computed, the privacy page still answers from the stored ones
    def no_totals(runs, delta):
        raise AssertionError("a page recomputed the running totals")

    monkeypatch.setattr(training_ledger, "filter_totals", no_totals)
    monkeypatch.setattr("webplatform.privacy.filter_totals", no_totals)
    report = first.client.get("/api/v1/me/privacy").json()
    assert report["total_epsilon"] == pytest.approx(filtered(a, b))
    assert [r["total_after"] for r in report["runs"]] == pytest.approx([filtered(a), filtered(a, b)])
    page = Client()
    page.force_login(first.user)
    response = page.get("/privacy")
    assert response.status_code == 200 and f"{filtered(a, b):.2f}" in response.content.decode()


def test_the_prv_estimate_is_left_out_past_its_bound_and_the_filter_figure_stays(people, settings):
    first, _ = people(2)
    everyone = eligible_items()
    a = reserve(everyone, noise=3.0)
    b = reserve([i for i in everyone if i.user_id == first.pk], noise=3.0)
    settings.DP_PRV_ESTIMATE_MAX_RUNS = 1
    report = privacy_report(first.pk, prv=True)
    assert report["prv_epsilon"] is None and "PRV" in report["explanation"]
    assert "not computed for more than 1 runs" in report["explanation"]
    assert report["total_epsilon"] == pytest.approx(filtered(a, b))
    page = Client()
    page.force_login(first.user)
    response = page.get("/privacy?estimate=prv")
    assert response.status_code == 200 and 'id="prv-epsilon"' not in response.content.decode()
    settings.DP_PRV_ESTIMATE_MAX_RUNS = 2
    asked = page.get("/privacy?estimate=prv").content.decode()
    assert 'id="prv-epsilon"' in asked and f"{composed(a, b):.2f}" in asked


def test_a_runs_finishing_time_is_shown_at_the_configured_granularity(people, settings):
    people(1)
    run = finish(reserve(eligible_items()))
    step = settings.DP_RUN_TIME_GRANULARITY.total_seconds()
    assert run.finished_at.timestamp() % step == 0
    assert TrainingRun.objects.get(pk=run.pk).finished_at == run.finished_at


def test_reservation_and_compliance_report_compose_the_same_ancestries(people, settings):
    # Given lineage b, whose first run fine-tuned a-dp-1 (filter epsilon about 5.8), and a second
    # parent-less run
    people(2)
    items = eligible_items()
    a = finish(reserve(items, noise=1.0, lineage="a"), version="a-dp-1")
    settings.DP_EPSILON_CAP = 6.5
    b1 = finish(reserve(items, noise=6.0, lineage="b", parent="a-dp-1"), version="b-dp-1")
    # When b's next run starts from another model, it still composes the ancestry of b's earlier parent
    with pytest.raises(BudgetExceeded) as refused:
        reserve(items, noise=1.0, lineage="b")
    total = filtered(a, b1, extra=[(1.0, 0.1, 20), (10.0, 1.0, 1)])
    assert refused.value.details["total"] == pytest.approx(total)
    # And the compliance report's committed figure is the reservation's
    committed = lineage_committed_epsilon(b1.lineage, ledger_accountant())
    assert refused.value.details["committed"] == pytest.approx(committed) == pytest.approx(filtered(a, b1))
    officer_view = {row["lineage"]: row for row in compliance_report()["training"]["lineages"]}
    assert officer_view["b"]["epsilon_committed"] == pytest.approx(committed)



def test_the_budget_chart_reads_the_ledgers_lineage_totals_ancestry_included_even_unstored(people, settings):
    # Given lineage b, whose first run fine-tuned a-dp-1, then a parent-less second run
    people(2)
    items = eligible_items()
    a = finish(reserve(items, noise=3.0, lineage="a"), version="a-dp-1")
    b1 = finish(reserve(items, noise=6.0, lineage="b", parent="a-dp-1"), version="b-dp-1")
    b2 = reserve(items, noise=6.0, lineage="b")
    stored = {r.pk: r.lineage_epsilon_after for r in (b1, b2)}
    assert stored == {b1.pk: pytest.approx(filtered(a, b1)), b2.pk: pytest.approx(filtered(a, b1, b2))}
    # When the stored totals are gone (rows written without the ledger), the ledger composes the same set
    TrainingRun.objects.update(lineage_epsilon_after=None)
    lineage_b = b1.lineage
    assert lineage_totals(lineage_b, ledger_accountant()) == {k: pytest.approx(v) for k, v in stored.items()}
    # And the officer's budget chart draws those figures, the ancestry of a-dp-1 included
    chart = budget_chart()["chart"]
    drawn = next(series.values for series in chart.series if series.name == "b")
    assert drawn[-2:] == [round(stored[b1.pk], 3), round(stored[b2.pk], 3)]


def test_the_gauge_splits_the_filter_total_into_settled_and_in_progress_runs(people):
    # Given a finished run, then one still reserved
    first, _ = people(2)
    everyone = eligible_items()
    a = finish(reserve(everyone, noise=3.0))
    b = reserve(everyone, noise=1.0)
    # Then the settled part is the filter over the finished run alone; the reserved run adds the rest
    report, runs, spent, reserved = privacy_page(first.pk)
    assert report == privacy_report(first.pk)
    assert [r.pk for r in runs] == [a.pk, b.pk]
    assert spent == pytest.approx(filtered(a)) and spent + reserved == pytest.approx(filtered(a, b))
    page = Client()
    page.force_login(first.user)
    html = page.get("/privacy").content.decode()
    assert f'<strong id="spent">{filtered(a):.2f}' in html
    assert html.count("keyed fingerprint") == 1  # the unit is said once, in the budget card, not twice
    # And once it finishes, all of it is spent
    finish(b)
    assert privacy_page(first.pk)[2:] == (pytest.approx(filtered(a, b)), 0.0)

def test_the_released_count_carries_gaussian_noise_of_the_configured_scale(settings):
    settings.DP_COUNT_NOISE = 10.0
    draws = [released_count(1000) for _ in range(3000)]
    assert abs(statistics.mean(draws) - 1000) < 4 * 10 / 3000 ** 0.5 + 0.5
    assert statistics.stdev(draws) == pytest.approx(10.0, rel=0.08)


def test_one_image_uploaded_by_two_accounts_enters_a_run_once(make_actor):
    twins = [make_actor(consents=("processing", "training")) for _ in range(2)]
    other = make_actor(consents=("processing", "training"))
    for actor in twins:
        photo_make(owner_id=actor.pk, plaintext=distinct_png(colour=4242), kept_for_training=True)
    photo_make(owner_id=other.pk, plaintext=distinct_png(), kept_for_training=True)
    items = eligible_items()
    assert len(items) == 2 and {i.user_id for i in items} >= {other.pk}
    assert len({i.content_sha256 for i in items}) == 2
    # And a manifest built by hand with the same image twice is refused at reservation
    taken = next(i for i in items if i.user_id != other.pk)
    left_out = next(a for a in twins if a.pk != taken.user_id)
    record = next(c.consent_record_id for c in training_candidates() if c.user_id == left_out.pk)
    forged = [taken, ManifestItem(user_id=left_out.pk, photo_id=Photo.objects.get(owner_id=left_out.pk).id,
                                  consent_record_id=record, content_sha256=taken.content_sha256)]
    with pytest.raises(Conflict, match="only once"):
        reserve(forged)


def test_a_photo_showing_more_than_one_face_is_never_trained_on(make_actor):
    group, single = (make_actor(consents=("processing", "training")) for _ in range(2))
    photo_make(owner_id=group.pk, plaintext=distinct_png(), kept_for_training=True)
    photo_make(owner_id=single.pk, plaintext=distinct_png(), kept_for_training=True)
    Photo.objects.filter(owner_id=group.pk).update(face_count=2)
    Photo.objects.filter(owner_id=single.pk).update(face_count=1)
    assert [i.user_id for i in eligible_items()] == [single.pk]


# ---- the Rényi filter's stored sums ----------------------------------------------------------------------

def _subject_history(subject: str) -> list[tuple[float, float, int]]:
    runs = TrainingRun.objects.filter(entries__subject=subject).order_by("created_at", "pk")
    return [step for run in runs for step in run_history(run)]


@hsettings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_adaptive_runs_never_take_anyone_past_the_cap_and_stored_sums_equal_a_recomputation(
        people, settings, data):
    # Given three people and a per-account cap, and runs each chosen after seeing the ledger (who is in,
    # the noise, the sample rate: as the noisy counts and the ledger choose them in production)
    settings.DP_USER_EPSILON_CAP = cap = data.draw(st.sampled_from([3.0, 6.0]), label="cap")
    mine = {a.pk for a in people(3)}
    for n in range(data.draw(st.integers(2, 5), label="runs")):
        items = [i for i in eligible_items() if i.user_id in mine]
        if not items:
            break
        sums = subject_sums([pseudonym(i.user_id) for i in items], ledger_accountant())
        spent = max(ledger_accountant().epsilon(c, settings.DP_DELTA) for c in sums.values())
        chosen = data.draw(st.lists(st.sampled_from(items), min_size=1, unique=True), label=f"who {n}")
        noise = data.draw(st.floats(0.9, 4.0) if spent < cap / 2 else st.floats(1.5, 6.0), label="noise")
        try:
            reserve(chosen, noise=noise, q=data.draw(st.sampled_from([0.05, 0.2]), label="q"), lineage="ad")
        except BudgetExceeded:
            pass  # everyone it held was at the cap: the count was released before, in production charged
    # Then nobody's filter epsilon, recomputed from scratch from every run that held them, passes the cap
    for subject in (pseudonym(u) for u in mine):
        history = _subject_history(subject)
        from_scratch = dp.accounting.filter_epsilon(history=history, delta=settings.DP_DELTA)
        assert from_scratch <= cap + 1e-9 or not history
        # And the stored running sums are that recomputation, order by order, and so is the last stored total
        row = SubjectLedger.objects.filter(subject=subject).first()
        if history:
            assert curve_load(row.rdp) == pytest.approx(dp.accounting.rdp_curve(history))
            last = ManifestEntry.objects.filter(subject=subject).order_by("run__created_at", "run__pk").last()
            assert last.epsilon_after == pytest.approx(from_scratch)


def test_the_data_migration_fills_the_stored_sums_as_reservations_store_them(people, settings):
    import importlib

    from django.apps import apps

    # Given runs of every kind (a refused count charge, a fine-tune with its parent, a person left out)
    first, _ = people(2)
    everyone = eligible_items()
    finish(reserve([i for i in everyone if i.user_id == first.pk], noise=1.0, lineage="a"), version="a-dp-1")
    settings.DP_USER_EPSILON_CAP = 6.5
    reserve(everyone, noise=6.0, lineage="b", parent="a-dp-1")
    reserve(everyone, noise=1.0, lineage="c")  # would take the first past 6.5 (to 7.0): left out
    def snapshot() -> dict[str, dict]:
        return {"rdp": dict(TrainingRun.objects.values_list("pk", "rdp")),
                "lineage": dict(TrainingRun.objects.values_list("pk", "lineage_epsilon_after")),
                "entries": dict(ManifestEntry.objects.values_list("pk", "epsilon_after")),
                "ledgers": dict(SubjectLedger.objects.values_list("subject", "rdp"))}

    stored = snapshot()
    assert TrainingRun.objects.filter(status=RunStatus.REFUSED).exists()
    # When the stored figures are wiped, as on rows from before the filter, and the migration fills them
    TrainingRun.objects.update(rdp=None, lineage_epsilon_after=None)
    ManifestEntry.objects.update(epsilon_after=None)
    SubjectLedger.objects.all().delete()
    importlib.import_module("webplatform.training.migrations.0001_dp_fill_filter_sums").fill(apps, None)
    # Then they are what the reservations stored
    filled = snapshot()
    for name, figures in stored.items():
        assert filled[name].keys() == figures.keys(), name
        for key, value in figures.items():
            assert filled[name][key] == (value if value is None else pytest.approx(value)), (name, key)


def test_rows_written_without_the_ledger_are_computed_from_their_parameters(people):
    # Given runs whose stored figures were never written (rows made directly, as fixtures and old data do)
    first, _ = people(2)
    everyone = eligible_items()
    a, b = reserve(everyone, noise=1.0), reserve(everyone, noise=3.0)
    TrainingRun.objects.update(rdp=None, lineage_epsilon_after=None)
    ManifestEntry.objects.update(epsilon_after=None)
    # Then the report computes the same running totals from the runs' parameters, never lower
    report = privacy_report(first.pk)
    assert [r["total_after"] for r in report["runs"]] == pytest.approx([filtered(a), filtered(a, b)])
    assert report["total_epsilon"] == pytest.approx(filtered(a, b))
    page = Client()
    page.force_login(first.user)
    assert page.get("/privacy").status_code == 200


def test_the_count_is_drawn_only_for_people_whose_filter_takes_it_under_the_lock(people, settings):
    # Given a snapshot taken while both people had budget, and a run that then spent the first's
    first, second = people(2)
    snapshot = eligible_items()
    heavy = reserve([i for i in snapshot if i.user_id == first.pk], noise=0.9)  # about 7.0
    settings.DP_USER_EPSILON_CAP = 6.98  # one more count (6.97 to 6.99 under the filter) no longer fits
    # When an attempt releases its count from that stale snapshot
    with patch("webplatform.training.services.eligible_items", return_value=snapshot), \
            patch("webplatform.training.services.released_count", return_value=1) as count:
        run = training_run_create(RunRequest(target_epsilon=2.0, batch_size=1))
    # Then the first was neither counted nor charged: the filter was checked under the lock
    count.assert_called_once_with(1)
    assert list(run.entries.values_list("subject", flat=True)) == [pseudonym(second.pk)]
    assert privacy_report(first.pk)["total_epsilon"] == pytest.approx(filtered(heavy))
