"""JSON API: search by uploaded photos, more like a catalogue item, health."""

from flask import Blueprint, current_app, jsonify, request, url_for

from .catalogue import MAX_K, Catalogue
from .engine import Answer, Engine
from .errors import AppError

api = Blueprint("api", __name__)


def engine() -> Engine:
    return current_app.extensions["engine"]


def parse_k(raw) -> int:
    if raw is None or raw == "":
        return 5
    try:
        k = int(raw)
    except (TypeError, ValueError):
        k = 0
    if not 1 <= k <= MAX_K:
        raise AppError(
            400, "invalid_k", f"k must be a whole number from 1 to {MAX_K}, not {raw!r}"
        )
    return k


def read_uploads() -> list[tuple[str, bytes]]:
    """The `image` parts of a multipart request, as (label, bytes) pairs.

    Labels are "image 1", "image 2"...: the client's file names are never used.
    """
    files = request.files.getlist("image")
    if not files:
        raise AppError(
            400,
            "missing_image",
            "send the photo as a multipart/form-data file field named 'image'",
        )
    limit = current_app.config["FVS"].max_images
    if len(files) > limit:
        raise AppError(
            400,
            "too_many_images",
            f"{len(files)} images in one request; at most {limit} are accepted",
        )
    several = len(files) > 1
    return [
        (f"image {i + 1}" if several else "", f.read()) for i, f in enumerate(files)
    ]


def request_filters() -> dict:
    values = request.form if request.method == "POST" else request.args
    return {name: values.get(name) or request.args.get(name) for name in FILTER_NAMES}


def model_json(e: Engine) -> dict:
    card = e.embedder.card
    return {
        "backbone": card.backbone,
        "card_sha256": card.sha256(),
        "variant": card.variant,
        "random_weights": card.random_weights,
    }


def index_json(catalogue: Catalogue) -> dict:
    manifest = catalogue.manifest
    return {
        "build": catalogue.stored.path.name,
        "built_at": manifest.get("built_at"),
        "item_count": len(catalogue),
        "source": manifest.get("source"),
        "demo": catalogue.demo,
    }


def item_json(catalogue: Catalogue, row: int) -> dict:
    item_id = catalogue.ids[row]
    return {
        "id": item_id,
        "image_url": url_for("web.image", item_id=item_id),
        "metadata": catalogue.metadata(row),
    }


def hits_json(catalogue: Catalogue, hits) -> list[dict]:
    return [
        {"rank": rank, "distance": hit.distance, **item_json(catalogue, hit.row)}
        for rank, hit in enumerate(hits, start=1)
    ]


def answer_json(e: Engine, answer: Answer) -> dict:
    return {
        "model": model_json(e),
        "index": index_json(answer.catalogue),
        "timings_ms": answer.timings_ms,
    }


@api.post("/api/v1/search")
def search():
    uploads = read_uploads()
    k = parse_k(request.form.get("k", request.args.get("k")))
    filters = request_filters()

    e = engine()
    answer = e.search(uploads, k, filters)

    queries = [{"results": hits_json(answer.catalogue, hits)} for hits in answer.hits]
    return jsonify({"queries": queries, **answer_json(e, answer)})


@api.get("/api/v1/items/<path:item_id>/similar")
def similar(item_id: str):
    k = parse_k(request.args.get("k"))
    filters = request_filters()

    e = engine()
    answer = e.similar(item_id, k, filters)

    catalogue = answer.catalogue
    body = {
        "item": item_json(catalogue, catalogue.row(item_id)),
        "results": hits_json(catalogue, answer.hits[0]),
        **answer_json(e, answer),
    }
    return jsonify(body)


@api.get("/healthz")
def healthz():
    return jsonify({"status": "alive"})


@api.get("/readyz")
def readyz():
    e = engine()
    e.refresh()
    catalogue = e.catalogue
    if not e.ready:
        raise AppError(503, "not_ready", e.problem or "the index is loading")
    body = {
        "status": "ready",
        "model": model_json(e),
        "index": index_json(catalogue),
        "problem": e.problem,
    }
    return jsonify(body)


FILTER_NAMES = ("gender", "masterCategory", "articleType", "baseColour")
