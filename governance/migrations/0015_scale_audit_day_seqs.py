"""Per-day seq bounds of the events already chained (audit_rollups kinds "first" / "last"), which the trail's
date filters read from now on."""

from datetime import UTC

from django.db import migrations
from django.db.models import Max, Min
from django.db.models.functions import TruncDate


def backfill(apps, schema_editor):
    from governance.audit_rollups import SEQ_FIRST, SEQ_LAST

    events = apps.get_model("governance", "AuditEvent").objects
    daily = apps.get_model("governance", "AuditDaily")
    days = (events.annotate(day=TruncDate("at", tzinfo=UTC)).values("day")
            .annotate(low=Min("seq"), high=Max("seq")).order_by("day"))
    daily.objects.filter(kind__in=[SEQ_FIRST, SEQ_LAST], action="").delete()
    daily.objects.bulk_create([daily(kind=kind, action="", day=row["day"], n=row[field])
                               for row in days for kind, field in ((SEQ_FIRST, "low"), (SEQ_LAST, "high"))],
                              batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ("governance", "0014_scale_audit_subject_prefix"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
