"""Accounts remember when their e-mail address was confirmed (password-reset mail goes to confirmed ones)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_account")]

    operations = [
        migrations.AddField(
            model_name="account", name="email_verified_at", field=models.DateTimeField(blank=True, null=True),
        ),
    ]
