"""The trail filtered by a person and an action: one index range in seq order (issue 23), where the
(subject, seq) and (action, at) indexes had to be intersected and sorted (every such event of that person)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("governance", "0015_scale_audit_day_seqs"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["subject", "action", "seq"], name="audit_subject_action_seq"),
        ),
    ]
