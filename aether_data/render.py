"""`aether render`: develop one photo with a param.json or a preset, no model needed.

Why: users of the official VeraRetouch release write a param.json (the official ±100 scale) or hold
a Lightroom preset, and want to see what our develop engine makes of it — the same engine that
renders the dataset's targets — without building a dataset or loading a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from aether_data import params as P
from aether_data.io.atomic import atomic_write_bytes
from aether_data.io.imaging import encode_for_suffix


class RenderError(ValueError):
    """An input the render command cannot use (missing file, bad param.json or preset)."""


def save_image(image: np.ndarray, out: Path) -> None:
    """Write float [0, 1] HxWx3 in the format its suffix names (JPEG/WebP at quality 95), atomically."""
    try:
        data = encode_for_suffix(image, out.suffix)
    except ValueError as exc:
        raise RenderError(f"{out}: {exc}") from None
    atomic_write_bytes(out, data)


def render_with_params(image: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """Slider-scale params → the develop engine's render (what the dataset's param targets are)."""
    from aether_data.develop import render

    return render(image, params)


def render_file(
    image: str | Path,
    out: str | Path,
    *,
    params: str | Path | None = None,
    preset: str | Path | None = None,
    library: Path | None = None,
    scale: str = "official",
    max_side: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Render `image` with a param.json (`params`) or a preset (.xmp / .lrtemplate / library id).

    Returns what was applied: {"mode", "params" (slider scale, param mode), "label", "unsupported"}.
    """
    from aether_data.io.errors import SourceError
    from aether_data.io.imaging import load_image

    if (params is None) == (preset is None):
        raise RenderError("give exactly one of --params param.json or --preset FILE")
    try:
        img = load_image(image, max_side)
    except SourceError as exc:
        raise RenderError(f"{image}: {exc}") from None
    info: dict[str, Any]
    if params is not None:
        try:
            values = P.read_param_json(params, scale=scale)
        except P.ParamError as exc:
            raise RenderError(str(exc)) from None
        result = render_with_params(img, values)
        info = {"mode": "params", "params": P.active(values), "label": Path(params).name, "unsupported": []}
    else:
        from aether_data.develop.preset_ops import render_preset

        label, settings = _load_preset(str(preset), library)
        result = render_preset(img, settings, seed, method="direct")
        info = {"mode": "preset", "label": label, "unsupported": list(settings.unsupported_keys)}
    save_image(result, Path(out))
    return info


def _load_preset(preset: str, library: Path | None) -> tuple[str, Any]:
    from aether_data.presets.errors import PresetFormatError
    from aether_data.presets.importer import read_preset_file

    p = Path(preset)
    if p.suffix.lower() in (".xmp", ".lrtemplate"):
        if not p.is_file():
            raise RenderError(f"preset file not found: {p}")
        try:
            settings, meta = read_preset_file(p)
        except PresetFormatError as exc:
            raise RenderError(f"{exc.file}: {exc.reason}") from None
        return str(meta.get("Name") or p.stem), settings
    from aether_data.presets.library import load_library

    lib = load_library(library)
    try:
        pr = lib.get(preset)
    except KeyError:
        raise RenderError(f"no preset with id {preset!r} and not an .xmp/.lrtemplate path") from None
    return pr.name, pr.settings


def render_command(
    image: Annotated[Path, typer.Argument(help="photo to develop")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output image (.png lossless, else JPEG)")],
    params: Annotated[
        Path | None, typer.Option("--params", help="param.json (official VeraRetouch format, ±100 scale)")
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help=".xmp / .lrtemplate file or a library preset id")
    ] = None,
    scale: Annotated[
        str, typer.Option(help="param.json scale: official (±100) or slider (Exposure in EV)")
    ] = "official",
    max_side: Annotated[int | None, typer.Option(help="downscale so the long side is at most this")] = None,
    library: Annotated[Path | None, typer.Option(help="preset library file (for --preset ids)")] = None,
) -> None:
    """Render a photo with a param.json or a preset using the develop engine (no model needed)."""
    try:
        info = render_file(
            image, out, params=params, preset=preset, library=library, scale=scale, max_side=max_side
        )
    except (RenderError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    applied = ", ".join(f"{k} {v:+g}" for k, v in info.get("params", {}).items())
    typer.echo(f"{info['label']} → {out}" + (f" ({applied})" if applied else ""))
    if info["unsupported"]:
        typer.echo(f"not rendered (unsupported): {', '.join(info['unsupported'])}", err=True)
