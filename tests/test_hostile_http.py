"""The service against hostile uploads and requests (Flask test client): every
answer is a 2xx or a clean 4xx in the one JSON error shape; nothing is written
under a name the client chose; nothing outside the catalogue can be read."""

import io
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from app.config import Config
from index_builder.build import build_index
from tests.harness import write_catalogue
from tests.hostile import CONTENT_TYPE, body, jpeg, part, raw_requests, uploads

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
CORPUS = uploads()
RAW = raw_requests()
SEARCH = "/api/v1/search"
LIMIT = 512 * 1024  # upload limit for these tests
SECRET = b"secret bytes that live outside the catalogue"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory, random_model):
    """A 30-item catalogue plus item 29999, a symlink to an image outside it."""
    root = tmp_path_factory.mktemp("shop")
    catalogue = write_catalogue(root / "catalogue", 30, seed=3)
    outside = root / "outside.jpg"
    outside.write_bytes(jpeg() + SECRET)  # a real JPEG, so the builder keeps it
    (catalogue / "images" / "29999.jpg").symlink_to(outside)
    (root / "secret.txt").write_bytes(SECRET)
    link = root / "indexes" / "shop"
    build_index(catalogue, random_model, link, threads=1, progress=False)
    return link


def make_app(shop, models, **overrides):
    config = Config.from_env(
        {},
        index=shop,
        models_dir=models,
        max_upload_bytes=LIMIT,
        reload_seconds=60,
        ort_threads=1,
        **overrides,
    )
    app = create_app(config)
    app.testing = False  # errors are answered as in production, never re-raised
    return app


@pytest.fixture(scope="module")
def app(shop, random_model_dir):
    return make_app(shop, random_model_dir)


@pytest.fixture
def client(app):
    return app.test_client()


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    data = response.get_json()
    assert set(data) == {"error"}
    assert set(data["error"]) == {"code", "message"}
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    if code is not None:
        assert data["error"]["code"] == code
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return data["error"]


@pytest.mark.parametrize("upload", CORPUS, ids=lambda u: u.name)
def test_each_hostile_upload_gets_its_exact_answer(client, upload):
    response = client.post(
        SEARCH,
        data={"image": (io.BytesIO(upload.data), upload.filename, upload.content_type)},
    )
    if upload.status == 200:
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        queries = response.get_json()["queries"]
        assert len(queries) == 1
        assert [r["rank"] for r in queries[0]["results"]] == [1, 2, 3, 4, 5]
    else:
        assert_error_shape(response, upload.status, upload.code)


@pytest.mark.parametrize("request_", RAW, ids=lambda r: r.name)
def test_each_malformed_request_gets_its_exact_answer(client, request_):
    response = client.post(
        SEARCH, data=request_.body, content_type=request_.content_type
    )
    if request_.status == 200:
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert len(response.get_json()["queries"]) == request_.results
    else:
        assert_error_shape(response, request_.status, request_.code)


def test_uploads_are_never_stored_under_the_client_name(client, tmp_path, monkeypatch):
    """Every upload of the corpus, each under its own file name, with the working
    directory and the temp folder pointed at empty folders: nothing is left in
    either, and no file anywhere below them has a client-chosen name."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    # Over 500 kB, so the form parser spools it to a temporary file; a JPEG
    # decoder ignores what follows the end-of-image marker.
    big = jpeg() + os.urandom(505 * 1024)
    names = [u.filename for u in CORPUS] + ["evil-upload.jpg"]
    for upload in CORPUS:
        client.post(
            SEARCH,
            data={"image": (io.BytesIO(upload.data), upload.filename)},
        )
    for name in ("../../evil-upload.jpg", "evil-upload.jpg"):
        response = client.post(SEARCH, data={"image": (io.BytesIO(big), name)})
        assert response.status_code == 200  # read, decoded and searched

    left = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files]
    assert left == []
    assert not (tmp_path / "evil-upload.jpg").exists()
    assert not (tmp_path.parent / "evil-upload.jpg").exists()
    assert not any(
        os.path.basename(n) in os.listdir(d) for n in names for d in (cwd, tmp)
    )


def test_a_body_over_the_limit_is_refused_before_any_decoding(client, monkeypatch):
    calls = []
    import app.engine as engine_module

    original = engine_module.open_image

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine_module, "open_image", spy)
    huge = b"\xff\xd8\xff\xe0" + b"\x00" * (LIMIT + 1)
    response = client.post(SEARCH, data={"image": (io.BytesIO(huge), "big.jpg")})
    error = assert_error_shape(response, 413, "upload_too_large")
    assert "0.5 MB" in error["message"]
    assert calls == []

    # just under the limit the same file is decoded (and refused as corrupt)
    small = b"\xff\xd8\xff\xe0" + b"\x00" * (LIMIT - 1024)
    response = client.post(SEARCH, data={"image": (io.BytesIO(small), "big.jpg")})
    assert response.status_code in (400, 415)
    assert calls == [1]


def test_a_declared_content_length_over_the_limit_is_refused_unread(client):
    stream = io.BytesIO(b"x" * 10)  # the body is never read past the header
    response = client.post(
        SEARCH,
        input_stream=stream,
        content_type=CONTENT_TYPE,
        environ_overrides={"CONTENT_LENGTH": str(50 * 1024 * 1024)},
    )
    assert stream.tell() == 0
    assert_error_shape(response, 413, "upload_too_large")


def test_an_internal_error_answers_the_json_shape_without_a_traceback(
    shop, random_model_dir, monkeypatch, caplog
):
    app = make_app(shop, random_model_dir)
    engine = app.extensions["engine"]

    def explode(*args, **kwargs):
        raise RuntimeError("boom: /etc/internal/detail")

    monkeypatch.setattr(engine, "search", explode)
    response = app.test_client().post(
        SEARCH, data={"image": (io.BytesIO(jpeg()), "a.jpg")}
    )
    error = assert_error_shape(response, 500, "internal_error")
    assert "boom" not in error["message"] and "/etc" not in error["message"]
    assert "boom: /etc/internal/detail" in caplog.text  # logged for the operator


def test_debug_mode_is_off(app):
    assert app.debug is False
    assert app.config["PROPAGATE_EXCEPTIONS"] is not True


def test_unknown_route_and_method_answer_the_json_shape(client):
    assert_error_shape(client.get("/no/such/page"), 404, "not_found")
    assert_error_shape(client.get(SEARCH), 405, "method_not_allowed")


TRAVERSALS = [
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%252e%252e%252fetc%252fpasswd",
    "..\\..\\..\\etc\\passwd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "....//....//etc/passwd",
    "20000/../../secret.txt",
    "../secret.txt",
    "..%2fsecret.txt",
    "20000%00.jpg",
    "images/20000.jpg",
    "29999",  # a symlink inside the images folder pointing outside
]


@pytest.mark.parametrize("item_id", TRAVERSALS)
def test_images_route_never_reads_outside_the_catalogue(client, item_id):
    # A doubled slash is answered with a redirect to the same route, followed
    # here: wherever it leads must not serve the file either.
    response = client.get(f"/images/{item_id}", follow_redirects=True)
    assert all(
        r.headers["Location"].startswith(("/images/", "http://localhost/images/"))
        for r in response.history
    )
    data = response.get_data()
    assert SECRET not in data
    assert b"root:" not in data
    assert_error_shape(response, 404)


def test_images_route_serves_a_catalogue_image_with_caching_headers(client):
    response = client.get("/images/20000")
    assert response.status_code == 200
    assert response.mimetype == "image/jpeg"
    assert response.headers["Cache-Control"]
    assert response.get_data()[:2] == b"\xff\xd8"


def _clean(response) -> None:
    if response.status_code == 200:
        assert response.get_json()["queries"]
        return
    assert response.status_code in (400, 413, 415)
    assert_error_shape(response, response.status_code)


@FUZZ
@given(data=st.binary(max_size=4096), name=st.text(max_size=300))
def test_fuzz_any_upload_bytes_and_name_get_2xx_or_clean_4xx(client, data, name):
    _clean(client.post(SEARCH, data={"image": (io.BytesIO(data), name or "x")}))


@FUZZ
@given(
    raw=st.binary(max_size=2048),
    boundary=st.sampled_from(["hostileBoundary7e3c", "", "x" * 80, "a b"]),
)
def test_fuzz_any_request_body_gets_2xx_or_clean_4xx(client, raw, boundary):
    content_type = f"multipart/form-data; boundary={boundary}"
    _clean(client.post(SEARCH, data=raw, content_type=content_type))


@FUZZ
@given(
    k=st.one_of(st.text(max_size=12), st.integers(-(10**20), 10**20).map(str)),
    field=st.sampled_from(["gender", "masterCategory", "articleType", "baseColour"]),
    value=st.text(max_size=40),
)
def test_fuzz_k_and_filters_get_2xx_or_clean_4xx(client, k, field, value):
    payload = body(
        part("k", k.encode("utf-8", "surrogatepass"), None),
        part(field, value.encode("utf-8", "surrogatepass"), None),
        part("image", jpeg()),
    )
    _clean(client.post(SEARCH, data=payload, content_type=CONTENT_TYPE))


def test_error_answers_are_valid_json_documents(client):
    response = client.post(SEARCH, data={})
    error = assert_error_shape(response, 400, "missing_image")
    assert json.loads(response.get_data())["error"] == error
