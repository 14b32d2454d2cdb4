"""Fixtures for the search service's tests (a pytest plugin, see conftest.py)."""

import io

import pytest
from PIL import Image
from service_helpers import build_index, make_catalogue, read_styles

from app import create_app
from app.config import Config

# Two byte-identical copies of item 10003 under other ids.
COPIES = (("20001", "10003"), ("20002", "10003"))


@pytest.fixture(scope="session")
def catalogue_dir(tmp_path_factory):
    return make_catalogue(tmp_path_factory.mktemp("catalogue"), count=40, copies=COPIES)


@pytest.fixture(scope="session")
def styles(catalogue_dir):
    return read_styles(catalogue_dir)


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, catalogue_dir, random_model):
    """indexes/demo (a link) over the test catalogue, built with the random model."""
    link = tmp_path_factory.mktemp("indexes") / "demo"
    return build_index(catalogue_dir, random_model, link)


def make_config(index, models_dir, **overrides) -> Config:
    overrides.setdefault("reload_seconds", 0)
    overrides.setdefault("ort_threads", 1)
    return Config.from_env({}, index=index, models_dir=models_dir, **overrides)


@pytest.fixture(scope="module")
def app(built_index, random_model_dir):
    app = create_app(
        make_config(built_index, random_model_dir, max_upload_bytes=512 * 1024)
    )
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


def upload(data: bytes, name: str = "photo.jpg"):
    return (io.BytesIO(data), name)
