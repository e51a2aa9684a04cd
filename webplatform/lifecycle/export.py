"""Data portability: everything held about a user, decrypted, as a zip streamed chunk by chunk."""

from __future__ import annotations

import html
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from PIL import Image, UnidentifiedImageError

from governance import clock
from governance.audit import audit_append, pseudonym
from governance.audit_actions import AuditAction
from governance.consent import consent_receipt
from governance.models import AuditEvent, ConsentRecord
from governance.selectors import audit_events
from webplatform.encrypted_store import object_get
from webplatform.jobs.models import TransformationJob, TransformationResult
from webplatform.photos.models import StoredObject, file_extension
from webplatform.photos.selectors import photos_live
from webplatform.photos.thumbnails import thumbnail_jpeg


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
    # Chained now, not queued: the export lists the trail, this event included
    audit_append(action=AuditAction.EXPORT_GENERATED, actor_id=user_id, subject_id=user_id,
                 object_ref="export", chained=True)
    pipe = _Pipe()
    manifest: list[dict[str, Any]] = []
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[call-overload]
        now = clock.now()
        held: tuple[tuple[Iterable[StoredObject], str], ...] = (
            (photos_live(owner_id=user_id, newest_first=False), "photos"),
            (TransformationResult.objects.filter(owner_id=user_id, expires_at__gt=now).select_related("job")
             .order_by("created_at"), "results"),
        )
        for objects, folder in held:
            for obj in objects:
                name = f"{folder}/{obj.id}.{file_extension(obj.content_type)}"
                data = bytes(_decrypt(obj))
                # Images are compressed already: store them, deflate only the JSON.
                archive.writestr(name, data, compress_type=zipfile.ZIP_STORED)
                entry: dict[str, Any] = {"file": name, "kind": obj.KIND, "id": str(obj.id),
                                         "created_at": obj.created_at.isoformat(),
                                         "expires_at": obj.expires_at.isoformat()}
                # The index page shows small copies, so a browser opening it does not load every full-size
                # image; one that cannot be read as an image is still exported, shown by its full file.
                small = _thumbnail(data)
                if small is not None:
                    entry["thumbnail"] = f"thumbnails/{folder}/{obj.id}.jpg"
                    archive.writestr(entry["thumbnail"], small, compress_type=zipfile.ZIP_STORED)
                del data
                if isinstance(obj, TransformationResult):  # which photo it came from, at which target age
                    entry.update(photo_id=str(obj.photo_id), target_age=obj.job.target_age)
                manifest.append(entry)
                yield from pipe.drain()
        documents = {
            "consents.json": [consent_receipt(r) for r in ConsentRecord.objects.filter(user_id=user_id)
                              .select_related("purpose", "policy").order_by("at", "pk")],
            "jobs.json": [
                _job(j) for j in TransformationJob.objects.filter(owner_id=user_id).order_by("created_at")
            ],
            # Only the chain up to its head: a row planted past it is no event (governance.selectors)
            "audit_events.json": [_event(e) for e in audit_events(subject=pseudonym(user_id))],
            "privacy.json": privacy_report(user_id) if privacy_report else {},
        }
        for name, document in documents.items():
            archive.writestr(name, json.dumps(document, indent=2, default=str))
            manifest.append({"file": name, "kind": "document", "records": len(document)})
            yield from pipe.drain()
        manifest.append({"file": "index.html", "kind": "document"})
        archive.writestr("manifest.json", json.dumps({"generated_at": clock.now().isoformat(),
                                                      "subject": pseudonym(user_id), "files": manifest},
                                                     indent=2))
        archive.writestr("index.html", _index_html(manifest))
    yield from pipe.drain()


def _thumbnail(data: bytes) -> bytes | None:
    try:
        return thumbnail_jpeg(data)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _decrypt(obj: StoredObject) -> bytearray:
    return object_get(owner_id=obj.owner_id, kind=obj.KIND, object_id=obj.id, name=obj.storage_name)


def _job(job: TransformationJob) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "photo_id": str(job.photo_id),
        "target_age": job.target_age,
        "status": job.status,
        "error": job.error,
        "model_version": job.aging_version,  # the API's key for it: the aging layers' version
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def _event(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "action": event.action,
        "object_ref": event.object_ref,
        "details": event.details,
        "hash": event.hash,
    }


_INDEX_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;color:#1d2125}"
    "img{border-radius:6px;background:#eee;object-fit:cover}table{border-collapse:collapse;width:100%}"
    "td,th{padding:.35rem .5rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
    ".photo{display:flex;gap:1rem;flex-wrap:wrap;border:1px solid #ddd;border-radius:10px;"
    "padding:1rem;margin:1rem 0}"
)


def _shown(entry: dict[str, Any]) -> str:
    """What the index shows for an image: its thumbnail, or the file itself where none could be made."""
    return str(entry.get("thumbnail", entry["file"]))


def _index_html(manifest: list[dict[str, Any]]) -> str:
    """A page to open in any browser: each photo as a thumbnail with its results and their target ages; each
    thumbnail links to the full-size file."""
    e = html.escape
    photos = [m for m in manifest if m["kind"] == "photo"]
    results = [m for m in manifest if m["kind"] == "result"]
    sections = []
    for photo in photos:
        own = [r for r in results if r.get("photo_id") == photo["id"]]
        rows = "".join(
            f'<tr><td>{e(str(r["target_age"]))}</td><td><a href="{e(r["file"])}">'
            f'<img src="{e(_shown(r))}" width="96" height="96" alt="Aged to {e(str(r["target_age"]))}">'
            '</a></td>'
            f'<td>{e(r["created_at"])}</td></tr>' for r in own)
        table = (f"<table><tr><th>Target age</th><th>Result</th><th>Made</th></tr>{rows}</table>" if own
                 else "<p>No results from this photo.</p>")
        sections.append(
            f'<section class="photo"><a href="{e(photo["file"])}"><img src="{e(_shown(photo))}" '
            f'width="160" height="160" alt="Photo uploaded {e(photo["created_at"])}"></a><div>'
            f'<h2>Photo uploaded {e(photo["created_at"])}</h2><p>Deleted by {e(photo["expires_at"])}</p>'
            f'{table}</div></section>')
    orphans = [r for r in results if r.get("photo_id") not in {p["id"] for p in photos}]
    if orphans:
        sections.append(
            "<h2>Results whose original is no longer held</h2><ul>"
            + "".join(
                f'<li><a href="{e(r["file"])}">Target age {e(str(r["target_age"]))}</a>, '
                f'{e(r["created_at"])}</li>'
                for r in orphans
            )
            + "</ul>"
        )
    rows = "\n".join(
        f'<tr><td><a href="{e(m["file"])}">{e(m["file"])}</a></td><td>{e(m["kind"])}</td>'
        f'<td>{e(m.get("created_at", ""))}</td></tr>' for m in manifest
    )
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>Your Timeveil data</title>"
        f"<style>{_INDEX_STYLE}</style>"
        "<h1>Everything Timeveil holds about you</h1>"
        "<p>Photos and results are decrypted; consents.json holds your consent receipts; jobs.json your "
        "aging requests, each with the aging version that made its result (<code>model_version</code>); "
        "audit_events.json every recorded action about you; privacy.json the training runs that used your "
        "data.</p>"
        + ("".join(sections) or "<p>No photos are held.</p>")
        + f"<h2>All files</h2><table><tr><th>File</th><th>Kind</th><th>Created</th></tr>{rows}</table></html>"
    )
