"""Cropping catalogue photos to the product before resizing."""

import numpy as np
from PIL import Image

from embedding.preprocess import Recipe, crop_to_content, prepare

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def white_with_box(box, size=(60, 80), colour=(200, 30, 30)) -> Image.Image:
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste(colour, box)
    return image


def test_crop_keeps_the_content_box_and_a_margin_of_its_longer_side():
    # Content 10 wide, 20 tall at x 20..29, y 30..49; margin round(0.04 * 20) = 1.
    cropped = crop_to_content(white_with_box((20, 30, 30, 50)))
    assert cropped.size == (12, 22)
    arr = np.asarray(cropped)
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[1, 1]) == (200, 30, 30)
    assert tuple(arr[-2, -2]) == (200, 30, 30)


def test_margin_stops_at_the_image_edge():
    cropped = crop_to_content(white_with_box((0, 0, 25, 50)))
    assert cropped.size == (27, 52)  # margin 2 on the right and bottom only


def test_content_touching_every_edge_is_left_as_it_is():
    image = white_with_box((0, 0, 60, 80))
    assert crop_to_content(image) is image


def test_nearly_blank_image_is_left_as_it_is():
    image = white_with_box((30, 40, 32, 41))  # 2 of 4,800 pixels
    assert crop_to_content(image) is image


def test_jpeg_like_noise_on_the_background_is_not_content():
    rng = np.random.default_rng(0)
    arr = np.full((80, 60, 3), 255, np.int16) - rng.integers(0, 20, (80, 60, 3))
    arr[30:50, 20:30] = (200, 30, 30)
    cropped = crop_to_content(Image.fromarray(arr.astype(np.uint8)))
    assert cropped.size == (12, 22)


def test_small_product_fills_the_input_when_cropping():
    image = white_with_box((25, 35, 35, 45), colour=(0, 0, 0))  # 10x10, margin 0
    cropped = prepare(image, Recipe(64, 48, "pad", crop=True), MEAN, STD)
    plain = prepare(image, Recipe(64, 48, "pad"), MEAN, STD)
    black = (0 - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    assert np.allclose(cropped, black[:, None, None], atol=1e-6)
    assert not np.allclose(plain, black[:, None, None], atol=1e-6)


def test_recipes_stored_without_the_crop_field_do_not_crop():
    stored = {"height": 256, "width": 192, "resize": "pad", "flip": False}
    assert Recipe(**stored).crop is False
    assert Recipe().crop is False


def test_manifests_name_crop_only_when_it_is_on_and_round_trip():
    plain, cropped = Recipe(256, 192), Recipe(256, 192, crop=True)
    assert plain.to_dict() == {
        "height": 256,
        "width": 192,
        "resize": "pad",
        "flip": False,
    }
    assert cropped.to_dict()["crop"] is True
    assert Recipe(**plain.to_dict()) == plain
    assert Recipe(**cropped.to_dict()) == cropped
