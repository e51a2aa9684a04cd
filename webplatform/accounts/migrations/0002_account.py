"""Accounts get an opaque public id and a unique look-alike name key; existing users get theirs here."""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def backfill(apps, schema_editor):
    from webplatform.accounts.services import username_key

    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Account = apps.get_model("accounts", "Account")
    seen: set[str] = set()
    for user in User.objects.order_by("pk").iterator():
        key = username_key(user.username)
        # Existing look-alike pairs keep working; only the older one holds the name key.
        Account.objects.create(user_id=user.pk, public_id=uuid.uuid4(), name_key=None if key in seen else key)
        seen.add(key)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_username_unique_ci"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Account",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("public_id", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("name_key", models.CharField(max_length=64, null=True, unique=True)),
                ("user", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="account",
                                              to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
