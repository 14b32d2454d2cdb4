"""Hostile and odd uploads, each with what the decoder and the service must answer.

Everything is generated here from fixed seeds, so the corpus is the same on every
machine and nothing binary is kept in the repository.

- ``uploads()``: one file each, sent as the multipart field ``image``. ``decode``
  is what ``embedding.preprocess.open_image`` must do with the bytes ("ok" or the
  ``ImageError`` reason); ``status`` and ``code`` are the HTTP answer.
- ``raw_requests()``: malformed or unusual multipart bodies that cannot be built
  from one file (several files in one field, a body cut short, a filename that is
  not UTF-8, no ``image`` field at all).
"""

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

# HTTP status and error code the service answers for each decoder reason.
ANSWER_FOR_REASON = {
    "empty": (400, "empty_image"),
    "not_an_image": (415, "unsupported_image"),
    "truncated": (400, "corrupt_image"),
    "too_large": (400, "image_too_large"),
}
SEED = 7


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    decode: str  # "ok" or the ImageError reason
    filename: str = "photo.jpg"
    content_type: str = "image/jpeg"
    size: tuple[int, int] | None = None  # (width, height) after decoding
    # The HTTP answer when it is not the decoder's: a file name that breaks the
    # multipart headers leaves the request without a usable `image` part.
    answer: tuple[int, str | None] | None = None

    @property
    def status(self) -> int:
        if self.answer:
            return self.answer[0]
        return 200 if self.decode == "ok" else ANSWER_FOR_REASON[self.decode][0]

    @property
    def code(self) -> str | None:
        if self.answer:
            return self.answer[1]
        return None if self.decode == "ok" else ANSWER_FOR_REASON[self.decode][1]


@dataclass(frozen=True)
class RawRequest:
    name: str
    body: bytes
    content_type: str
    status: int
    code: str | None
    results: int | None = None  # number of result lists on success


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def photo(width: int = 64, height: int = 48, seed: int = SEED) -> Image.Image:
    """A small colourful RGB picture with structure (not flat noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack(
        [
            (x * 255 // max(1, width - 1)),
            (y * 255 // max(1, height - 1)),
            (x ^ y) & 255,
        ],
        axis=-1,
    ).astype(np.uint8)
    arr[rng.random((height, width)) < 0.05] = 0
    return Image.fromarray(arr, "RGB")


def jpeg(width: int = 64, height: int = 48) -> bytes:
    return encode(photo(width, height), "JPEG", quality=90)


def png(width: int = 64, height: int = 48) -> bytes:
    return encode(photo(width, height), "PNG")


def jpeg_with_declared_size(width: int, height: int) -> bytes:
    """A valid small JPEG whose frame header (SOF0) claims another size."""
    data = bytearray(jpeg())
    sof = data.index(b"\xff\xc0")
    # FF C0, length (2), precision (1), height (2), width (2)
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bomb(side: int = 30_000) -> bytes:
    """A real 1-bit PNG of side x side zero pixels: ~110 kB that inflate to ~112 MB."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grey
    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 24), colour) for colour in ("red", "lime", "blue")]
    return encode(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0
    )


def cmyk_jpeg() -> bytes:
    return encode(photo().convert("CMYK"), "JPEG", quality=90)


def png_16bit() -> bytes:
    arr = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    img = Image.frombytes("I;16", (64, 48), arr.astype("<u2").tobytes())
    return encode(img, "PNG")


def palette_png_with_transparency() -> bytes:
    img = Image.new("P", (40, 30), 0)
    img.putpalette([0, 0, 0, 200, 30, 30] + [0] * (254 * 3))
    img.paste(1, (10, 5, 30, 25))
    return encode(img, "PNG", transparency=0)  # index 0 (black) is see-through


def exif_rotated_jpeg() -> bytes:
    """Stored 80x40 (left half red, right half blue) with orientation 6 (rotate 90
    clockwise to display): upright it is 40x80, red on top."""
    img = Image.new("RGB", (80, 40), (220, 0, 0))
    img.paste((0, 0, 220), (40, 0, 80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def jpeg_with_broken_exif() -> bytes:
    """A JPEG whose APP1 Exif segment is garbage: the picture must still decode."""
    data = jpeg()
    junk = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\xff\xff" + b"\xee" * 20
    segment = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    return data[:2] + segment + data[2:]


def png_with_bad_crc() -> bytes:
    data = bytearray(png())
    data[29] ^= 0xFF  # last byte of the IHDR checksum
    return bytes(data)


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
    b'height="10"><script>alert(1)</script><rect width="10" height="10"/></svg>'
)
HTML = b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages"
    b"/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


def zip_of_a_jpeg() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("photo.jpg", jpeg())
    return buf.getvalue()


def uploads() -> list[Upload]:
    rng = np.random.default_rng(SEED)
    full_jpeg, full_png = jpeg(), png()
    return [
        Upload("empty", b"", "empty"),
        Upload("one_byte", b"\xff", "not_an_image"),
        Upload("random_bytes", rng.bytes(4096), "not_an_image"),
        Upload(
            "jpeg_magic_then_noise", b"\xff\xd8\xff" + rng.bytes(500), "not_an_image"
        ),
        Upload("truncated_jpeg", full_jpeg[: len(full_jpeg) // 2], "truncated"),
        Upload(
            "truncated_png",
            full_png[: len(full_png) // 2],
            "truncated",
            "photo.png",
            "image/png",
        ),
        Upload("png_bad_checksum", png_with_bad_crc(), "not_an_image", "a.png"),
        Upload(
            "jpeg_declares_65000x65000",
            jpeg_with_declared_size(65000, 65000),
            "too_large",
        ),
        Upload(
            "jpeg_declares_8000x6000", jpeg_with_declared_size(8000, 6000), "too_large"
        ),
        Upload(
            "png_bomb_30000x30000", png_bomb(), "too_large", "bomb.png", "image/png"
        ),
        Upload("pixel_1x1", jpeg(1, 1), "ok", size=(1, 1)),
        Upload(
            "strip_20000x10",
            png(20000, 10),
            "ok",
            "strip.png",
            "image/png",
            size=(20000, 10),
        ),
        Upload(
            "strip_10x20000",
            png(10, 20000),
            "ok",
            "strip.png",
            "image/png",
            size=(10, 20000),
        ),
        Upload(
            "animated_gif", animated_gif(), "ok", "anim.gif", "image/gif", size=(32, 24)
        ),
        Upload("cmyk_jpeg", cmyk_jpeg(), "ok", size=(64, 48)),
        Upload(
            "grayscale_jpeg", encode(photo().convert("L"), "JPEG"), "ok", size=(64, 48)
        ),
        Upload("png_16bit", png_16bit(), "ok", "deep.png", "image/png", size=(64, 48)),
        Upload(
            "palette_png_transparency",
            palette_png_with_transparency(),
            "ok",
            "pal.png",
            "image/png",
            size=(40, 30),
        ),
        Upload(
            "png_alpha",
            encode(photo().convert("RGBA"), "PNG"),
            "ok",
            "a.png",
            "image/png",
            size=(64, 48),
        ),
        Upload(
            "webp", encode(photo(), "WEBP"), "ok", "a.webp", "image/webp", size=(64, 48)
        ),
        Upload(
            "bmp", encode(photo(), "BMP"), "ok", "a.bmp", "image/bmp", size=(64, 48)
        ),
        Upload("exif_rotated", exif_rotated_jpeg(), "ok", size=(40, 80)),
        Upload("jpeg_broken_exif", jpeg_with_broken_exif(), "ok", size=(64, 48)),
        Upload("svg", SVG, "not_an_image", "x.svg", "image/svg+xml"),
        Upload("html", HTML, "not_an_image", "x.html", "text/html"),
        Upload("pdf", PDF, "not_an_image", "x.pdf", "application/pdf"),
        Upload("eps", EPS, "not_an_image", "x.eps", "application/postscript"),
        Upload(
            "zip_holding_a_jpeg",
            zip_of_a_jpeg(),
            "not_an_image",
            "x.zip",
            "application/zip",
        ),
        Upload(
            "jpeg_sent_as_text_plain",
            full_jpeg,
            "ok",
            "notes.txt",
            "text/plain",
            size=(64, 48),
        ),
        Upload("html_sent_as_image_jpeg", HTML, "not_an_image", "x.jpg", "image/jpeg"),
        Upload(
            "filename_with_dotdot",
            full_jpeg,
            "ok",
            "../../../tmp/evil-upload.jpg",
            size=(64, 48),
        ),
        Upload(
            "very_long_filename", full_jpeg, "ok", "a" * 5000 + ".jpg", size=(64, 48)
        ),
        Upload(
            "filename_with_nul_and_newline",
            full_jpeg,
            "ok",
            "x\x00y\r\nContent-Type: text/html.jpg",
            size=(64, 48),
            answer=(400, "missing_image"),
        ),
    ]


BOUNDARY = "hostileBoundary7e3c"


def part(
    field: str,
    data: bytes,
    filename: bytes | None = b"photo.jpg",
    content_type: str = "image/jpeg",
) -> bytes:
    disposition = b'form-data; name="' + field.encode() + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    head = b"Content-Disposition: " + disposition + b"\r\n"
    if filename is not None:
        head += b"Content-Type: " + content_type.encode() + b"\r\n"
    return b"--" + BOUNDARY.encode() + b"\r\n" + head + b"\r\n" + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n"


CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def raw_requests() -> list[RawRequest]:
    one, two = jpeg(), png()
    complete = body(part("image", one))
    return [
        RawRequest(
            "two_files_in_one_field",
            body(part("image", one), part("image", two, b"b.png", "image/png")),
            CONTENT_TYPE,
            200,
            None,
            results=2,
        ),
        # Werkzeug reads part headers as UTF-8; one that is not makes the whole
        # form unreadable, so the request has no `image` part.
        RawRequest(
            "non_utf8_filename",
            body(part("image", one, b"\xff\xfe\xc3(caf\xe9.jpg")),
            CONTENT_TYPE,
            400,
            "missing_image",
        ),
        RawRequest(
            "body_cut_short",
            complete[: len(complete) // 2],
            CONTENT_TYPE,
            400,
            "missing_image",  # the cut part is dropped whole, never half-read
        ),
        RawRequest(
            "no_image_field",
            body(part("k", b"5", None)),
            CONTENT_TYPE,
            400,
            "missing_image",
        ),
        RawRequest(
            "image_field_without_file",
            body(part("image", b"hello", None)),
            CONTENT_TYPE,
            400,
            "missing_image",
        ),
        RawRequest("not_multipart", one, "image/jpeg", 400, "missing_image"),
        RawRequest(
            "multipart_without_boundary",
            complete,
            "multipart/form-data",
            400,
            "missing_image",
        ),
    ]
