"""`aether benchmark build|check-disjoint` and the `--bench` mode of `aether eval`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from aether_data.io.atomic import atomic_write_text

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

benchmark_app = typer.Typer(
    help="Benchmarks like the paper's: FiveK-Bench and held-out Aether-Bench.", no_args_is_help=True
)


def _caps(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    caps = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        caps[k.strip()] = int(v)
    return caps


@benchmark_app.command("build")
def build_command(
    kind: Annotated[str, typer.Option("--kind", help="fivek | aether")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="benchmark folder to write")],
    fivek: Annotated[
        Path | None, typer.Option("--fivek", help="fivek: DIR with input/ and expertA/ … expertE/")
    ] = None,
    split: Annotated[
        Path | None, typer.Option("--split", help="fivek: file of test stems (the paper's ~500)")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="fivek: first N stems")] = None,
    max_side: Annotated[
        int | None, typer.Option("--max-side", help="fivek: re-encode as PNG with long side ≤ this")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="aether: a built dataset")] = None,
    holdout_sources: Annotated[
        float, typer.Option("--holdout-sources", help="aether: fraction (<1) or count of source photos")
    ] = 0.1,
    holdout_presets: Annotated[
        float, typer.Option("--holdout-presets", help="aether: fraction (<1) or count of presets")
    ] = 0.1,
    max_per_task: Annotated[
        str | None, typer.Option("--max-per-task", help="aether: e.g. auto=250,style=100,param=350")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the benchmark's sample selection")] = 0,
) -> None:
    """Write a benchmark folder (bench.json + images; Aether-Bench also split.json)."""
    from aether_data.evaluation.bench import BenchError, build_aether_bench, build_fivek_bench

    try:
        if kind == "fivek":
            if fivek is None:
                raise BenchError("--kind fivek needs --fivek DIR")
            b = build_fivek_bench(fivek, out_dir, split=split, limit=limit, max_side=max_side, log=err.print)
        elif kind == "aether":
            if data is None:
                raise BenchError("--kind aether needs --data DATASET")
            b = build_aether_bench(
                data,
                out_dir,
                holdout_sources=holdout_sources,
                holdout_presets=holdout_presets,
                max_per_task=_caps(max_per_task),
                seed=seed,
                log=err.print,
            )
        else:
            raise BenchError(f"unknown --kind {kind!r}; expected fivek or aether")
    except (BenchError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    n = sum(len(t["items"]) for t in b["tasks"].values())
    err.print(f"wrote {out_dir} ({b['kind']}, {n} items)")


@benchmark_app.command("check-disjoint")
def check_disjoint_command(
    bench: Annotated[Path, typer.Option("--bench", help="an Aether-Bench folder (or its split.json)")],
    data: Annotated[Path, typer.Option("--data", help="a training dataset")],
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Prove a training dataset uses no held-out source or preset; exit 1 naming every overlap."""
    from aether_data.evaluation.bench import check_disjoint

    rep = check_disjoint(bench, data)
    if as_json:
        out.print_json(json.dumps(rep))
    else:
        for p in rep["problems"]:
            err.print(f"[red]✗[/red] {p}")
        status = "[green]disjoint[/green]" if rep["ok"] else f"[red]{len(rep['overlap'])} overlap(s)[/red]"
        err.print(f"check {data} against {bench}: {status} · {rep['samples']} samples")
    raise typer.Exit(0 if rep["ok"] else 1)


def eval_bench(
    bench: Path,
    model: Path | None,
    predictions: Path | None,
    json_path: str | None,
    metrics: str | None,
    weights_dir: str | None,
    scorer_options: dict[str, dict[str, str]],
    device: str,
    method: str | None,
) -> int:
    """The body of `aether eval --bench`: prints the paper-shaped markdown, writes the JSON."""
    from aether_data.evaluation.score import evaluate_bench, markdown_tables, predict_with_model
    from aether_data.scoring.weights import MissingWeights

    if (model is None) == (predictions is None):
        err.print("[red]error:[/red] --bench needs exactly one of --model DIR or --predictions DIR")
        return 2
    opts = {k: {kk: vv for kk, vv in v.items() if vv} for k, v in scorer_options.items()}
    try:
        with tempfile.TemporaryDirectory(prefix="aether-eval-") as tmp:
            pred = predictions
            if model is not None:
                pred = predict_with_model(bench, model, Path(tmp), device=device, log=err.print)
            result = evaluate_bench(
                bench,
                pred,  # type: ignore[arg-type]
                metrics=[m.strip() for m in metrics.split(",")] if metrics else None,
                weights_dir=weights_dir,
                scorer_options=opts,
                device=device,
                method=method or (model.name if model is not None else None),
                log=err.print,
            )
    except (ValueError, MissingWeights, FileNotFoundError) as exc:  # BenchError is a ValueError
        err.print(f"[red]error:[/red] {exc}")
        return 1
    text = json.dumps(result, indent=1)
    if json_path == "-":
        print(text)
    else:
        print(markdown_tables(result), end="")
        if json_path:
            atomic_write_text(Path(json_path), text + "\n")
            err.print(f"wrote {json_path}")
    return 0
