"""Decoding uploads of every common image mode to upright RGB."""

import io

import numpy as np
import pytest
from PIL import Image

from embedding.preprocess import ImageError, Recipe, load, open_image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def pixel(data: bytes, xy=(0, 0)):
    image = open_image(data)
    assert image.mode == "RGB"
    return image.getpixel(xy)


def test_palette_png_decodes_to_its_colours():
    image = Image.new("P", (4, 4))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 1), 1)
    data = encode(image, "PNG")
    assert pixel(data, (0, 0)) == (255, 0, 0)
    assert pixel(data, (1, 1)) == (0, 0, 255)


def test_palette_png_with_a_transparent_index_is_white_there():
    image = Image.new("P", (4, 4))
    image.putpalette([0, 128, 0, 10, 10, 10] + [0] * 762)
    image.putpixel((2, 2), 1)
    data = encode(image, "PNG", transparency=0)
    assert pixel(data, (0, 0)) == (255, 255, 255)
    assert pixel(data, (2, 2)) == (10, 10, 10)


def test_grayscale_jpeg_becomes_grey_rgb():
    r, g, b = pixel(encode(Image.new("L", (8, 8), 90), "JPEG", quality=100))
    assert r == g == b
    assert abs(r - 90) <= 1


def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), "JPEG", quality=100)
    r, g, b = pixel(data)
    assert r <= 10 and g >= 245 and b >= 245  # cyan


def test_16_bit_grayscale_png_is_scaled_to_8_bits():
    array = np.full((6, 6), 65535, dtype=np.uint16)
    array[0, 0] = 32896  # about half
    data = encode(Image.fromarray(array), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert pixel(data, (1, 1)) == (255, 255, 255)
    assert pixel(data, (0, 0)) == (128, 128, 128)


def test_rgba_png_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((1, 1), (255, 0, 0, 255))
    image.putpixel((2, 2), (0, 0, 0, 128))
    data = encode(image, "PNG")
    assert pixel(data, (0, 0)) == (255, 255, 255)
    assert pixel(data, (1, 1)) == (255, 0, 0)
    assert pixel(data, (2, 2)) == (127, 127, 127)


def test_grayscale_with_alpha_is_composited_on_white():
    image = Image.new("LA", (4, 4), (0, 0))
    assert pixel(encode(image, "PNG")) == (255, 255, 255)


def test_exif_orientation_is_applied():
    # Stored 60 wide and 80 high, red on the left half; orientation 6 says
    # "rotate 90 degrees clockwise to display": upright it is 80 wide, red on top.
    image = Image.new("RGB", (60, 80), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 30, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(image, "JPEG", quality=100, exif=exif)

    upright = open_image(data)
    assert upright.size == (80, 60)
    r, _, b = upright.getpixel((40, 5))
    assert r > 200 and b < 50
    r, _, b = upright.getpixel((40, 55))
    assert r < 50 and b > 200


def test_animated_gif_uses_its_first_frame():
    frames = [Image.new("P", (4, 4), i) for i in range(3)]
    for frame in frames:
        frame.putpalette([200, 0, 0, 0, 200, 0, 0, 0, 200] + [0] * 759)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert pixel(data) == (200, 0, 0)


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
)
def test_every_mode_prepares_to_the_recipe_size(mode):
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    data = encode(Image.new(mode, (30, 50)), fmt)
    recipe = Recipe(height=64, width=48)
    array = load(data, recipe, MEAN, STD)
    assert array.shape == (3, 64, 48)
    assert array.dtype == np.float32
    assert np.isfinite(array).all()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"GIF89a", "not_an_image"),
        (encode(Image.effect_noise((64, 64), 50), "PNG")[:200], "truncated"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not_an_image"),
        (b"%PDF-1.7\n", "not_an_image"),
    ],
)
def test_unusable_bytes_raise_image_error_with_a_reason(data, reason):
    with pytest.raises(ImageError) as caught:
        open_image(data)
    assert caught.value.reason == reason
