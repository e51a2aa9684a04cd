"""Data portability: everything held about a user, decrypted, as a zip streamed chunk by chunk."""

from __future__ import annotations

import html
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

from governance import clock
from governance.audit import audit_append, pseudonym
from governance.consent import consent_receipt
from governance.models import AuditEvent, ConsentRecord
from webplatform.jobs.models import TransformationJob, TransformationResult
from webplatform.objects import object_get
from webplatform.photos.models import Photo, StoredObject


class _Pipe:
    """A write-only file that hands what zipfile writes to the generator draining it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        chunks, self.chunks = self.chunks, []
        yield from chunks


def export_stream(*, user_id: int, privacy_report: Callable[[int], dict[str, Any]] | None = None
                  ) -> Iterator[bytes]:
    """Yield the export zip: one object decrypted at a time, so memory stays at one photo."""
    audit_append(action="export.generated", actor_id=user_id, subject_id=user_id, object_ref="export")
    pipe = _Pipe()
    manifest: list[dict[str, Any]] = []
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[call-overload]
        for model, folder in ((Photo, "photos"), (TransformationResult, "results")):
            for obj in model.objects.filter(owner_id=user_id, expires_at__gt=clock.now()).order_by("created_at"):
                name = f"{folder}/{obj.id}.{'png' if obj.content_type == 'image/png' else 'jpg'}"
                # Images are compressed already: store them, deflate only the JSON.
                archive.writestr(name, bytes(_decrypt(obj)), compress_type=zipfile.ZIP_STORED)
                manifest.append({"file": name, "kind": obj.KIND, "id": str(obj.id),
                                 "created_at": obj.created_at.isoformat(), "expires_at": obj.expires_at.isoformat()})
                yield from pipe.drain()
        documents = {
            "consents.json": [consent_receipt(r) for r in ConsentRecord.objects.filter(user_id=user_id)
                              .select_related("purpose", "policy").order_by("at", "pk")],
            "jobs.json": [_job(j) for j in TransformationJob.objects.filter(owner_id=user_id).order_by("created_at")],
            "audit_events.json": [_event(e) for e in AuditEvent.objects.filter(subject=pseudonym(user_id))],
            "privacy.json": privacy_report(user_id) if privacy_report else {},
        }
        for name, document in documents.items():
            archive.writestr(name, json.dumps(document, indent=2, default=str))
            manifest.append({"file": name, "kind": "document", "records": len(document)})
            yield from pipe.drain()
        manifest.append({"file": "index.html", "kind": "document"})
        archive.writestr("manifest.json", json.dumps({"generated_at": clock.now().isoformat(),
                                                      "subject": pseudonym(user_id), "files": manifest}, indent=2))
        archive.writestr("index.html", _index_html(manifest))
    yield from pipe.drain()


def _decrypt(obj: StoredObject) -> bytearray:
    return object_get(owner_id=obj.owner_id, kind=obj.KIND, object_id=obj.id, name=obj.storage_name)


def _job(job: TransformationJob) -> dict[str, Any]:
    return {"id": str(job.id), "photo_id": str(job.photo_id), "target_age": job.target_age, "status": job.status,
            "error": job.error, "model_version": job.model_version, "created_at": job.created_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None}


def _event(event: AuditEvent) -> dict[str, Any]:
    return {"seq": event.seq, "at": event.at.isoformat(), "action": event.action, "object_ref": event.object_ref,
            "details": event.details, "hash": event.hash}


def _index_html(manifest: list[dict[str, Any]]) -> str:
    rows = "\n".join(
        f'<tr><td><a href="{html.escape(m["file"])}">{html.escape(m["file"])}</a></td><td>{html.escape(m["kind"])}</td>'
        f'<td>{html.escape(m.get("created_at", ""))}</td></tr>' for m in manifest
    )
    return ("<!doctype html><meta charset='utf-8'><title>Your Timeveil data</title>"
            "<h1>Everything Timeveil holds about you</h1>"
            "<p>Photos and results are decrypted; consents.json holds your consent receipts; audit_events.json "
            "every recorded action about you; privacy.json the training runs that used your data.</p>"
            f"<table><tr><th>File</th><th>Kind</th><th>Created</th></tr>{rows}</table>")
