"""Images, health, readiness, metrics and the OpenAPI description."""

import re

import jsonschema
from PIL import Image
from service_fixtures import jpeg_bytes, make_config, upload

from app import create_app
from app.openapi import HTML_ROUTES, SPEC


def test_images_serve_catalogue_files_with_cache_headers(client, catalogue_dir):
    response = client.get("/images/10001")

    assert response.status_code == 200
    assert response.mimetype == "image/jpeg"
    assert response.data == (catalogue_dir / "images" / "10001.jpg").read_bytes()
    assert response.cache_control.public is True
    assert response.cache_control.max_age == 3600
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    etag = response.headers["ETag"]

    again = client.get("/images/10001", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_healthz_says_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "alive"}


def test_readyz_names_the_model_and_index(client, built_index):
    body = client.get("/readyz").get_json()

    assert body["status"] == "ready"
    assert body["problem"] is None
    assert body["model"]["backbone"] == "mobilenet_v2"
    assert body["index"] == {
        "build": built_index.resolve().name,
        "built_at": "2026-12-03T12:00:00+00:00",
        "item_count": 42,
        "source": body["index"]["source"],
        "demo": True,
    }


def test_without_an_index_readyz_and_search_are_503(tmp_path, random_model_dir):
    app = create_app(make_config(tmp_path / "nothing", random_model_dir))
    client = app.test_client()

    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "not_ready"
    assert "make index" in response.get_json()["error"]["message"]
    response = client.post(
        "/api/v1/search",
        data={"image": upload(jpeg_bytes(Image.new("RGB", (8, 8))))},
        content_type="multipart/form-data",
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "not_ready"
    assert client.get("/healthz").status_code == 200


def test_metrics_count_requests_errors_and_stage_times(client, catalogue_dir):
    client.post(
        "/api/v1/search",
        data={"image": upload((catalogue_dir / "images" / "10001.jpg").read_bytes())},
        content_type="multipart/form-data",
    )
    client.get("/api/v1/items/nope/similar")

    text = client.get("/metrics").get_data(as_text=True)

    assert re.search(
        r'fvs_requests_total\{endpoint="/api/v1/search",method="POST",status="200"\} '
        r"[1-9]",
        text,
    )
    assert re.search(r'fvs_errors_total\{code="unknown_item"\} [1-9]', text)
    for stage in ("decode", "embed", "search"):
        assert re.search(rf'fvs_stage_seconds_count\{{stage="{stage}"\}} [1-9]', text)


def exact_searches(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    found = re.findall(r'fvs_exact_searches_total\{answered_by="(\w+)"\} (\S+)', text)
    return {way: float(count) for way, count in found}


def test_metrics_count_how_exact_searches_were_answered(client, catalogue_dir):
    image = (catalogue_dir / "images" / "10001.jpg").read_bytes()
    client.post(
        "/api/v1/search",
        data={"image": upload(image)},
        content_type="multipart/form-data",
    )  # the counters exist from here on
    before = exact_searches(client)

    for _ in range(3):
        client.post(
            "/api/v1/search",
            data={"image": upload(image)},
            content_type="multipart/form-data",
        )

    after = exact_searches(client)
    # The test index is small enough for the 16-bit pass to return all of it:
    # it proves every answer, one search per query (no query expansion here).
    assert after["first_pass"] - before["first_pass"] == 3
    assert after["full_scan"] == before["full_scan"]


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def test_openapi_lists_exactly_the_api_routes(app):
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule in HTML_ROUTES:
            continue
        methods = {m.lower() for m in rule.methods} - {"head", "options"}
        routes.setdefault(openapi_path(rule.rule), set()).update(methods)

    documented = {path: set(ops) for path, ops in SPEC["paths"].items()}
    assert documented == routes


def validate(response, path: str, method: str):
    """Check a response against the schema the spec gives for its status."""
    spec = SPEC
    operation = spec["paths"][path][method]
    declared = operation["responses"][str(response.status_code)]
    schema = declared["content"]["application/json"]["schema"]
    jsonschema.validate(
        response.get_json(), {**schema, "components": spec["components"]}
    )


def test_responses_match_the_openapi_schemas(client, catalogue_dir):
    photo = (catalogue_dir / "images" / "10002.jpg").read_bytes()
    search = "/api/v1/search"
    cases = [
        (client.post(search, data={"image": upload(photo)}), search, "post"),
        (client.post(search, data={"image": upload(b"")}), search, "post"),
        (client.post(search, data={"image": upload(b"x")}), search, "post"),
        (client.post(search, data={"image": upload(photo), "k": "0"}), search, "post"),
        (
            client.get("/api/v1/items/10002/similar"),
            "/api/v1/items/{item_id}/similar",
            "get",
        ),
        (
            client.get("/api/v1/items/x/similar"),
            "/api/v1/items/{item_id}/similar",
            "get",
        ),
        (client.get("/images/x"), "/images/{item_id}", "get"),
        (client.get("/healthz"), "/healthz", "get"),
        (client.get("/readyz"), "/readyz", "get"),
        (client.get("/openapi.json"), "/openapi.json", "get"),
    ]
    statuses = [response.status_code for response, _, _ in cases]
    assert statuses == [200, 400, 415, 400, 200, 404, 404, 200, 200, 200]
    for response, path, method in cases:
        validate(response, path, method)


def test_the_served_openapi_is_the_spec(client):
    assert client.get("/openapi.json").get_json() == SPEC
    jsonschema.Draft202012Validator.check_schema(SPEC["components"]["schemas"]["Error"])
