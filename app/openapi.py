"""The OpenAPI description of the JSON API, served at /openapi.json."""

from flask import Blueprint, jsonify

from .catalogue import FILTERS, MAX_K

spec = Blueprint("openapi", __name__)

# Pages for people (HTML), left out of the API description.
HTML_ROUTES = {"/", "/search", "/items/<path:item_id>"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _ok(description: str, schema: dict) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


FILTER_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    for name in FILTERS
]
K_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5}
ITEM_ID = {
    "name": "item_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
STRING_OR_NULL = {"type": ["string", "null"]}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            }
        },
    },
    "Item": {
        "type": "object",
        "required": ["id", "image_url", "metadata"],
        "properties": {
            "id": {"type": "string"},
            "image_url": {"type": "string"},
            "metadata": {
                "type": "object",
                "description": "styles.csv columns; empty strings when missing",
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "Result": {
        "allOf": [
            _ref("Item"),
            {
                "type": "object",
                "required": ["rank", "distance"],
                "properties": {
                    "rank": {"type": "integer", "minimum": 1},
                    "distance": {
                        "type": "number",
                        "description": "squared L2 distance of unit embeddings, 0..4",
                    },
                },
            },
        ]
    },
    "Results": {"type": "array", "items": _ref("Result"), "maxItems": MAX_K},
    "Model": {
        "type": "object",
        "required": ["backbone", "card_sha256", "variant", "random_weights"],
        "properties": {
            "backbone": {"type": "string"},
            "card_sha256": {"type": "string"},
            "variant": {"type": "string"},
            "random_weights": {"type": "boolean"},
        },
    },
    "Index": {
        "type": "object",
        "required": ["build", "built_at", "item_count", "source", "demo"],
        "properties": {
            "build": {"type": "string"},
            "built_at": STRING_OR_NULL,
            "item_count": {"type": "integer", "minimum": 0},
            "source": STRING_OR_NULL,
            "demo": {"type": "boolean"},
        },
    },
    "Timings": {
        "type": "object",
        "description": "milliseconds per stage (decode includes resizing)",
        "required": ["search", "total"],
        "additionalProperties": {"type": "number", "minimum": 0},
    },
    "SearchResponse": {
        "type": "object",
        "required": ["queries", "model", "index", "timings_ms"],
        "properties": {
            "queries": {
                "type": "array",
                "description": "one entry per uploaded image, in upload order",
                "items": {
                    "type": "object",
                    "required": ["results"],
                    "properties": {"results": _ref("Results")},
                },
            },
            "model": _ref("Model"),
            "index": _ref("Index"),
            "timings_ms": _ref("Timings"),
        },
    },
    "SimilarResponse": {
        "type": "object",
        "required": ["item", "results", "model", "index", "timings_ms"],
        "properties": {
            "item": _ref("Item"),
            "results": _ref("Results"),
            "model": _ref("Model"),
            "index": _ref("Index"),
            "timings_ms": _ref("Timings"),
        },
    },
    "Ready": {
        "type": "object",
        "required": ["status", "model", "index", "problem"],
        "properties": {
            "status": {"const": "ready"},
            "model": _ref("Model"),
            "index": _ref("Index"),
            "problem": {
                "type": ["string", "null"],
                "description": "why a newer index was refused; the old one serves",
            },
        },
    },
}

SEARCH_FORM = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {
            "description": "one or more image files (JPEG, PNG, WebP, GIF, BMP, TIFF)",
            "type": "array",
            "items": {"type": "string", "format": "binary"},
        },
        "k": K_SCHEMA,
        **{name: {"type": "string"} for name in FILTERS},
    },
}

PATHS = {
    "/api/v1/search": {
        "post": {
            "summary": "The catalogue items most like each uploaded photo",
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": SEARCH_FORM}},
            },
            "responses": {
                "200": _ok("results, one list per image", _ref("SearchResponse")),
                "400": _error(
                    "missing, empty, corrupt or too large image; bad k; "
                    "unknown filter value"
                ),
                "413": _error("the request is larger than the upload limit"),
                "415": _error("not an image format the service reads"),
                "503": _error("no index or model loaded"),
            },
        }
    },
    "/api/v1/items/{item_id}/similar": {
        "get": {
            "summary": "More like a catalogue item (never the item or its copies)",
            "parameters": [
                ITEM_ID,
                {"name": "k", "in": "query", "required": False, "schema": K_SCHEMA},
                *FILTER_PARAMS,
            ],
            "responses": {
                "200": _ok("results", _ref("SimilarResponse")),
                "400": _error("bad k or unknown filter value"),
                "404": _error("no such item"),
                "503": _error("no index or model loaded"),
            },
        }
    },
    "/images/{item_id}": {
        "get": {
            "summary": "A catalogue item's image",
            "parameters": [ITEM_ID],
            "responses": {
                "200": {
                    "description": "the image file",
                    "content": {"image/*": {"schema": {"type": "string"}}},
                },
                "304": {"description": "not modified (If-None-Match)"},
                "404": _error("no such item, or its image is gone"),
                "503": _error("no index or model loaded"),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "The process is alive",
            "responses": {
                "200": _ok(
                    "alive",
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {"status": {"const": "alive"}},
                    },
                )
            },
        }
    },
    "/readyz": {
        "get": {
            "summary": "Model and index are loaded",
            "responses": {
                "200": _ok("ready", _ref("Ready")),
                "503": _error("not ready, with the reason"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics, summed over all workers",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This description",
            "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"})},
        }
    },
}

SPEC = {
    "openapi": "3.1.0",
    "info": {
        "title": "Fashion visual search",
        "version": "1",
        "description": "Upload a photo; get the most similar catalogue items. "
        'Every 4xx and 5xx answer is {"error": {"code", "message"}}.',
    },
    "paths": PATHS,
    "components": {"schemas": SCHEMAS},
}


@spec.get("/openapi.json")
def openapi_json():
    return jsonify(SPEC)
