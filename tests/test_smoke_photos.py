"""Upload, list, read and delete a photo through the API."""

import io

from PIL import Image

from tests.support import storage_files


def test_upload_roundtrip(owner, upload, django_capture_on_commit_callbacks):
    response = upload()
    assert response.status_code == 201, response.content
    photo = response.json()
    assert {"id", "created_at", "expires_at", "width", "height"} <= set(photo)
    content = owner.client.get(f"/api/v1/photos/{photo['id']}/content")
    assert content.status_code == 200
    assert content["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(content.content)).size == (64, 48)
    listing = owner.client.get("/api/v1/photos").json()
    assert [p["id"] for p in listing["results"]] == [photo["id"]]
    before = len(storage_files())
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.client.delete(f"/api/v1/photos/{photo['id']}").status_code == 204
    assert len(storage_files()) == before - 1
    assert owner.client.get(f"/api/v1/photos/{photo['id']}").status_code == 404
