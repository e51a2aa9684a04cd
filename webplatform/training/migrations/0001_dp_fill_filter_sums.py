"""Fill the Rényi filter's stored sums for runs reserved before the ledgers kept them: each run's RDP curve,
each subject's running sums, and the filter epsilons stored after each run (a person's and a lineage's),
replacing the PRV totals those columns held. Here, not in governance, because the curves come from
inference.dp (governance imports none of it); the same pass recomputes everything if FILTER_ORDERS ever
changes."""

from django.conf import settings
from django.db import migrations


def fill(apps, schema_editor):
    from inference.dp.accounting import filter_conversion, rdp_curve

    from governance.training import curve_add, curve_dump

    TrainingRun = apps.get_model("governance", "TrainingRun")
    ManifestEntry = apps.get_model("governance", "ManifestEntry")
    SubjectLedger = apps.get_model("governance", "SubjectLedger")
    runs = list(TrainingRun.objects.select_related("lineage").order_by("created_at", "pk"))
    curves = {}
    for run in runs:
        curves[run.pk] = rdp_curve([(run.noise_multiplier, run.sample_rate, run.steps),
                                    (run.count_noise, 1.0, 1)])
        run.rdp = curve_dump(curves[run.pk])
    by_version = {r.model_version: r for r in runs if r.model_version}

    def ancestry(version):
        chain, seen = [], set()
        while version and version not in seen and version in by_version:
            seen.add(version)
            chain.append(by_version[version])
            version = by_version[version].parent_version
        return chain

    # The lineage's set at each reservation, as governance.training._lineage_runs composes it then
    for i, run in enumerate(runs):
        if run.status == "refused":
            run.lineage_epsilon_after = None
            continue
        own = [r for r in runs[:i + 1] if r.lineage_id == run.lineage_id and r.status != "refused"]
        members = {r.pk: r for p in {r.parent_version for r in own} for r in ancestry(p)}
        members.update({r.pk: r for r in own})
        total = curve_add(*(curves[pk] for pk in members))
        run.lineage_epsilon_after = filter_conversion(total, run.lineage.delta)[0]
    TrainingRun.objects.bulk_update(runs, ["rdp", "lineage_epsilon_after"], batch_size=500)

    sums = {}
    order = {run.pk: i for i, run in enumerate(runs)}
    entries = sorted(ManifestEntry.objects.all(), key=lambda e: order[e.run_id])
    for entry in entries:
        curve = curves[entry.run_id]
        sums[entry.subject] = curve_add(sums[entry.subject], curve) if entry.subject in sums else curve
        entry.epsilon_after = filter_conversion(sums[entry.subject], settings.DP_DELTA)[0]
    ManifestEntry.objects.bulk_update(entries, ["epsilon_after"], batch_size=500)
    SubjectLedger.objects.all().delete()
    SubjectLedger.objects.bulk_create([SubjectLedger(subject=s, rdp=curve_dump(c)) for s, c in sums.items()],
                                      batch_size=500)


class Migration(migrations.Migration):

    dependencies = [("governance", "0017_dp_filter_sums")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
