"""The web pages: upload form, results, "more like this", catalogue images."""

import base64
import io

from flask import (
    Blueprint,
    current_app,
    render_template,
    request,
    send_file,
)
from werkzeug.exceptions import RequestEntityTooLarge

from .api import engine, parse_k, read_uploads, request_filters
from .catalogue import FILTERS
from .errors import AppError, from_http_error

web = Blueprint("web", __name__)
THUMBNAIL = (240, 320)
LABELS = {
    "gender": "Gender",
    "masterCategory": "Category",
    "articleType": "Article type",
    "baseColour": "Colour",
}
IMAGE_MAX_AGE = 3600  # seconds; the ETag is the image's content hash


def form_page(message: str | None = None, status: int = 200):
    e = engine()
    e.refresh()
    catalogue = e.catalogue
    choices = catalogue.choices if catalogue else {name: [] for name in FILTERS}
    context = {
        "message": message or (None if e.ready else e.problem),
        "choices": choices,
        "labels": LABELS,
        "chosen": request_filters() if request.method == "POST" else {},
        "catalogue": catalogue,
        "model": e.embedder.card if e.embedder else None,
    }
    return render_template("index.html", **context), status


def data_url(image) -> str:
    """The decoded query as a small JPEG inline in the page; nothing is stored."""
    thumbnail = image.copy()
    thumbnail.thumbnail(THUMBNAIL)
    buffer = io.BytesIO()
    thumbnail.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def results_page(answer, query_src: str, title: str, item=None):
    catalogue = answer.catalogue
    results = [
        {
            "id": catalogue.ids[hit.row],
            "distance": hit.distance,
            **catalogue.metadata(hit.row),
        }
        for hit in answer.hits[0]
    ]
    return render_template(
        "results.html",
        title=title,
        query_src=query_src,
        item=item,
        results=results,
        timings=answer.timings_ms,
        catalogue=catalogue,
        model=engine().embedder.card,
    )


@web.get("/")
def index():
    return form_page()


@web.post("/search")
def search():
    try:
        uploads = read_uploads()[:1]
        k = parse_k(request.form.get("k"))
        answer = engine().search(uploads, k, request_filters())
    except RequestEntityTooLarge as e:
        error = from_http_error(e, current_app.config["MAX_CONTENT_LENGTH"])
        return form_page(error.message, error.status)
    except AppError as e:
        return form_page(e.message, e.status)
    return results_page(answer, data_url(answer.images[0]), "Your photo")


@web.get("/items/<path:item_id>")
def more_like(item_id: str):
    e = engine()
    try:
        answer = e.similar(item_id, parse_k(request.args.get("k")), {})
    except AppError as error:
        return form_page(error.message, error.status)
    catalogue = answer.catalogue
    row = catalogue.row(item_id)
    item = {"id": item_id, **catalogue.metadata(row)}
    src = f"/images/{item_id}"
    return results_page(answer, src, "More like this item", item=item)


@web.get("/images/<path:item_id>")
def image(item_id: str):
    """A catalogue image, looked up by item id; never a path from the request."""
    catalogue = engine().current()
    row = catalogue.row(item_id)
    path = catalogue.image_file(row)
    if path is None:
        raise AppError(404, "image_missing", f"the image of item {item_id!r} is gone")
    response = send_file(
        path,
        max_age=IMAGE_MAX_AGE,
        etag=catalogue.stored.items["sha256"][row] or True,
        conditional=True,
    )
    response.cache_control.public = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
