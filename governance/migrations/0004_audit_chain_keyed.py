"""Re-anchor an existing audit chain from plain SHA-256 links to keyed (HMAC) links, and checkpoint it.

Fresh databases have no events and this does nothing. On an existing one the old chain is verified first
with the old scheme: a chain that is already broken stops the migration (re-keying would bless the
tampering), with a message saying what to do. Then every link is recomputed under the keyring-derived key
and one signed checkpoint is written for the new head.
"""

import hashlib
import json

from django.db import migrations

GENESIS = "0" * 64


def _legacy_hash(event, prev_hash):
    body = json.dumps([event.seq, event.at.isoformat(), event.action, event.actor, event.subject,
                       event.object_ref, event.details, prev_hash], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def reanchor(apps, schema_editor):
    AuditEvent = apps.get_model("governance", "AuditEvent")
    AuditHead = apps.get_model("governance", "AuditHead")
    if not AuditEvent.objects.exists():
        return
    from governance.audit import _event_hash, chain_key, checkpoint_key
    from governance.checkpoints import checkpoint_write

    key, old_prev, new_prev, expected = chain_key(), GENESIS, GENESIS, 1
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected or event.prev_hash != old_prev or event.hash != _legacy_hash(event, old_prev):
            raise RuntimeError(
                f"The audit chain is already broken at seq {expected}: run `manage.py verify_audit` with the "
                "previous release, investigate, and restore the audit tables from a backup before migrating.")
        old_prev = event.hash
        new_hash = _event_hash(seq=event.seq, at=event.at, action=event.action, actor=event.actor,
                               subject=event.subject, object_ref=event.object_ref, details=event.details,
                               prev_hash=new_prev, key=key)
        AuditEvent.objects.filter(seq=event.seq).update(prev_hash=new_prev, hash=new_hash)
        new_prev, expected = new_hash, expected + 1
    AuditHead.objects.update_or_create(pk=1, defaults={"seq": expected - 1, "hash": new_prev})
    checkpoint_write(key=checkpoint_key(), seq=expected - 1, head_hash=new_prev)


class Migration(migrations.Migration):
    dependencies = [("governance", "0003_lineage_trainingrun_manifestentry")]

    operations = [migrations.RunPython(reanchor, migrations.RunPython.noop)]
