"""Pixels in and out: robust decoding, resizing and deterministic encoding of images.

Real collections contain rotated phone JPEGs, greyscale scans, PNGs with alpha, 16-bit TIFFs,
truncated downloads and the occasional decompression bomb, so decoding is done once, here, with a
short machine-usable reason (`SourceError.reason`) for every refusal; the pipeline counts those
reasons instead of crashing a shard. Encoding is deterministic (fixed quantisation tables, no
timestamps), so the same pixels always give the same bytes.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from aether_data.io.errors import SourceError

DECODED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".avif"}
)
"""Formats Pillow decodes here (GIF: the first frame; AVIF: Pillow ≥ 11.3's own plugin)."""

HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif", ".hif"})
"""Decoded when pillow-heif is installed (``pip install aether-data[heif]``), else skipped as
``unsupported-format``."""

UNSUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jxl", ".jp2", ".j2k", ".psd", ".svg", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"}
)
"""Photographs aether cannot decode (raw, layered, vector, JPEG XL / 2000): listed as sources all
the same, so that each is reported in skipped.parquet (``unsupported-format``), never left out."""

IMAGE_EXTENSIONS: frozenset[str] = DECODED_EXTENSIONS | HEIF_EXTENSIONS | UNSUPPORTED_EXTENSIONS
"""What a source folder walk picks up: every photograph is either decoded or reported."""

DEFAULT_MAX_PIXELS = 100_000_000
"""Decompression-bomb guard: images with more pixels than this are refused (`too-large`)."""

MIN_SIDE = 8
"""Images with a side shorter than this carry no usable content (`too-small`)."""

_SRGB = ImageCms.createProfile("sRGB")


# --------------------------------------------------------------------------------------------------
# decoding


def _to_srgb(im: Image.Image) -> Image.Image:
    """Convert RGB/CMYK pixels with an embedded ICC profile to sRGB (a broken profile is ignored)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "CMYK"):
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower() and im.mode == "RGB":
            return im
        return ImageCms.profileToProfile(im, src, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """Any Pillow mode → HxWx3 uint8 RGB (16-bit scaled down, alpha composited over white)."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def load_image(
    path: str | Path,
    max_side: int | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_short: int | None = None,
    dtype: type[np.floating] | type[np.uint8] = np.float32,
) -> np.ndarray:
    """Decode a photo to float32 HxWx3 sRGB in [0, 1], upright, optionally with long side ≤ max_side.

    JPEG draft mode decodes large JPEGs at 1/2..1/8 scale when that still covers `max_side`, which is
    what keeps decoding of 24 MP camera files cheap. Raises SourceError with reasons: not-found,
    empty-file, not-an-image, unsupported-format, too-large, too-small, truncated, decode-error.
    GIF gives its first frame. Pillow's own bomb guard
    (about 179 MP) still applies above `max_pixels` and is reported as too-large too.

    `min_short` (instead of `max_side`) asks for the smallest decode whose short edge still covers
    it: draft mode as far as it allows, then an area downscale to 2·min_short when the result is
    much larger (bounded memory, detail kept for later crops). `dtype=np.uint8` returns the 8-bit
    pixels without the float conversion (cheaper to crop and resize).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        raise SourceError("not-found", p) from None
    if size == 0:
        raise SourceError("empty-file", p)
    return _decode(p, p, max_side, max_pixels, min_short, dtype)


def load_image_bytes(
    data: bytes,
    max_side: int | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_short: int | None = None,
    dtype: type[np.floating] | type[np.uint8] = np.float32,
    name: str | None = None,
) -> np.ndarray:
    """:func:`load_image` for bytes already in memory (downloads, object stores); same reasons.

    `name` (the URI) only labels errors.
    """
    if not data:
        raise SourceError("empty-file", name)
    return _decode(io.BytesIO(data), name, max_side, max_pixels, min_short, dtype)


def _draft_size(w: int, h: int, max_side: int | None, min_short: int | None) -> tuple[int, int] | None:
    """The size to request from JPEG draft mode (None: decode at full size)."""
    if min_short is not None and min(w, h) > min_short:
        scale = min_short / min(w, h)
    elif max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)
    else:
        return None
    return max(1, int(np.ceil(w * scale))), max(1, int(np.ceil(h * scale)))


_HEIF_STATE: list[bool] = []  # [registered?] once per process


def _heif_opener() -> bool:
    """Register pillow-heif's HEIC/HEIF opener once; False when it is not installed."""
    if not _HEIF_STATE:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _HEIF_STATE.append(True)
        except ImportError:
            _HEIF_STATE.append(False)
    return _HEIF_STATE[0]


def _unsupported(p: str | Path | None) -> SourceError | None:
    """The `unsupported-format` skip for a source named as a photograph aether cannot decode."""
    suffix = Path(str(p or "")).suffix.lower()
    if suffix in UNSUPPORTED_EXTENSIONS:
        return SourceError("unsupported-format", p, f"{suffix} is not decoded by aether")
    if suffix in HEIF_EXTENSIONS and not _heif_opener():
        return SourceError(
            "unsupported-format", p, "HEIC/HEIF needs pillow-heif: pip install aether-data[heif]"
        )
    return None


def _decode(
    fp: Path | io.BytesIO,
    p: str | Path | None,
    max_side: int | None,
    max_pixels: int,
    min_short: int | None,
    dtype: type[np.floating] | type[np.uint8],
) -> np.ndarray:
    refused = _unsupported(p)
    if refused is not None:
        raise refused
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except UnidentifiedImageError:
        suffix = Path(str(p or "")).suffix.lower()
        if suffix in IMAGE_EXTENSIONS and suffix not in Image.registered_extensions():  # no plugin
            raise SourceError("unsupported-format", p, "no decoder for this format") from None
        raise SourceError("not-an-image", p) from None
    except Image.DecompressionBombError as exc:
        raise SourceError("too-large", p, str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise SourceError("decode-error", p, str(exc)) from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise SourceError("too-large", p, f"{w}x{h} > {max_pixels} pixels")
        if min(w, h) < MIN_SIDE:
            raise SourceError("too-small", p, f"{w}x{h}")
        draft = _draft_size(w, h, max_side, min_short) if im.format == "JPEG" else None
        if draft is not None:
            im.draft("RGB", draft)
        try:
            im.load()
        except OSError as exc:
            reason = "truncated" if "truncated" in str(exc).lower() else "decode-error"
            raise SourceError(reason, p, str(exc)) from None
        except (ValueError, SyntaxError, EOFError) as exc:
            raise SourceError("decode-error", p, str(exc)) from None
        try:  # in place: the default returns a full copy even when nothing needs turning
            ImageOps.exif_transpose(im, in_place=True)
        except (OSError, ValueError, SyntaxError, KeyError, TypeError):
            pass  # an unreadable EXIF block must not cost the photo; pixels stay as stored
        try:
            rgb = _to_rgb8(_to_srgb(im))
        except (OSError, ValueError) as exc:  # exotic modes Pillow cannot convert (LAB, HSV, ...)
            raise SourceError("decode-error", p, str(exc)) from None
    if min_short is not None and min(rgb.shape[:2]) > 2 * min_short:
        rgb = resize_short_edge(rgb, 2 * min_short)
    if dtype == np.uint8:
        img = rgb
    else:
        img = rgb.astype(np.float32) / np.float32(255.0)
    if max_side is not None and max(img.shape[:2]) > max_side:
        img = _resize_long_edge(img, max_side)
    return img


# --------------------------------------------------------------------------------------------------
# resizing and encoding


def _area_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def box_shrink(img: np.ndarray, k: int) -> np.ndarray:
    """k×k box mean: the image is cropped to a multiple of k, so OpenCV's INTER_AREA takes its
    integer-factor path (several times cheaper than a fractional resize). A power-of-two k runs as
    repeated 2×2 means (OpenCV's fastest path, ~5× cheaper than one 8×8 pass; for 8-bit images
    each halving rounds, so values can differ from a single pass by a level). k < 2 returns `img`."""
    if k < 2:
        return img
    if k & (k - 1) == 0:
        while k > 1:
            img = box_shrink_once(img, 2)
            k //= 2
        return img
    return box_shrink_once(img, k)


def box_shrink_once(img: np.ndarray, k: int) -> np.ndarray:
    """One k×k box-mean pass (the image cropped to a multiple of k)."""
    h, w = img.shape[:2]
    h2, w2 = max(k, h - h % k), max(k, w - w % k)
    return _area_resize(img[:h2, :w2], w2 // k, h2 // k)


def shrink_to(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-downscale to (width, height): 2×2 box means while the image is at least twice the target,
    then one small fractional INTER_AREA pass (a single fractional pass from full size costs ~10×
    more); returns `img` when it is not larger than the target."""
    while img.shape[1] >= 2 * width and img.shape[0] >= 2 * height:
        img = box_shrink_once(img, 2)
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return _area_resize(img, width, height)


def _resize_long_edge(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = size / max(h, w)
    return _area_resize(img, max(1, round(w * scale)), max(1, round(h * scale)))


def resize_short_edge(img: np.ndarray, size: int) -> np.ndarray:
    """Downscale so the short edge is `size` (area interpolation); never upscales a smaller source."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = img.shape[:2]
    short = min(h, w)
    if short <= size:
        return img
    scale = size / short
    new_w = size if w == short else max(size, round(w * scale))
    new_h = size if h == short else max(size, round(h * scale))
    return _area_resize(img, new_w, new_h)


RESIZE_MODES = ("keep_ratio", "center_crop", "border")


def _scale_to(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area interpolation down, bilinear up (area is a box filter: it only averages)."""
    import cv2

    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    if width <= w and height <= h:
        return _area_resize(img, width, height)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_image(
    img: np.ndarray, size: int, mode: str = "keep_ratio", only_if_bigger: bool | None = None
) -> np.ndarray:
    """Resize as img2dataset's ``resize_mode`` names it (see ``ImageSpec.resize_mode``).

    ``only_if_bigger`` None means: never upscale for keep_ratio (the historical behaviour, bytes
    unchanged), scale up for center_crop and border, whose point is one size×size shape.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r}: choose from {', '.join(RESIZE_MODES)}")
    if only_if_bigger is None:
        only_if_bigger = mode == "keep_ratio"
    h, w = img.shape[:2]
    if mode == "border":
        long = max(h, w)
        if long > size or (long < size and not only_if_bigger):
            scale = size / long
            nw = size if w == long else max(1, round(w * scale))
            nh = size if h == long else max(1, round(h * scale))
            img = _scale_to(img, nw, nh)
        h, w = img.shape[:2]
        top, left = (size - h) // 2, (size - w) // 2
        out = np.zeros((size, size, *img.shape[2:]), dtype=img.dtype)
        out[top : top + h, left : left + w] = img
        return out
    short = min(h, w)
    if short > size:
        img = resize_short_edge(img, size)
    elif short < size and not only_if_bigger:
        scale = size / short
        img = _scale_to(
            img,
            size if w == short else max(size, round(w * scale)),
            size if h == short else max(size, round(h * scale)),
        )
    if mode == "center_crop":
        h, w = img.shape[:2]
        ch, cw = min(h, size), min(w, size)
        top, left = (h - ch) // 2, (w - cw) // 2
        img = np.ascontiguousarray(img[top : top + ch, left : left + cw])
    return img


def as_float01(img: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: uint8 pixels divided by 255 (the build's one conversion), floats as they are."""
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return np.divide(arr, np.float32(255.0), dtype=np.float32)
    return arr.astype(np.float32, copy=False)


def to_pil_rgb(img: np.ndarray) -> Image.Image:
    """A Pillow RGB image for a model's preprocessing: uint8 as is, float in [0, 1] rounded half up."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def quantise_u8(img: np.ndarray) -> np.ndarray:
    """Float [0, 1] → uint8 as clip(rint(x · 255), 0, 255) in float32 (round half to even), the one
    rounding every encoder and 8-bit pass uses; uint8 is returned as is.

    OpenCV does it in two passes (negatives to 0, then scale, round and saturate): ~40× faster than
    the numpy expression, same bytes (tested)."""
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] <= 4):
        import cv2

        positive = cv2.threshold(np.ascontiguousarray(arr), 0.0, 0.0, cv2.THRESH_TOZERO)[1]
        return cv2.convertScaleAbs(positive, alpha=255.0).reshape(arr.shape)
    return np.clip(np.rint(arr * np.float32(255.0)), 0, 255).astype(np.uint8)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    out = quantise_u8(arr)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    return np.ascontiguousarray(out)


# IJG (libjpeg) standard luminance quantisation table, natural order (ITU-T T.81 Annex K).
_IJG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip


def jpeg_qtable(quality: int) -> list[int]:
    """The IJG luminance table scaled for `quality` exactly as libjpeg's quality setting does."""
    q = min(100, max(1, int(quality)))
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return [min(255, max(1, (v * scale + 50) // 100)) for v in _IJG_LUMA]


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    """Float [0, 1] (or uint8) RGB → colour-accurate baseline JPEG; same pixels, same bytes.

    Training targets are colour-critical, so unlike a web JPEG: no chroma subsampling (4:4:4) and
    the chroma channels use the luminance quantisation table of the same quality. At quality 95
    this keeps an edited photo within ~40 dB of its float render even on noisy sources, where
    standard tables lose ~1.5 dB more (measured on the bundled photos; files ~25% larger).
    """
    table = jpeg_qtable(quality)
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(img), "RGB").save(
        buf, format="JPEG", qtables=[table, table], subsampling=0, optimize=False, progressive=False
    )
    return buf.getvalue()


def encode_png(img: np.ndarray) -> bytes:
    """Float [0, 1] (or uint8) RGB → 8-bit PNG bytes without time or text chunks (deterministic)."""
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(img), "RGB").save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def decode_image_u8(data: bytes) -> np.ndarray:
    """Decode stored image bytes exactly as a reader of the shard will (Pillow), HxWx3 uint8."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def decode_own_u8(data: bytes) -> np.ndarray:
    """`decode_image_u8` for bytes `encode_jpeg` / `encode_png` wrote: the same pixels, ~20% faster.

    Why: a sample re-decodes its own input JPEG (what a reader sees) and Pillow's ``np.asarray``
    copies the decoded image twice more. These files are plain RGB (4:4:4, no EXIF, no ICC), which
    OpenCV's libjpeg-turbo / libpng decode to the very pixels Pillow does (a test checks it on every
    bundled photo). Read-only over bytes like Pillow's array, so per-photo caches treat both alike.
    """
    import cv2

    buf = np.frombuffer(data, np.uint8)
    flags = cv2.IMREAD_IGNORE_ORIENTATION
    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV ≥ 4.10: no BGR → RGB pass
    if rgb is not None:
        arr = cv2.imdecode(buf, rgb | flags)
    else:  # pragma: no cover - OpenCV < 4.10
        arr = cv2.imdecode(buf, cv2.IMREAD_COLOR | flags)
        if arr is not None:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr is None or arr.ndim != 3 or arr.shape[2] != 3:  # not what encode_* writes: the reader's way
        return decode_image_u8(data)
    # over an immutable bytes object, as Pillow's: a read-only flag alone can be switched back, and
    # per-photo caches (workflows.base.LastImageMemo) key on pixels that nothing can change
    return np.frombuffer(arr.tobytes(), np.uint8).reshape(arr.shape)


OUTPUT_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
"""File suffix → Pillow format of the images a command writes (`aether render`, `presets apply`)."""


def encode_for_suffix(img: np.ndarray, suffix: str, quality: int = 95) -> bytes:
    """Float [0, 1] or uint8 HxWx3 → bytes in the format the suffix names (so `-o x.webp` is WebP).

    Raises ValueError naming the supported suffixes for any other.
    """
    fmt = OUTPUT_FORMATS.get(suffix.lower())
    if fmt is None:
        raise ValueError(
            f"unsupported output format {suffix!r} (use one of {', '.join(sorted(OUTPUT_FORMATS))})"
        )
    arr = (
        img
        if img.dtype == np.uint8
        else np.clip(np.asarray(img, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    )
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()
