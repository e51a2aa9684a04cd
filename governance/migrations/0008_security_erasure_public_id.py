"""Erasure requests get an opaque public id: audit events and reports named them by row number (erasure:1)."""

import uuid

from django.db import migrations, models


def fill(apps, schema_editor):
    ErasureRequest = apps.get_model("governance", "ErasureRequest")
    for request in ErasureRequest.objects.all().iterator():
        request.public_id = uuid.uuid4()
        request.save(update_fields=["public_id"])


class Migration(migrations.Migration):
    dependencies = [("governance", "0007_created_at_from_the_clock")]

    operations = [
        migrations.AddField("erasurerequest", "public_id", models.UUIDField(null=True)),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AlterField("erasurerequest", "public_id",
                              models.UUIDField(default=uuid.uuid4, unique=True, editable=False)),
    ]
