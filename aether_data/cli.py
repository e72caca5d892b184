"""The `aether` command line: build, audit and inspect datasets (and, as they land, the model)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from aether_data import __version__
from aether_data.build.cli import build_command
from aether_data.cli_examples import add_examples
from aether_data.io.atomic import atomic_write_text

app = typer.Typer(
    help="aether: build photo-retouching training datasets (param / style / auto) as WebDataset shards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
app.command(name="build")(build_command)  # first in --help: the command most users come for


def _mount_subcommands() -> None:
    """Sub-apps live beside the code they drive."""
    from aether_data.evaluation.cli import benchmark_app
    from aether_data.expert_db.cli import expert_db_app, stats_app
    from aether_data.presets.cli import presets_app

    app.add_typer(presets_app, name="presets", help="The preset library: list, show, import, apply, export.")
    app.add_typer(expert_db_app, name="expert-db", help="Expert pair DB for the auto workflow.")
    app.add_typer(stats_app, name="stats", help="Statistics files the samplers use.")
    from model_core.cli import model_app, retouch_command, train_command

    app.add_typer(model_app, name="model")
    app.command(name="train")(train_command)
    app.command(name="retouch")(retouch_command)
    from aether_data.render import render_command

    app.command(name="render")(render_command)
    from aether_data.export_llava import export_command

    app.command(name="export")(export_command)
    app.add_typer(benchmark_app, name="benchmark")


def _version(value: bool) -> None:
    if value:
        out.print(f"aether {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """aether command line."""


def _why(exc: BaseException) -> str:
    """An exception as one readable line (no traceback: the user's input, not a bug)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def audit(
    directory: Annotated[str, typer.Argument(help="dataset directory or URI (holds manifest.json)")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="also decode every image")] = False,
    bench: Annotated[
        list[str] | None,
        typer.Option(
            "--bench",
            help="a benchmark folder or its split.json (repeatable): prove the dataset uses none of "
            "its held-out source photos or presets",
        ),
    ] = None,
) -> None:
    """Verify a dataset: checksums, indexes, keys, schemas. Exit 1 and name the shard on any problem."""
    from aether_data.dataset.audit import Problem
    from aether_data.dataset.audit import audit as run_audit

    try:
        report = run_audit(directory, deep=deep)
    except (OSError, ValueError) as exc:  # unreachable store, missing bucket, unreadable folder
        _fail(f"cannot audit {directory}: {_why(exc)}", 2)
    disjoint = [_held_out_overlap(b, directory) for b in bench or []]
    for rep in disjoint:
        report.problems.extend(Problem(o["shard"], line) for o, line in zip(rep["overlap"], rep["problems"]))
    report.ok = report.ok and all(r["ok"] for r in disjoint)
    if as_json:
        doc = report.to_dict()
        if disjoint:
            doc["disjoint"] = [{k: v for k, v in r.items() if k != "problems"} for r in disjoint]
        out.print_json(json.dumps(doc))
    else:
        for rep in disjoint:
            state = "disjoint" if rep["ok"] else f"{len(rep['overlap'])} sample(s) overlap"
            err.print(f"held-out split {rep['bench']}: {state}")
        for p in report.problems:
            err.print(f"[red]✗[/red] {p}")
        for w in getattr(report, "warnings", []) or []:
            err.print(f"[yellow]![/yellow] {w}")
        status = "[green]ok[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
        err.print(f"audit {directory}: {status} · {report.shards} shards · {report.samples} samples")
    raise typer.Exit(0 if report.ok else 1)


def _held_out_overlap(bench: str, directory: str) -> dict[str, Any]:
    """`check_disjoint` of one benchmark split, with a one-line error for an unreadable split."""
    from aether_data.evaluation.bench import check_disjoint

    try:
        rep = check_disjoint(bench, directory)
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"cannot read the benchmark split {bench}: {_why(exc)}", 2)
    return {"bench": bench, **rep}


@app.command()
def inspect(
    directory: Annotated[str, typer.Argument(help="dataset directory or URI (s3://bucket/run)")],
    n: Annotated[int, typer.Option("--n", help="samples to show")] = 8,
    contact_sheet: Annotated[
        Path | None, typer.Option("--contact-sheet", help="write input|target pairs as a PNG grid")
    ] = None,
) -> None:
    """Show the first samples of a dataset, optionally as a contact sheet."""
    from aether_data.inspect import contact_sheet as make_sheet
    from aether_data.inspect import first_samples

    try:
        samples = first_samples(directory, n)
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {directory}: {_why(exc)}", 2)
    if not samples:
        err.print(f"[red]no samples found in {directory}[/red]")
        raise typer.Exit(1)
    table = Table(title=f"{directory} — first {len(samples)} samples")
    for col in ("key", "protocol / preset", "masks", "instruction / key elements"):
        table.add_column(col, overflow="fold")
    for key, rec, _, _ in samples:
        # auto records share one fixed request: their key-elements line says more
        text = (rec.get("reasoning") or {}).get("elements") if rec.get("workflow") == "auto" else None
        text = text or (rec["instructions"][-1] if rec.get("instructions") else "")
        what = rec.get("protocol") or (rec.get("preset") or {}).get("name")
        if rec.get("regions"):  # region samples: the edited regions
            what = ", ".join(r["name"] for r in rec["regions"]["items"] if r["label"])
        table.add_row(key, str(what), str(rec.get("masks")), text[:160])
    out.print(table)
    if contact_sheet is not None:
        make_sheet(samples, contact_sheet)
        err.print(f"contact sheet written to {contact_sheet}")


@app.command()
def report(
    directory: Annotated[
        str, typer.Argument(help="dataset directory or URI (s3://bucket/run) holding manifest.json")
    ],
    examples: Annotated[int, typer.Option("--examples", help="contact-sheet pairs per workflow")] = 3,
) -> None:
    """Write report/report.html (self-contained) and the dataset card README.md."""
    from aether_data.io import storage
    from aether_data.report import write_report

    try:
        if not (storage.as_path(directory) / "manifest.json").is_file():
            _fail(f"{directory} has no manifest.json (build it first)", 1)
        paths = write_report(directory, examples_per_workflow=examples)
    except json.JSONDecodeError as exc:
        _fail(f"{directory}/manifest.json is damaged ({exc}); re-run the build to rewrite it", 1)
    except (KeyError, TypeError) as exc:
        _fail(f"{directory}/manifest.json is damaged (missing or wrong field {exc}); re-run the build", 1)
    except (OSError, ValueError) as exc:
        _fail(f"cannot report on {directory}: {_why(exc)}", 2)
    err.print(f"report: {paths['html']}\ndataset card: {paths['card']}")


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help="pipeline-spec (generated from the pydantic models)")],
) -> None:
    """Print a generated JSON Schema (the others live in manifests/)."""
    from aether_data.config import spec_json_schema

    if name != "pipeline-spec":
        err.print(f"[red]error:[/red] unknown schema {name!r}; available: pipeline-spec")
        raise typer.Exit(2)
    sys.stdout.write(json.dumps(spec_json_schema(), indent=2) + "\n")


@app.command(name="eval")
def evaluate(
    data: Annotated[list[Path] | None, typer.Option("--data", help="dataset directory (repeatable)")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="a trained VeraRetouch directory")] = None,
    max_samples: Annotated[
        int | None, typer.Option("--max-samples", help="--data: score at most N samples \\[default: all]")
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="write the result JSON to FILE ('-' = stdout only)")
    ] = None,
    bench: Annotated[
        Path | None, typer.Option("--bench", help="a benchmark folder (aether benchmark build)")
    ] = None,
    predictions: Annotated[
        Path | None, typer.Option("--predictions", help="--bench: folder of predicted images (ID.png)")
    ] = None,
    metrics: Annotated[str | None, typer.Option("--metrics", help="--bench: comma-separated names")] = None,
    weights_dir: Annotated[str | None, typer.Option("--weights-dir", help="local metric weights")] = None,
    laion_model: Annotated[str | None, typer.Option("--laion-model", help="open_clip ARCH:/path")] = None,
    laion_head: Annotated[str | None, typer.Option("--laion-head", help="LAION MLP head file")] = None,
    qalign_model: Annotated[str | None, typer.Option("--qalign-model", help="local Q-Align folder")] = None,
    liqe_model: Annotated[str | None, typer.Option("--liqe-model", help="local LIQE checkpoint")] = None,
    device: Annotated[
        str, typer.Option("--device", help="torch device for the model and metrics (cpu, cuda, cuda:1)")
    ] = "cpu",
    method: Annotated[str | None, typer.Option("--name", help="--bench: the table's method name")] = None,
) -> None:
    """Score a model or predictions with the paper's protocols (--bench) or on held-out shards.

    --bench: FiveK-Bench or Aether-Bench tables.

    --data: PSNR, SSIM, LPIPS if installed, and histogram intersections per task."""
    if bench is not None:
        from aether_data.evaluation.cli import eval_bench

        scorer_options = {
            "laion": {"model": laion_model, "head": laion_head},
            "qalign": {"model": qalign_model},
            "liqe": {"model": liqe_model},
        }
        raise typer.Exit(
            eval_bench(
                bench, model, predictions, json_path, metrics, weights_dir, scorer_options, device, method
            )
        )
    if not data or model is None:
        err.print("[red]error:[/red] eval needs --bench B (--model | --predictions) or --data D --model M")
        raise typer.Exit(2)
    from model_core.inference import evaluate as run_eval

    result = run_eval(model, [str(d) for d in data], max_samples=max_samples)
    if json_path:
        if json_path != "-":
            atomic_write_text(Path(json_path), json.dumps(result, indent=1) + "\n")
        out.print_json(json.dumps(result))
        return
    table = Table(title=f"eval {model}")
    table.add_column("task")
    metrics = sorted({k for v in result.get("tasks", {}).values() for k in v})
    for m_ in metrics:
        table.add_column(m_)
    for task, vals in sorted(result.get("tasks", {}).items()):
        table.add_row(
            task,
            *[f"{vals[m_]:.4f}" if isinstance(vals.get(m_), float) else str(vals.get(m_)) for m_ in metrics],
        )
    out.print(table)


@app.command()
def bench(
    json_path: Annotated[str | None, typer.Option("--json", help="write the results JSON here")] = None,
    markdown: Annotated[
        str | None,
        typer.Option(
            "--markdown", help="write the README table here \\[default: next to --json, as .md; none without]"
        ),
    ] = None,
    samples: Annotated[int, typer.Option("--samples", help="pairs per workflow measurement")] = 288,
    image_size: Annotated[
        int, typer.Option("--image-size", help="short edge of the benchmarked images")
    ] = 512,
    workflows: Annotated[str, typer.Option("--workflows", help="comma-separated")] = "param,style,auto",
    scaling_samples: Annotated[
        int, typer.Option("--scaling-samples", help="pairs per 1 → 2 worker scaling run")
    ] = 256,
    memory_samples: Annotated[str, typer.Option("--memory-samples", help="small,large")] = "1000,10000",
    skip_scaling: Annotated[
        bool, typer.Option("--skip-scaling", help="skip the 1 → 2 worker scaling measurement")
    ] = False,
    skip_memory: Annotated[bool, typer.Option("--skip-memory", help="skip the peak-RSS measurement")] = False,
    workdir: Annotated[
        str | None, typer.Option("--workdir", help="scratch directory (default: temp)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="root seed of the measured builds")] = 0,
    no_gates: Annotated[
        bool,
        typer.Option("--no-gates", help="turn the quality gates off (the pipeline's cost without them)"),
    ] = False,
) -> None:
    """Measure throughput vs a transcode baseline, 1→2 worker scaling and memory, in one run."""
    from aether_data.bench import bench_command

    raise typer.Exit(
        bench_command(
            json_path=json_path,
            markdown_path=markdown,
            samples=samples,
            image_size=image_size,
            workflows=workflows,
            scaling_samples=scaling_samples,
            memory_samples=memory_samples,
            skip_scaling=skip_scaling,
            skip_memory=skip_memory,
            workdir=workdir,
            seed=seed,
            log=lambda msg: err.print(str(msg)),
            gates=not no_gates,
        )
    )


_mount_subcommands()
add_examples(app)


def run() -> None:  # pragma: no cover - console entry point helper
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
