"""Errors that carry their HTTP status, and the one JSON shape they render to:
``{"error": {"code": ..., "message": ...}}``."""

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from embedding.preprocess import ImageError

from . import metrics

log = logging.getLogger(__name__)


class AppError(Exception):
    """A request the service cannot answer; ``code`` is short and stable."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# Image decoding problems, by preprocess's reason.
IMAGE_ERRORS = {
    "empty": (400, "empty_image"),
    "not_an_image": (415, "unsupported_image"),
    "truncated": (400, "corrupt_image"),
    "too_large": (400, "image_too_large"),
}
# Werkzeug's own HTTP errors (routing, size limit) under our codes.
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    500: "internal_error",
}


def from_image_error(e: ImageError, name: str = "") -> AppError:
    status, code = IMAGE_ERRORS.get(e.reason, (400, "bad_image"))
    where = f"{name}: " if name else ""
    return AppError(status, code, f"{where}{e}")


def from_http_error(e: HTTPException, max_upload_bytes: int) -> AppError:
    status = e.code or 500
    code = HTTP_CODES.get(status, "http_error")
    if status == 413:
        mb = max_upload_bytes / (1024 * 1024)
        message = f"the upload is larger than the {mb:g} MB limit"
    elif status == 404:
        message = "no such page or API route"
    else:
        message = e.description or e.name
    return AppError(status, code, message)


def error_response(error: AppError):
    metrics.ERRORS.labels(code=error.code).inc()
    body = {"error": {"code": error.code, "message": error.message}}
    return jsonify(body), error.status


def register(app: Flask) -> None:
    @app.errorhandler(AppError)
    def handle_app_error(e: AppError):
        return error_response(e)

    @app.errorhandler(HTTPException)
    def handle_http_error(e: HTTPException):
        return error_response(from_http_error(e, app.config["MAX_CONTENT_LENGTH"]))

    @app.errorhandler(Exception)
    def handle_unexpected(e: Exception):
        log.exception("unexpected error")
        return error_response(
            AppError(500, "internal_error", "internal error; it has been logged")
        )
