"""Usernames are unique regardless of case, in the database too: two racing sign-ups cannot both win."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [
        migrations.RunSQL(
            "CREATE UNIQUE INDEX accounts_username_ci ON auth_user (LOWER(username));",
            reverse_sql="DROP INDEX accounts_username_ci;",
        )
    ]
