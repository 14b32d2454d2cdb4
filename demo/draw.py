"""Drawing one catalogue item: a shape filled with a colour and a pattern on a
white background, as a 60x80 portrait like the real catalogue photos."""

import random

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 60, 80
SCALE = 4  # drawn large, then reduced, for smooth edges
W, H = WIDTH * SCALE, HEIGHT * SCALE

COLOURS = {
    "Black": (30, 30, 32),
    "White": (236, 236, 232),
    "Blue": (40, 90, 200),
    "Navy Blue": (25, 35, 90),
    "Red": (200, 30, 40),
    "Green": (40, 140, 60),
    "Yellow": (240, 200, 40),
    "Pink": (240, 140, 180),
    "Grey": (128, 128, 128),
    "Brown": (120, 75, 40),
    "Purple": (120, 50, 150),
    "Orange": (240, 120, 30),
    "Beige": (215, 195, 160),
    "Maroon": (110, 20, 35),
    "Olive": (110, 115, 40),
}
PATTERNS = ("solid", "solid", "stripes", "dots", "checks")


def _tshirt(r):
    sleeve = r.uniform(0.18, 0.3)
    return [
        [(0.32, 0.18), (0.42, 0.14), (0.5, 0.2), (0.58, 0.14), (0.68, 0.18)]
        + [(0.92, 0.18 + sleeve), (0.8, 0.26 + sleeve), (0.74, 0.3)]
        + [(0.74, 0.86), (0.26, 0.86), (0.26, 0.3), (0.2, 0.26 + sleeve)]
        + [(0.08, 0.18 + sleeve)]
    ]


def _trousers(r):
    gap = r.uniform(0.02, 0.06)
    hem = r.uniform(0.86, 0.94)
    flare = r.uniform(0.0, 0.06)
    return [
        [(0.3, 0.1), (0.7, 0.1), (0.72, 0.3), (0.68 + flare, hem)]
        + [(0.52 + gap, hem), (0.5, 0.4), (0.48 - gap, hem), (0.32 - flare, hem)]
        + [(0.28, 0.3)]
    ]


def _shorts(r):
    hem = r.uniform(0.5, 0.6)
    return [
        [(0.26, 0.3), (0.74, 0.3), (0.8, hem), (0.54, hem), (0.5, 0.42)]
        + [(0.46, hem), (0.2, hem)]
    ]


def _dress(r):
    hem = r.uniform(0.8, 0.94)
    spread = r.uniform(0.1, 0.22)
    return [
        [(0.38, 0.1), (0.42, 0.1), (0.44, 0.2), (0.56, 0.2), (0.58, 0.1)]
        + [(0.62, 0.1), (0.64, 0.38), (0.66 + spread, hem), (0.34 - spread, hem)]
        + [(0.36, 0.38)]
    ]


def _shoe(r):
    top = r.uniform(0.42, 0.5)
    return [
        [(0.1, 0.62), (0.14, top), (0.34, top), (0.44, 0.54), (0.78, 0.58)]
        + [(0.9, 0.64), (0.9, 0.7), (0.1, 0.7)]
    ]


def _flip_flop(r):
    return [
        [(0.34, 0.2), (0.66, 0.2), (0.7, 0.5), (0.62, 0.86), (0.38, 0.86)]
        + [(0.3, 0.5)]
    ]


def _handbag(r):
    top = r.uniform(0.38, 0.46)
    return [[(0.24, top), (0.76, top), (0.86, 0.82), (0.14, 0.82)]]


def _backpack(r):
    return [[(0.24, 0.16), (0.76, 0.16), (0.8, 0.86), (0.2, 0.86)]]


def _cap(r):
    return [
        [(0.2, 0.56), (0.26, 0.4), (0.4, 0.32), (0.6, 0.32), (0.74, 0.4)]
        + [(0.8, 0.56), (0.94, 0.6), (0.94, 0.64), (0.2, 0.64)]
    ]


def _watch(r):
    return [
        [(0.42, 0.06), (0.58, 0.06), (0.58, 0.94), (0.42, 0.94)],
    ]


# articleType -> (masterCategory, subCategory, shape, genders)
ARTICLES = {
    "Tshirts": ("Apparel", "Topwear", _tshirt, ("Men", "Women", "Boys", "Girls")),
    "Trousers": ("Apparel", "Bottomwear", _trousers, ("Men", "Women")),
    "Shorts": ("Apparel", "Bottomwear", _shorts, ("Men", "Women", "Boys")),
    "Dresses": ("Apparel", "Dress", _dress, ("Women", "Girls")),
    "Casual Shoes": ("Footwear", "Shoes", _shoe, ("Men", "Women", "Unisex")),
    "Flip Flops": ("Footwear", "Flip Flops", _flip_flop, ("Men", "Women")),
    "Handbags": ("Accessories", "Bags", _handbag, ("Women",)),
    "Backpacks": ("Accessories", "Bags", _backpack, ("Unisex", "Men", "Women")),
    "Caps": ("Accessories", "Headwear", _cap, ("Men", "Unisex")),
    "Watches": ("Accessories", "Watches", _watch, ("Men", "Women")),
}


def _pixels(polygon, scale=1.0, shift=(0.0, 0.0)):
    """Unit coordinates to pixels, scaled about the centre and shifted."""
    return [
        (
            (0.5 + (x - 0.5) * scale + shift[0]) * W,
            (0.5 + (y - 0.5) * scale + shift[1]) * H,
        )
        for x, y in polygon
    ]


def _pattern(pattern: str, colour, r: random.Random) -> Image.Image:
    fill = Image.new("RGB", (W, H), colour)
    if pattern == "solid":
        return fill
    second = tuple(255 - c if sum(colour) < 380 else c // 3 for c in colour)
    draw = ImageDraw.Draw(fill)
    step = r.choice((16, 24, 32))
    if pattern == "stripes":
        for y in range(0, H, step):
            draw.rectangle([0, y, W, y + step // 3], fill=second)
    elif pattern == "dots":
        for y in range(step // 2, H, step):
            for x in range(step // 2, W, step):
                draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=second)
    else:  # checks
        for y in range(0, H, step):
            for x in range(0, W, step):
                if (x // step + y // step) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=second)
    return fill


def draw_item(article: str, colour_name: str, pattern: str, r: random.Random):
    """One 60x80 RGB portrait of an article on a white background."""
    shape = ARTICLES[article][2]
    colour = COLOURS[colour_name]
    polygons = shape(r)
    # Every item sits a little differently in its photo, as real ones do.
    scale = r.uniform(0.88, 1.04)
    shift = (r.uniform(-0.03, 0.03), r.uniform(-0.03, 0.03))
    polygons = [_pixels(polygon, scale, shift) for polygon in polygons]
    mask = Image.new("L", (W, H), 0)
    mask_draw = ImageDraw.Draw(mask)
    for polygon in polygons:
        mask_draw.polygon(polygon, fill=255)
    if article == "Watches":
        mask_draw.ellipse([0.28 * W, 0.36 * H, 0.72 * W, 0.64 * H], fill=255)
    if article in ("Handbags",):
        mask_draw.arc([0.34 * W, 0.2 * H, 0.66 * W, 0.56 * H], 180, 360, 255, 12)

    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    canvas.paste(_pattern(pattern, colour, r), (0, 0), mask)
    outline = ImageDraw.Draw(canvas)
    for polygon in polygons:
        outline.polygon(polygon, outline=(60, 60, 60), width=3)
    if article == "Watches":
        outline.ellipse([0.34 * W, 0.4 * H, 0.66 * W, 0.6 * H], fill=(250, 250, 250))
    return canvas.resize((WIDTH, HEIGHT), Image.LANCZOS)
