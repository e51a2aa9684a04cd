"""Governance tables: purposes and policies, the consent ledger, wrapped data keys, the audit chain."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Purpose(models.Model):
    """A reason personal data may be used (`processing`, `training`); consent is given per purpose."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.slug


class PolicyVersion(models.Model):
    """One published version of a purpose's policy text; consent binds to a version and its hash."""

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    text = models.TextField()
    sha256 = models.CharField(max_length=64)
    published_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["purpose", "version"], name="one_policy_per_version")]
        ordering = ["purpose_id", "version"]


class AppendOnlyError(Exception):
    """An append-only row was asked to change."""


class ConsentRecord(models.Model):
    """One grant or withdrawal. Append-only: the current state is the newest record per purpose."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # the receipt id
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="consents")
    subject = models.CharField(max_length=64, db_index=True)  # pseudonym, for receipts and audit
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT)
    policy = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT)
    granted = models.BooleanField()
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "purpose", "at"])]

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Consent records are append-only; record a new grant or withdrawal.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class DataKey(models.Model):
    """A user's data key, stored only wrapped by a versioned KEK. Deleting the row crypto-shreds the user."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_key")
    kek_version = models.PositiveIntegerField()
    wrapped = models.BinaryField()
    created_at = models.DateTimeField()  # set from governance.clock, like every other timestamp
    rewrapped_at = models.DateTimeField(null=True)


class AuditHead(models.Model):
    """The chain head (a single row): locked for update so concurrent appends queue instead of forking."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)


class AuditEvent(models.Model):
    """One link of the audit hash chain. Actors and subjects are pseudonyms; details never hold content."""

    seq = models.BigIntegerField(primary_key=True)
    at = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=64)
    actor = models.CharField(max_length=64, db_index=True)
    subject = models.CharField(max_length=64)
    object_ref = models.CharField(max_length=128, blank=True)
    details = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        # The trail's filters, each with seq so one index serves the filter and the keyset page order.
        indexes = [models.Index(fields=["action", "seq"], name="audit_action_seq"),
                   models.Index(fields=["subject", "seq"], name="audit_subject_seq"),
                   models.Index(fields=["subject", "action", "seq"], name="audit_subject_action_seq"),
                   models.Index(fields=["action", "at"], name="audit_action_at")]


class AuditPending(models.Model):
    """An audited action's event waiting to be chained (group commit, governance.audit): inserted in the
    action's transaction without the head lock, moved into AuditEvent in order by whoever holds the head.
    `mac` (HMAC under a key the database does not hold) lets the sequencer refuse rows a database writer
    planted or edited here instead of chaining them as genuine."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField()
    action = models.CharField(max_length=64)
    actor = models.CharField(max_length=64)
    subject = models.CharField(max_length=64)
    object_ref = models.CharField(max_length=128, blank=True)
    details = models.JSONField(default=dict)
    mac = models.CharField(max_length=64)


class AuditDaily(models.Model):
    """Per-day counts of some audit actions, kept in the append's transaction (audit_rollups), so charts read
    a row per day instead of every event: `kind` "at" counts events by their day, "deadline" by the day of
    the deadline their details name, "gone" those same events by their own day. A chart's source, never
    evidence: the chain stays the record."""

    day = models.DateField()
    action = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "action", "day"], name="audit_daily_key")]


class AuditVerification(models.Model):
    """The stored result of one full chain verification (the scheduled job's), signed with the checkpoint
    key so a database writer cannot plant an "intact" result; pages show the newest instead of re-walking."""

    at = models.DateTimeField()
    ok = models.BooleanField()
    reason = models.CharField(max_length=32, blank=True)
    first_bad_seq = models.BigIntegerField(null=True)
    events_checked = models.BigIntegerField()
    verified_through = models.BigIntegerField()  # the head seq the walk ended at
    checkpoint_seq = models.BigIntegerField(null=True)
    checkpoints_checked = models.BigIntegerField()
    seconds = models.FloatField()
    mac = models.CharField(max_length=64)


class ErasureStatus(models.TextChoices):
    ACCEPTED = "accepted"
    PURGING = "purging"
    DONE = "done"


class ErasureRequest(models.Model):
    """The tombstone an erasure leaves: pseudonym, times, counts. The receipt is stored only as a hash."""

    receipt_sha256 = models.CharField(max_length=64, unique=True)
    # What audit events and reports call the request: the row number would count erasures in the open.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subject = models.CharField(max_length=64)  # pseudonym: links to audit events, not to a person
    user_id = models.BigIntegerField(null=True)  # what to purge; cleared once the purge is done
    status = models.CharField(max_length=10, choices=ErasureStatus.choices, default=ErasureStatus.ACCEPTED)
    requested_at = models.DateTimeField()
    deadline = models.DateTimeField()
    purge_started_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)
    counts = models.JSONField(default=dict)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["requested_at"]


class Lineage(models.Model):
    """A line of model versions trained one from another; its privacy budget caps their total epsilon."""

    name = models.SlugField(unique=True)
    epsilon_cap = models.FloatField()
    delta = models.FloatField()
    created_at = models.DateTimeField()  # set from governance.clock, like every other timestamp


class RunStatus(models.TextChoices):
    # RESERVED -> RUNNING (once, under a row lock) -> SUCCEEDED | FAILED. Every state counts its full
    # reservation against the caps: the plan is fixed, and a failed run may have touched the data.
    RESERVED = "reserved"  # manifest frozen and epsilon reserved; training not started
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # never executed again: a new run is a new reservation
    # Refused after its noisy participant count was drawn: no training, but the count was released, so it
    # charges the count's epsilon to every person counted (their ledgers, not the lineage's: no model).
    REFUSED = "refused"


class TrainingRun(models.Model):
    """One DP training run: its frozen manifest (by hash), public privacy parameters, and what it spent.

    Every figure here may be shown: `participants` is the participant count released with Gaussian noise of
    std `count_noise` (an accounted mechanism); sample rate, steps and delta are planned from that noisy
    count, so they reveal nothing more. The exact count exists only as the number of manifest entries.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lineage = models.ForeignKey(Lineage, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RESERVED)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    manifest_sha256 = models.CharField(max_length=64)
    participants = models.PositiveIntegerField()  # released count: exact count + N(0, count_noise^2), rounded
    # 0 on runs from before noisy counts: their ledger is infinite
    count_noise = models.FloatField(default=0.0)
    sample_rate = models.FloatField()
    noise_multiplier = models.FloatField()
    max_grad_norm = models.FloatField()
    steps = models.PositiveIntegerField()
    delta = models.FloatField()
    accountant = models.CharField(max_length=10)
    epsilon_reserved = models.FloatField()
    epsilon_spent = models.FloatField(null=True)  # set when the run ends: its whole reservation
    model_version = models.CharField(max_length=80, blank=True)
    parent_version = models.CharField(max_length=80, blank=True)
    metrics = models.JSONField(default=dict)
    error = models.CharField(max_length=200, blank=True)
    # Bumped by the process training the run; gone stale, its worker died and the sweeper fails the run.
    heartbeat_at = models.DateTimeField(null=True)
    # A queued run's outbox (`train --queue`): what to train, and when it was last handed to the broker.
    # None for a run trained in the process that reserved it.
    queued_request = models.JSONField(null=True)
    published_at = models.DateTimeField(null=True)
    # This run's release (DP-SGD steps and the noisy count) as RDP at inference.dp.accounting.FILTER_ORDERS,
    # one number per order (None for an infinite one: no noise); computed at reservation.
    rdp = models.JSONField(null=True)
    # The lineage's Rényi-filter epsilon with this run (what its cap checks: its runs and its parents'
    # ancestries), computed once at reservation under the ledger lock; null on refused runs (no model).
    lineage_epsilon_after = models.FloatField(null=True)

    class Meta:
        ordering = ["created_at"]


class ManifestEntry(models.Model):
    """One participant of a run: the photo, the consent record that allowed it, the owner's pseudonym."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="entries")
    subject = models.CharField(max_length=64, db_index=True)  # pseudonym: survives erasure like the audit
    photo_id = models.UUIDField()
    consent_record_id = models.UUIDField()
    # The subject's Rényi-filter epsilon (what the per-account cap checks) over every run that held them,
    # this one included, computed once at reservation under the ledger lock; pages read it.
    epsilon_after = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "subject"], name="one_photo_per_user_per_run")]


class SubjectLedger(models.Model):
    """A subject's running RDP sums at inference.dp.accounting.FILTER_ORDERS over every release that held
    them (runs and charged counts): the Rényi filter's state, updated under the ledger lock, so a
    reservation reads one row per person whatever their history."""

    subject = models.CharField(max_length=64, unique=True)  # pseudonym, as ManifestEntry
    rdp = models.JSONField()  # one number per order; None for an infinite one


class TrainingDigest(models.Model):
    """One keyed part of a counted training photo's perceptual hash (inference.serving.phash): HMAC under a
    key derived from the keyring, never the hash. Two photos sharing a part are one image to the ledger.
    Goes with the photo, and with the person on erasure or withdrawal of training consent."""

    subject = models.CharField(max_length=64, db_index=True)  # pseudonym of the photo's owner
    photo_id = models.UUIDField(db_index=True)
    digest = models.CharField(max_length=64, db_index=True)  # hex HMAC-SHA256 of (part index, part bits)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["photo_id", "digest"], name="training_digest_once")]


class PrivacyAudit(models.Model):
    """One run of `manage.py audit_privacy` against a version of the DP code; promotion needs a passed one."""

    code_version = models.CharField(max_length=64, db_index=True)  # SHA-256 of inference/dp's sources
    passed = models.BooleanField()
    report = models.JSONField(default=dict)  # per claimed epsilon: lower bounds, measured noise and rate
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at"]
