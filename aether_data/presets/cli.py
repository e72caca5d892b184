"""`aether presets …`: list, show, import, apply and export presets (a typer sub-app, ``presets_app``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aether_data.io.atomic import atomic_write_bytes
from aether_data.io.imaging import encode_for_suffix

presets_app = typer.Typer(
    help="Lightroom presets: the generated library, imported XMP / .lrtemplate packs, rendering and .cube export.",
    no_args_is_help=True,
    add_completion=False,
)
_out = Console()
_err = Console(stderr=True)

LibraryOpt = Annotated[
    Path | None, typer.Option("--library", help="library file (default: presets/library.jsonl.gz)")
]


def _fail(msg: str, code: int = 1) -> None:
    _err.print(f"[red]error:[/red] {msg}", soft_wrap=True)
    raise typer.Exit(code)


def _load(library: Path | None) -> Any:
    from aether_data.presets.library import load_library

    try:
        return load_library(library)
    except (OSError, ValueError) as exc:
        _fail(f"cannot load the preset library: {exc}")


def _resolve(preset: str, library: Path | None) -> tuple[str, Any, dict[str, Any]]:
    """(label, settings, info) for a library id or an .xmp / .lrtemplate path."""
    from aether_data.presets.errors import PresetFormatError
    from aether_data.presets.importer import read_preset_file

    p = Path(preset)
    if p.suffix.lower() in (".xmp", ".lrtemplate"):
        if not p.is_file():
            _fail(f"preset file not found: {p}")
        try:
            settings, meta = read_preset_file(p)
        except PresetFormatError as exc:
            _fail(f"{exc.file}: {exc.reason}")
        except RecursionError:
            _fail(f"{p}: not a usable preset (nested too deeply)")
        except (OverflowError, ValueError, UnicodeDecodeError) as exc:
            _fail(f"{p}: not a usable preset ({type(exc).__name__}: {exc})")
        return str(meta.get("Name") or p.stem), settings, {"file": str(p), "name": meta.get("Name") or p.stem}
    lib = _load(library)
    try:
        pr = lib.get(preset)
    except KeyError:
        _fail(f"no preset with id {preset!r} (try `aether presets list`) and not an .xmp/.lrtemplate path")
    return pr.name, pr.settings, pr.info()


@presets_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable counts")] = False,
    library: LibraryOpt = None,
) -> None:
    """Presets per primary and fine category."""
    lib = _load(library)
    counts = lib.counts()
    if as_json:
        typer.echo(json.dumps(counts, ensure_ascii=False))
        return
    table = Table(title=f"{counts['presets']} presets")
    table.add_column("primary")
    table.add_column("fine categories", justify="right")
    table.add_column("presets", justify="right")
    for prim in counts["primary"]:
        n_fine = sum(1 for f in counts["fine"] if f["primary"] == prim["name"])
        table.add_row(prim["name"], str(n_fine), str(prim["count"]))
    _out.print(table)


@presets_app.command("show")
def show_cmd(
    preset_id: Annotated[str, typer.Argument(help="library id, e.g. kodak-portra-warm-01")],
    as_json: Annotated[bool, typer.Option("--json", help="print the preset as JSON")] = False,
    library: LibraryOpt = None,
) -> None:
    """One preset: identity, settings, what it does, unsupported keys."""
    from aether_data.presets.describe import summary
    from aether_data.presets.wording import style_plans

    lib = _load(library)
    try:
        p = lib.get(preset_id)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    data = {
        **p.info(),
        "summary": summary(p.settings),
        "plans": style_plans(p.settings),
        "settings": p.settings.to_json(),
        "unsupported": p.settings.unsupported_keys,
        "issues": list(p.settings.issues),
    }
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _out.print(f"[bold]{p.name}[/bold]  ({p.id})  {p.primary} / {p.fine}")
    _out.print(f"does: {data['summary'] or 'nothing visible'}")
    for k, v in data["settings"].items():
        _out.print(f"  {k} = {v}")
    if data["unsupported"]:
        _out.print(f"[yellow]unsupported (not rendered):[/yellow] {', '.join(data['unsupported'])}")


@presets_app.command("import")
def import_cmd(
    directory: Annotated[
        Path, typer.Argument(help="folder of .xmp / .lrtemplate presets (searched recursively)")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print {imported, failed[{file, reason}]}")] = False,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="write the imported presets as a library file (.jsonl.gz)"),
    ] = None,
) -> None:
    """Import a pack: every file either imports (categorised) or is listed with its reason."""
    from aether_data.presets.importer import import_pack
    from aether_data.presets.store import write_library

    if not directory.is_dir():
        _fail(f"not a directory: {directory}")
    report = import_pack(directory)
    if out is not None and report.presets:
        write_library(report.presets, out)
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        _out.print(f"imported {report.imported}, failed {len(report.failed)}")
        for note in report.notes:
            extra = f"  unsupported: {', '.join(note['unsupported'])}" if note.get("unsupported") else ""
            _out.print(f"  ok  {note['file']} → {note['fine']}{extra}")
        for f in report.failed:
            _out.print(f"  [red]bad[/red] {f['file']}: {f['reason']}")
    if report.failed and not report.presets:
        raise typer.Exit(1)


@presets_app.command("apply")
def apply_cmd(
    preset: Annotated[str, typer.Argument(help="library id or an .xmp / .lrtemplate file")],
    image: Annotated[Path, typer.Argument(help="photo to develop")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output image (.jpg / .png)")],
    method: Annotated[str, typer.Option(help="lut (baked 3D LUT) or direct")] = "lut",
    lut_size: Annotated[int, typer.Option(help="LUT grid size")] = 33,
    seed: Annotated[int, typer.Option(help="grain seed")] = 0,
    max_side: Annotated[int | None, typer.Option(help="downscale so the long side is at most this")] = None,
    library: LibraryOpt = None,
) -> None:
    """Render a preset on a photo."""

    from aether_data.develop.preset_ops import render_preset
    from aether_data.io.errors import SourceError
    from aether_data.io.imaging import load_image

    if method not in ("lut", "direct"):
        _fail("--method must be lut or direct", 2)
    if not 2 <= lut_size <= 129:
        _fail(f"--lut-size must be between 2 and 129, got {lut_size}", 2)
    if max_side is not None and not 16 <= max_side <= 65536:
        _fail(f"--max-side must be between 16 and 65536 pixels, got {max_side}", 2)
    if out.parent.exists() and not out.parent.is_dir():
        _fail(f"{out}: {out.parent} is not a folder", 2)
    label, settings, _ = _resolve(preset, library)
    try:
        img = load_image(image, max_side)
    except SourceError as exc:
        _fail(str(exc))
    result = render_preset(img, settings, seed, method=method, lut_size=lut_size)
    try:
        atomic_write_bytes(out, encode_for_suffix(result, out.suffix))
    except (ValueError, OSError) as exc:
        _fail(f"{out}: {exc}")
    _out.print(f"{label} → {out}")
    if settings.unsupported_keys:
        _err.print(f"[yellow]not rendered (unsupported):[/yellow] {', '.join(settings.unsupported_keys)}")


@presets_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")],
    fmt: Annotated[str, typer.Option("--format", help="cube (Adobe 3D LUT)")] = "cube",
    size: Annotated[int, typer.Option("--size", help="LUT grid size")] = 33,
    ids: Annotated[
        list[str] | None,
        typer.Option(
            "--id", help="preset id or .xmp/.lrtemplate path (repeatable; default: every preset, or --fine)"
        ),
    ] = None,
    fine: Annotated[str | None, typer.Option("--fine", help="every preset of one fine category")] = None,
    library: LibraryOpt = None,
) -> None:
    """Bake presets' per-pixel part into .cube files (spatial effects are not representable)."""
    from aether_data.develop import write_cube
    from aether_data.develop.local_ops import has_local
    from aether_data.develop.preset_ops import bake_preset_lut
    from aether_data.presets.taxonomy import slugify

    if fmt != "cube":
        _fail(f"unknown format {fmt!r}; only 'cube' is supported")
    if not 2 <= size <= 129:
        _fail("--size must be between 2 and 129")
    targets: list[tuple[str, str, Any]] = []
    if ids:
        for pid in ids:
            label, settings, info = _resolve(pid, library)
            targets.append((info.get("id") or slugify(label), label, settings))
    else:
        lib = _load(library)
        chosen = lib.by_category(fine) if fine else list(lib)
        if fine and not chosen:
            _fail(f"no presets in fine category {fine!r}")
        targets = [(p.id, p.name, p.settings) for p in chosen]
    out.mkdir(parents=True, exist_ok=True)
    skipped_local = 0
    for ident, label, settings in targets:
        write_cube(out / f"{ident}.cube", bake_preset_lut(settings, size), title=label)
        skipped_local += int(has_local(settings))
    _out.print(f"wrote {len(targets)} .cube files ({size}³) to {out}")
    if skipped_local:
        _err.print(
            f"[yellow]{skipped_local} preset(s) also use spatial effects (clarity, dehaze, vignette, grain, sharpening) that a LUT cannot hold[/yellow]"
        )


@presets_app.command("generate")
def generate_cmd(
    out: Annotated[Path | None, typer.Option("-o", "--out", help="library file to write")] = None,
) -> None:
    """Regenerate the stored library deterministically from the taxonomy's category prototypes."""
    from aether_data.presets.generate import generate_library
    from aether_data.presets.store import DEFAULT_LIBRARY_PATH, write_library

    target = out or DEFAULT_LIBRARY_PATH
    presets = generate_library()
    write_library(presets, target)
    _out.print(f"wrote {len(presets)} presets to {target}")


__all__ = ["presets_app"]
