# The field holds the aging layers' version (`aging-layers-v3`), not a model's: renamed, data kept.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0003_journeys_due_reason'),
    ]

    operations = [
        migrations.RenameField(
            model_name='transformationjob',
            old_name='model_version',
            new_name='aging_version',
        ),
    ]
