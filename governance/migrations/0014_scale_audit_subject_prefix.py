"""The officer's subject filter takes a pseudonym's start: on PostgreSQL an index on the subject in the "C"
collation (byte order, where LIKE 'prefix%' is an index range whatever the database's collation) resolves a
prefix to the pseudonyms it names in one or two index probes (governance.selectors). SQLite, the
development database, has one writer and small trails: it keeps the (subject, seq) index alone."""

from django.db import migrations

CREATE = 'CREATE INDEX IF NOT EXISTS audit_subject_c ON governance_auditevent ((subject COLLATE "C"))'
DROP = "DROP INDEX IF EXISTS audit_subject_c"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ("governance", "0013_appends_audit_pending"),
    ]

    operations = [migrations.RunPython(create, drop)]
