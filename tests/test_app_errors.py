"""Every bad request gets a clear 4xx in one JSON shape; nothing is a 500."""

import io

import pytest
from PIL import Image
from service_fixtures import jpeg_bytes, png_bytes, upload


def photo() -> bytes:
    return jpeg_bytes(Image.new("RGB", (60, 80), (200, 30, 40)))


def bomb_png(width=8000, height=6000) -> bytes:
    """A tiny file that declares 48 million pixels."""
    return png_bytes(Image.new("1", (width, height)))


def search(client, data=None, field="image", **form):
    payload = dict(form)
    if data is not None:
        payload[field] = upload(data)
    return client.post(
        "/api/v1/search", data=payload, content_type="multipart/form-data"
    )


def assert_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]["message"]


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
    b'height="10"><rect width="10" height="10"/></svg>'
)
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
HTML = b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_image"),
        (b"this is not an image at all", 415, "unsupported_image"),
        (SVG, 415, "unsupported_image"),
        (PDF, 415, "unsupported_image"),
        (HTML, 415, "unsupported_image"),
        (photo()[:300], 400, "corrupt_image"),
        (bomb_png(), 400, "image_too_large"),
    ],
    ids=["empty", "text", "svg", "pdf", "html", "truncated-jpeg", "bomb"],
)
def test_bad_uploads_get_a_clear_4xx(client, data, status, code):
    assert_error(search(client, data), status, code)


def test_a_missing_image_field_is_a_400(client):
    message = assert_error(search(client, None, k="5"), 400, "missing_image")
    assert "'image'" in message


def test_an_image_under_another_field_name_is_a_missing_image(client):
    assert_error(search(client, photo(), field="file"), 400, "missing_image")


def test_a_json_body_is_a_missing_image(client):
    response = client.post("/api/v1/search", json={"image": "x"})
    assert_error(response, 400, "missing_image")


def test_an_upload_over_the_size_limit_is_a_413(client):
    big = bytes(600 * 1024)  # the test app's limit is 512 KB
    message = assert_error(search(client, big), 413, "upload_too_large")
    assert message == "the upload is larger than the 0.5 MB limit"


def test_too_many_images_in_one_request(client):
    response = client.post(
        "/api/v1/search",
        data={"image": [upload(photo()) for _ in range(9)]},
        content_type="multipart/form-data",
    )
    assert_error(response, 400, "too_many_images")


def test_the_bad_one_of_several_images_is_named_by_position(client):
    response = client.post(
        "/api/v1/search",
        data={"image": [upload(photo()), upload(b"")]},
        content_type="multipart/form-data",
    )
    message = assert_error(response, 400, "empty_image")
    assert message.startswith("image 2: ")


@pytest.mark.parametrize("k", ["0", "51", "-1", "abc", "2.5"])
def test_k_out_of_range_is_a_400(client, k):
    assert_error(search(client, photo(), k=k), 400, "invalid_k")
    assert_error(client.get(f"/api/v1/items/10001/similar?k={k}"), 400, "invalid_k")


@pytest.mark.parametrize(
    "field", ["gender", "masterCategory", "articleType", "baseColour"]
)
def test_an_unknown_filter_value_is_a_400(client, field):
    message = assert_error(
        search(client, photo(), **{field: "Spacesuits"}), 400, "unknown_filter_value"
    )
    assert message.startswith(f"{field}='Spacesuits' matches no item; choose one of: ")
    response = client.get(f"/api/v1/items/10001/similar?{field}=Spacesuits")
    assert_error(response, 400, "unknown_filter_value")


def test_an_unknown_item_is_a_404(client):
    assert_error(client.get("/api/v1/items/99999/similar"), 404, "unknown_item")
    assert_error(client.get("/images/99999"), 404, "unknown_item")


@pytest.mark.parametrize(
    "path",
    [
        "/images/../../../../etc/passwd",
        "/images/%2e%2e/%2e%2e/etc/passwd",
        "/images//etc/passwd",
        "/images/images%2f10001.jpg",
        "/images/..%2fstyles.csv",
    ],
)
def test_image_paths_are_ids_not_file_paths(client, path):
    response = client.get(path, follow_redirects=True)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] in {"unknown_item", "not_found"}


def test_an_unknown_route_is_a_json_404(client):
    assert_error(client.get("/api/v1/nothing"), 404, "not_found")


def test_a_wrong_method_is_a_json_405(client):
    assert_error(client.get("/api/v1/search"), 405, "method_not_allowed")


def test_an_unexpected_failure_is_a_500_without_details(client, app, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["engine"], "similar", explode)
    response = client.get("/api/v1/items/10001/similar")
    message = assert_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert message == "internal error; it has been logged"


def test_a_truncated_multipart_body_is_a_400(client):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + photo()[:100]
    )
    response = client.post(
        "/api/v1/search",
        data=io.BytesIO(body),
        content_type="multipart/form-data; boundary=b",
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] in {"missing_image", "bad_request"}


def test_a_very_wide_image_over_the_pixel_limit_is_refused(client):
    # 40,000 x 2,000 = 80 million pixels declared in a file of a few kB.
    assert_error(search(client, bomb_png(40_000, 2_000)), 400, "image_too_large")
