"""The shared decoder against hostile and odd files: every input either becomes an
upright RGB image or raises ImageError with a known reason, never anything else."""

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from embedding.preprocess import DEFAULT_MAX_PIXELS, ImageError, Recipe, open_image
from embedding.preprocess import load as load_input
from tests.hostile import jpeg, png, uploads

# A broken Exif block is one of the inputs; Pillow warns about it and carries on.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
CORPUS = uploads()
REASONS = {"empty", "not_an_image", "truncated", "too_large"}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_corpus_has_at_least_25_distinct_cases():
    names = [u.name for u in CORPUS]
    assert len(names) == len(set(names))
    assert len(names) >= 25


@pytest.mark.parametrize("upload", CORPUS, ids=lambda u: u.name)
def test_each_hostile_file_decodes_or_is_refused_with_its_reason(upload):
    if upload.decode == "ok":
        img = open_image(upload.data)
        assert img.mode == "RGB"
        if upload.size is not None:
            assert img.size == upload.size
    else:
        with pytest.raises(ImageError) as caught:
            open_image(upload.data)
        assert caught.value.reason == upload.decode


@pytest.mark.parametrize(
    "upload", [u for u in CORPUS if u.decode == "ok"], ids=lambda u: u.name
)
def test_every_decodable_file_becomes_a_finite_model_input(upload):
    recipe = Recipe(height=64, width=48)
    x = load_input(upload.data, recipe, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert x.shape == (3, 64, 48)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()


def test_exif_orientation_is_applied():
    upload = next(u for u in CORPUS if u.name == "exif_rotated")
    img = np.asarray(open_image(upload.data))
    assert img.shape == (80, 40, 3)
    top, bottom = img[10, 20], img[70, 20]
    assert top[0] > 180 and top[2] < 60  # red half on top once upright
    assert bottom[2] > 180 and bottom[0] < 60


def test_palette_transparency_is_composited_on_white():
    upload = next(u for u in CORPUS if u.name == "palette_png_transparency")
    img = np.asarray(open_image(upload.data))
    assert img[0, 0].tolist() == [255, 255, 255]  # transparent index
    assert img[15, 20].tolist() == [200, 30, 30]  # opaque patch


def test_16bit_png_keeps_its_range_in_8_bits():
    upload = next(u for u in CORPUS if u.name == "png_16bit")
    img = np.asarray(open_image(upload.data))
    assert img[0, 0].tolist() == [0, 0, 0]
    # last pixel: 3071 * 21 = 64491 of 65535 -> 250 of 255
    assert img[-1, -1].tolist() == [250, 250, 250]


def test_animated_gif_gives_its_first_frame():
    upload = next(u for u in CORPUS if u.name == "animated_gif")
    img = np.asarray(open_image(upload.data))
    assert img[0, 0].tolist() == [255, 0, 0]


def test_bomb_is_refused_without_inflating_it(monkeypatch):
    upload = next(u for u in CORPUS if u.name == "png_bomb_30000x30000")
    calls = []
    original = Image.Image.load

    def spy(self):
        calls.append(self.size)
        return original(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    with pytest.raises(ImageError) as caught:
        open_image(upload.data)
    assert caught.value.reason == "too_large"
    assert (30000, 30000) not in calls


def test_max_pixels_limit_is_exact():
    data = png(100, 50)
    assert open_image(data, max_pixels=5000).size == (100, 50)
    with pytest.raises(ImageError) as caught:
        open_image(data, max_pixels=4999)
    assert caught.value.reason == "too_large"
    assert "100x50" in str(caught.value)


def _assert_clean(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            img = open_image(data, max_pixels=DEFAULT_MAX_PIXELS)
        except ImageError as e:
            assert e.reason in REASONS
            assert str(e)
            return
    assert img.mode == "RGB"
    assert img.width >= 1 and img.height >= 1


@FUZZ
@given(st.binary(max_size=4096))
def test_fuzz_any_bytes_decode_or_raise_image_error(data):
    _assert_clean(data)


VALID = {"jpeg": jpeg(), "png": png()}


@FUZZ
@given(
    kind=st.sampled_from(sorted(VALID)),
    edits=st.lists(
        st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.one_of(st.none(), st.integers(0, 4000)),
)
def test_fuzz_mutated_images_decode_or_raise_image_error(kind, edits, cut):
    data = bytearray(VALID[kind])
    for offset, value in edits:
        data[offset % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    _assert_clean(bytes(data))


def test_paths_and_file_objects_decode_like_bytes(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg())
    assert open_image(path).size == (64, 48)
    assert open_image(io.BytesIO(jpeg())).size == (64, 48)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError) as caught:
        open_image(tmp_path / "empty.jpg")
    assert caught.value.reason == "empty"
