"""The `aether` command line: build, audit and inspect datasets (and, as they land, the model)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aether_data import __version__

app = typer.Typer(
    help="aether: build photo-retouching training datasets (param / style / auto) as WebDataset shards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _mount_subcommands() -> None:
    """Sub-apps live beside the code they drive."""
    from aether_data.presets.cli import presets_app

    app.add_typer(presets_app, name="presets", help="The preset library: list, show, import, apply, export.")


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


class BuildProgress:
    """Rich progress: shards done, samples written, samples/s and skipped inputs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.samples = 0
        self.skipped = 0
        self.failed = 0
        self.t0 = time.perf_counter()
        self.progress = Progress(
            TextColumn("[bold]shards"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def _stats(self) -> str:
        rate = self.samples / max(time.perf_counter() - self.t0, 1e-9)
        return (
            f"{self.samples} samples · {rate:.1f} samples/s · {self.skipped} skipped · {self.failed} failed"
        )

    def start(self, total_shards: int, reused: int, todo: int) -> None:
        if reused:
            self.console.print(f"resuming: {reused} of {total_shards} shards already done and verified")
        self.t0 = time.perf_counter()
        self.progress.start()
        self.task = self.progress.add_task("build", total=total_shards, completed=reused, stats=self._stats())

    def update(self, res: dict[str, Any]) -> None:
        self.samples += int(res.get("samples") or 0)
        self.skipped += int(res.get("skipped") or 0)
        self.failed += 0 if res.get("ok") else 1
        if not res.get("ok"):
            self.console.print(f"[red]shard {res['name']} failed:[/red] {res['error']}")
        self.progress.update(self.task, advance=1, stats=self._stats())

    def stop(self) -> None:
        self.progress.stop()


@app.command()
def build(
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="param | style | auto | all")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="pipeline spec YAML (default pipelines/WORKFLOW.yaml)"),
    ] = None,
    sources: Annotated[
        str | None, typer.Option("--sources", help="folder, image or list file (default: bundled photos)")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("aether-out"),
    num_samples: Annotated[int | None, typer.Option("--num-samples", "-n")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    samples_per_shard: Annotated[int | None, typer.Option("--samples-per-shard")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="short edge in pixels")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="concurrent shard tasks")] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="join a Ray cluster (else RAY_ADDRESS or local)")
    ] = None,
    fail_on_error_rate: Annotated[
        float | None,
        typer.Option("--fail-on-error-rate", help="exit 1 if skipped / planned exceeds this fraction"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Build a dataset: plan → shards (Ray Data) → indexes → manifest. Re-run to resume."""
    from aether_data.config import SpecError, load_spec
    from aether_data.runtime import BuildError, run_build

    if workflow is None and config is None:
        workflow = "auto"
    overrides: dict[str, Any] = {}
    if sources is not None:
        overrides.setdefault("sources", {})["path"] = sources
    if num_samples is not None:
        overrides["num_samples"] = num_samples
    if seed is not None:
        overrides["seed"] = seed
    if samples_per_shard is not None:
        overrides["samples_per_shard"] = samples_per_shard
    if image_size is not None:
        overrides.setdefault("image", {})["size"] = image_size
    if workers is not None:
        overrides.setdefault("runtime", {})["workers"] = workers
    if ray_address is not None:
        overrides.setdefault("runtime", {})["ray_address"] = ray_address
    try:
        spec = load_spec(config, workflow, overrides)
    except SpecError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    err.print(
        f"aether {__version__}: building [bold]{spec.workflow}[/bold] · {spec.num_samples} samples · "
        f"{spec.samples_per_shard}/shard · seed {spec.seed} · {spec.runtime.workers} workers → {out_dir}"
    )
    progress = None if quiet else BuildProgress(err)
    try:
        summary = run_build(spec, out_dir, progress=progress)
    except BuildError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted:[/yellow] finished shards are kept; re-run the same command to resume")
        raise typer.Exit(130) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write output: {exc}")
        raise typer.Exit(1) from None
    if summary.failed:
        for name, why in summary.failed:
            err.print(f"[red]shard {name} failed:[/red] {why}")
        err.print(
            f"[red]{len(summary.failed)} shard(s) failed[/red]; finished shards are kept, "
            "re-run the same command to resume"
        )
        raise typer.Exit(1)
    m = summary.manifest or {}
    rate = summary.samples_written / max(summary.seconds, 1e-9)
    err.print(
        f"[green]done[/green] in {summary.seconds:.1f}s: {m.get('samples', 0)} samples in "
        f"{summary.shards_total} shards ({summary.shards_built} built, {summary.shards_reused} reused; "
        f"{rate:.1f} samples/s) · per workflow {m.get('per_workflow', {})}"
    )
    skipped = m.get("skipped", {"count": 0, "reasons": {}})
    if skipped["count"]:
        err.print(
            f"[yellow]skipped {skipped['count']} input(s):[/yellow] {skipped['reasons']} (see skipped.parquet)"
        )
    else:
        err.print("skipped 0 inputs")
    if fail_on_error_rate is not None and summary.planned_samples:
        rate_bad = skipped["count"] / summary.planned_samples
        if rate_bad > fail_on_error_rate:
            err.print(
                f"[red]skip rate {rate_bad:.3f} exceeds --fail-on-error-rate {fail_on_error_rate}[/red]"
            )
            raise typer.Exit(1)


@app.command()
def audit(
    directory: Annotated[Path, typer.Argument(help="dataset directory (holds manifest.json)")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="also decode every image")] = False,
) -> None:
    """Verify a dataset: checksums, indexes, keys, schemas. Exit 1 and name the shard on any problem."""
    from aether_data.manifest import audit as run_audit

    report = run_audit(directory, deep=deep)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        for p in report.problems:
            err.print(f"[red]✗[/red] {p}")
        for w in getattr(report, "warnings", []) or []:
            err.print(f"[yellow]![/yellow] {w}")
        status = "[green]ok[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
        err.print(f"audit {directory}: {status} · {report.shards} shards · {report.samples} samples")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def inspect(
    directory: Annotated[Path, typer.Argument(help="dataset directory")],
    n: Annotated[int, typer.Option("--n", help="samples to show")] = 8,
    contact_sheet: Annotated[
        Path | None, typer.Option("--contact-sheet", help="write input|target pairs as a PNG grid")
    ] = None,
) -> None:
    """Show the first samples of a dataset, optionally as a contact sheet."""
    from aether_data.inspect import contact_sheet as make_sheet
    from aether_data.inspect import first_samples

    samples = first_samples(directory, n)
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
        table.add_row(key, str(what), str(rec.get("masks")), text[:160])
    out.print(table)
    if contact_sheet is not None:
        make_sheet(samples, contact_sheet)
        err.print(f"contact sheet written to {contact_sheet}")


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="dataset directory (holds manifest.json)")],
    examples: Annotated[int, typer.Option("--examples", help="contact-sheet pairs per workflow")] = 3,
) -> None:
    """Write report/report.html (self-contained) and the dataset card README.md."""
    from aether_data.report import write_report

    if not (directory / "manifest.json").is_file():
        err.print(f"[red]error:[/red] {directory} has no manifest.json (build it first)")
        raise typer.Exit(1)
    paths = write_report(directory, examples_per_workflow=examples)
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


_mount_subcommands()


def run() -> None:  # pragma: no cover - console entry point helper
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
