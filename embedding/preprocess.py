"""Image preprocessing shared by the index builder and the search service.

decode (bounded, a fixed set of raster formats) -> EXIF orientation -> RGB with
transparency composited on white -> resize to the model input -> normalise.
"""

import contextlib
import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Raster formats we decode. Anything else (SVG, PDF, EPS, HTML, ...) is refused
# before any decoder for it runs.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
DEFAULT_MAX_PIXELS = 40_000_000
RESIZE_MODES = ("pad", "squash")
# A pixel is background when no channel differs from the border colour by more
# than this (JPEG noise on white stays well below it).
CROP_THRESHOLD = 24
CROP_MARGIN = 0.04  # kept around the content, as a share of its longer side
CROP_MIN_CONTENT = 0.005  # share of pixels below which nothing is cropped


class ImageError(ValueError):
    """An input that is not a usable image; ``reason`` is a short stable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Recipe:
    """How an image becomes model input. Stored with each index, so that queries
    are prepared exactly like the catalogue was."""

    height: int = 256  # 3:4 portrait, like the catalogue photos
    width: int = 192
    resize: str = "pad"  # pad: keep aspect, fill with the border colour; squash
    flip: bool = False  # average the embeddings of the image and its mirror
    # Crop to the product (away from the plain background) before resizing. Off
    # unless asked for, so that indexes recorded without this field keep
    # preparing queries exactly as they prepared their catalogue.
    crop: bool = False

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise ValueError(
                f"resize must be one of {RESIZE_MODES}, not {self.resize!r}"
            )
        if not (16 <= self.height <= 1024 and 16 <= self.width <= 1024):
            raise ValueError(f"input size {self.height}x{self.width} is out of range")

    def to_dict(self) -> dict:
        """The fields stored in an index manifest; ``crop`` only when it is on,
        so manifests of recipes without it read the same as before it existed."""
        fields = asdict(self)
        if not self.crop:
            del fields["crop"]
        return fields


def open_image(source, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes, a path or a file object into a loaded RGB image.

    Raises ImageError with reason empty, not_an_image, too_large or truncated.
    """
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty", "the file is empty")
        source = io.BytesIO(source)
    elif isinstance(source, (str, Path)) and Path(source).stat().st_size == 0:
        raise ImageError("empty", "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source, formats=FORMATS)
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    "too_large",
                    f"the image is {width}x{height} pixels; at most {max_pixels:,} "
                    "pixels are accepted",
                )
            img.seek(0)  # first frame of an animation
            img.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        if isinstance(e, Image.DecompressionBombError):
            raise ImageError("too_large", "the image has too many pixels") from e
        raise ImageError(
            "not_an_image", f"not a supported image (use {', '.join(FORMATS)})"
        ) from e
    except Image.DecompressionBombWarning as e:
        raise ImageError("too_large", "the image has too many pixels") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(
            "truncated", f"the image data is truncated or corrupt: {e}"
        ) from e
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Upright RGB, with any transparency composited on white."""
    # A malformed EXIF block should not lose the picture: keep it as stored.
    with contextlib.suppress(Exception):
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 255.0 / 65535.0 if arr.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def border_colour(img: Image.Image) -> tuple[int, int, int]:
    """Median colour of the outermost pixels: the photo's background."""
    arr = np.asarray(img)
    edge = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return tuple(int(v) for v in np.median(edge, axis=0))


def crop_to_content(
    img: Image.Image,
    threshold: int = CROP_THRESHOLD,
    margin: float = CROP_MARGIN,
    min_content: float = CROP_MIN_CONTENT,
) -> Image.Image:
    """The image cut to the bounding box of the pixels that differ from its
    border colour, plus a small margin: a watch or a belt photographed on a wide
    white background then fills the model input like a dress does. Images whose
    content touches every edge, or that are nearly all background, come back
    unchanged."""
    arr = np.asarray(img, dtype=np.int16)
    background = np.asarray(border_colour(img), dtype=np.int16)
    content = np.abs(arr - background).max(axis=2) > threshold
    if content.sum() < min_content * content.size:
        return img
    rows = np.flatnonzero(content.any(axis=1))
    cols = np.flatnonzero(content.any(axis=0))
    pad = round(margin * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    box = (
        max(0, int(cols[0]) - pad),
        max(0, int(rows[0]) - pad),
        min(img.width, int(cols[-1]) + 1 + pad),
        min(img.height, int(rows[-1]) + 1 + pad),
    )
    if box == (0, 0, img.width, img.height):
        return img
    return img.crop(box)


def fit(img: Image.Image, recipe: Recipe) -> Image.Image:
    size = (recipe.width, recipe.height)
    if recipe.resize == "squash":
        return img.resize(size, Image.BILINEAR)
    scale = min(recipe.width / img.width, recipe.height / img.height)
    inner = (
        max(1, min(recipe.width, round(img.width * scale))),
        max(1, min(recipe.height, round(img.height * scale))),
    )
    canvas = Image.new("RGB", size, border_colour(img))
    offset = ((size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2)
    canvas.paste(img.resize(inner, Image.BILINEAR), offset)
    return canvas


def normalise(img: Image.Image, mean, std) -> np.ndarray:
    """HWC uint8 image -> CHW float32, scaled to [0, 1] then standardised."""
    arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def prepare(img: Image.Image, recipe: Recipe, mean, std) -> np.ndarray:
    """A decoded RGB image as one CHW model input."""
    if img.width > 2 * recipe.width and img.height > 2 * recipe.height:
        # Cheap first reduction of large photos before the quality resize.
        img = img.reduce(min(img.width // recipe.width, img.height // recipe.height))
    if recipe.crop:
        img = crop_to_content(img)
    return normalise(fit(img, recipe), mean, std)


def load(source, recipe: Recipe, mean, std, max_pixels=DEFAULT_MAX_PIXELS):
    """Bytes or path straight to one CHW model input."""
    return prepare(open_image(source, max_pixels), recipe, mean, std)
