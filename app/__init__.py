"""The search service: web upload form and JSON API.

gunicorn runs ``app:create_app()``. Heavy imports (onnxruntime, FAISS) happen
inside create_app, in each worker after the fork, never in gunicorn's master.
"""

import logging


def create_app(config=None):
    """Build the Flask app; loads the model and the index named by ``config``
    (default: FVS_* environment variables)."""
    import faiss
    from flask import Flask

    from . import api, errors, metrics, openapi, web
    from .config import Config
    from .engine import Engine

    config = config or Config.from_env()
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    faiss.omp_set_num_threads(config.faiss_threads)

    app = Flask(__name__)
    app.config["FVS"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = config.max_upload_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False

    engine = Engine(config)
    engine.refresh(force=True)
    app.extensions["engine"] = engine

    errors.register(app)
    metrics.register(app)
    app.register_blueprint(api.api)
    app.register_blueprint(web.web)
    app.register_blueprint(openapi.spec)
    return app
