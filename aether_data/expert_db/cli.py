"""Typer sub-apps: ``expert_db_app`` (`aether expert-db build|info`) and ``stats_app``
(`aether stats operators|strength`). Mounted by `aether_data.cli`; also runnable as
``python -m aether_data.expert_db.cli expert-db build …``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aether_data.io.atomic import atomic_write_text

expert_db_app = typer.Typer(
    help="Expert pair DB of the auto workflow: build it from FiveK / PPR10K / paired folders, inspect it.",
    no_args_is_help=True,
    add_completion=False,
)
stats_app = typer.Typer(
    help="Statistics recomputed from real data (operator statistics from XMP pairs).",
    no_args_is_help=True,
    add_completion=False,
)
_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def _fail(msg: str, code: int = 1) -> None:
    _err.print(f"[red]error:[/red] {msg}")
    raise typer.Exit(code)


@expert_db_app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", "-o", help="DB folder to write")],
    fivek: Annotated[list[Path] | None, typer.Option("--fivek", help="MIT-Adobe FiveK folder")] = None,
    ppr10k: Annotated[list[Path] | None, typer.Option("--ppr10k", help="PPR10K folder")] = None,
    pairs: Annotated[
        list[Path] | None, typer.Option("--pairs", help="folder with input/ and target/")
    ] = None,
    experts: Annotated[
        str | None, typer.Option("--experts", help="FiveK experts to use, e.g. 'c' or 'abc'")
    ] = None,
    scorer: Annotated[str, typer.Option("--scorer", help="heuristic | laion")] = "heuristic",
    scorer_model: Annotated[
        str | None, typer.Option("--scorer-model", help="laion: open_clip 'ViT-L-14:/path/weights' or folder")
    ] = None,
    scorer_head: Annotated[
        str | None, typer.Option("--scorer-head", help="laion: aesthetic MLP head file")
    ] = None,
    delta: Annotated[
        float, typer.Option("--delta", help="keep pairs with score(target) - score(input) >= delta")
    ] = 0.1,
    er_checkpoint: Annotated[
        str | None,
        typer.Option("--er-checkpoint", help="encoder/renderer weights (default: shipped CPU one)"),
    ] = None,
    short_edge: Annotated[int, typer.Option("--short-edge", help="decode size for scoring/features")] = 256,
    thumbs: Annotated[
        int, typer.Option("--thumbs", help="store JPEG thumbnails of this size (0 = none)")
    ] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="pairs per encoder batch")] = 16,
    workers: Annotated[int, typer.Option("--workers", help="decoding threads")] = 2,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N pairs (trial runs)")] = None,
) -> None:
    """Score, filter (gain >= delta), featurise and encode expert pairs into a DB folder."""
    from aether_data.degrade import ERDegrader
    from aether_data.expert_db.db import build_expert_db
    from aether_data.scoring import make_scorer

    jobs = [("fivek", p) for p in fivek or []] + [("ppr10k", p) for p in ppr10k or []]
    jobs += [("pairs", p) for p in pairs or []]
    if not jobs:
        _fail("give at least one of --fivek DIR, --ppr10k DIR, --pairs DIR", 2)
    listing, unmatched, roots, sources = _list_pairs(jobs, experts)
    if limit is not None:
        listing = listing[:limit]
    if not listing:
        _fail("no pairs found (check the folder layout: `aether expert-db build --help`)")
    try:
        sc = make_scorer(scorer, scorer_model, scorer_head, batch_size=batch_size)
        degrader = ERDegrader(er_checkpoint)
    except (OSError, ValueError) as exc:
        _fail(str(exc), 2)
    t0 = time.perf_counter()
    with Progress(TextColumn("pairs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_err, transient=True) as bar:  # fmt: skip
        task = bar.add_task("pairs", total=len(listing))
        report = build_expert_db(
            listing, out, scorer=sc, degrader=degrader, delta=delta, short_edge=short_edge,
            batch_size=batch_size, thumb_size=thumbs, workers=workers, roots=roots, unmatched=unmatched,
            sources=sources, progress=lambda done, _total: bar.update(task, completed=done),
        )  # fmt: skip
    _print_counts(report.as_dict(), out, time.perf_counter() - t0)
    if report.kept == 0:
        _fail(f"every pair was dropped; lower --delta (now {delta}) or check the data")


def _list_pairs(
    jobs: list[tuple[str, Path]], experts: str | None
) -> tuple[list[Any], dict[str, int], list[Path], list[dict[str, str]]]:
    """Every (kind, folder) read by its reader: pairs, unmatched counts, roots, source entries."""
    from aether_data.expert_db.readers import PairRef, read_fivek, read_paired, read_ppr10k

    listing: list[PairRef] = []
    unmatched: dict[str, int] = {}
    roots: list[Path] = []
    sources: list[dict[str, str]] = []
    for kind, root in jobs:
        if not root.is_dir():
            _fail(f"{root}: not a folder", 2)
        try:
            if kind == "fivek":
                found, um = read_fivek(root, experts)
            elif kind == "ppr10k":
                found, um = read_ppr10k(root)
            else:
                found, um = read_paired(root)
        except ValueError as exc:
            _fail(str(exc), 2)
        listing += found
        roots.append(root)
        sources.append({"kind": kind, "name": root.resolve().name, "pairs": str(len(found))})
        for k, v in um.items():
            unmatched[f"{kind}:{k}"] = unmatched.get(f"{kind}:{k}", 0) + v
    return listing, unmatched, roots, sources


def _print_counts(counts: dict, out: Path, seconds: float | None = None) -> None:
    table = Table(title=f"expert DB {out}")
    table.add_column("what")
    table.add_column("pairs", justify="right")
    table.add_row("listed", str(counts["listed"]))
    table.add_row("kept", str(counts["kept"]))
    for reason, n in counts["dropped_by_reason"].items():
        table.add_row(f"dropped: {reason}", str(n))
    for what, n in counts.get("unmatched_files", {}).items():
        table.add_row(f"unmatched files: {what}", str(n))
    _out.print(table)
    if seconds is not None:
        _out.print(f"built in {seconds:.1f} s")


@expert_db_app.command("info")
def info(
    db: Annotated[Path | None, typer.Argument(help="DB folder (default: the bundled demo DB)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Counts, scorer, δ and encoder/renderer fingerprint of a DB."""
    from aether_data.expert_db.db import ExpertDB, ExpertDBError

    try:
        edb = ExpertDB(db)
    except ExpertDBError as exc:
        _fail(str(exc))
    if as_json:
        _out.print_json(json.dumps(edb.meta))
        return
    _print_counts(edb.meta["counts"], edb.path)
    er = edb.meta.get("er", {})
    _out.print(
        f"scorer {edb.meta.get('scorer')}, delta {edb.meta.get('delta')}, features {edb.meta.get('feature_version')}, "
        f"ER {er.get('config')} {str(er.get('fingerprint'))[:12]}, thumbnails {edb.has_thumbs}"
    )


@stats_app.command("operators")
def operators(
    xmp_pairs: Annotated[Path, typer.Option("--xmp-pairs", help="folder with xmp_source/ and xmp_target_*/")],
    out: Annotated[
        Path | None, typer.Option("--out", help="write operator_stats.yaml here (else print it)")
    ] = None,
) -> None:
    """Recompute operator statistics (mean, std, p_active, degrade_sign) from real XMP pairs."""
    from aether_data.stats_operators import dump_stats, operator_stats

    if not xmp_pairs.is_dir():
        _fail(f"{xmp_pairs}: not a folder", 2)
    try:
        doc, counts = operator_stats(xmp_pairs)
    except ValueError as exc:
        _fail(str(exc))
    text = dump_stats(doc)
    if out is None:
        _out.print(text, markup=False, highlight=False)
    else:
        atomic_write_text(out, text)
        _err.print(f"{counts['pairs']} pairs ({counts['skipped']} unreadable skipped) → {out}")


def _read_any_pairs(root: Path) -> list[Any]:
    """Pairs of a FiveK, PPR10K or paired (input/ + target/) folder, whichever layout it has."""
    from aether_data.expert_db.readers import read_fivek, read_paired, read_ppr10k

    errors = []
    for reader in (read_paired, read_ppr10k, read_fivek):
        try:
            found, _ = reader(root)
        except (ValueError, OSError) as exc:
            errors.append(str(exc))
            continue
        if found:
            return found
    _fail(
        f"{root}: no before/after pairs found (FiveK, PPR10K or input/ + target/): {errors[-1] if errors else ''}",
        2,
    )
    return []


@stats_app.command("strength")
def strength(
    pairs: Annotated[Path, typer.Option("--pairs", help="FiveK / PPR10K / paired folder (input/ + target/)")],
    xmp_pairs: Annotated[
        Path | None,
        typer.Option("--xmp-pairs", help="XMP sidecars or Lightroom exports: per-slider moves too"),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="measure at most this many pairs")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write the strength stats YAML here (else print it)")
    ] = None,
) -> None:
    """Distribution of expert edit strengths, to calibrate builds (`--strength-stats FILE`).

    ΔE2000, Δ luma, Δ contrast, Δ saturation per pair; per slider when XMP sidecars are given."""
    import yaml

    from aether_data.expert_db.readers import read_pair_image
    from aether_data.io.errors import SourceError
    from aether_data.strength import edit_strengths, strength_doc

    if not pairs.is_dir():
        _fail(f"{pairs}: not a folder", 2)
    refs = _read_any_pairs(pairs)[: limit or None]
    measured, unreadable = [], 0
    for ref in refs:
        try:
            measured.append(edit_strengths(read_pair_image(ref.input), read_pair_image(ref.target)))
        except SourceError:
            unreadable += 1
    sliders = None
    n_xmp = None
    if xmp_pairs is not None:
        from aether_data.stats_operators import slider_moves

        try:
            sliders, n_xmp = slider_moves(xmp_pairs)
        except ValueError as exc:
            _fail(str(exc))
    try:
        doc = strength_doc(measured, f"{len(measured)} pairs ({pairs.resolve().name})", sliders, n_xmp)
    except ValueError as exc:
        _fail(f"{pairs}: {exc}")
    text = yaml.safe_dump(doc, sort_keys=False, width=200)
    if out is None:
        _out.print(text, markup=False, highlight=False)
    else:
        atomic_write_text(out, text)
        _err.print(f"{len(measured)} pairs ({unreadable} unreadable skipped) → {out}")


if __name__ == "__main__":  # pragma: no cover
    _main = typer.Typer(no_args_is_help=True, add_completion=False)
    _main.add_typer(expert_db_app, name="expert-db")
    _main.add_typer(stats_app, name="stats")
    _main()
