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
from aether_data.io.atomic import atomic_write_text

app = typer.Typer(
    help="aether: build photo-retouching training datasets (param / style / auto) as WebDataset shards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


model_app = typer.Typer(help="The Retouch Encoder / Renderer: train and evaluate.", no_args_is_help=True)


@model_app.command("train-er")
def train_er_command(
    config: Annotated[str, typer.Option("--config", help="cpu (small) | paper")] = "cpu",
    images: Annotated[
        Path | None, typer.Option("--images", help="folder of training photos (default: bundled)")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/er"),
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/last.safetensors")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N (models and teacher)")] = "cpu",
) -> None:
    """Train E and R with the develop engine as the teacher (resumable, safetensors)."""
    from model_core.er_data import list_images
    from model_core.train.er import train_er

    paths = list_images(images) if images else None
    result = train_er(
        config,
        paths,
        out_dir,
        max_steps=max_steps,
        seed=seed,
        resume=resume,
        log=lambda m: err.print(str(m)),
        device=device,
    )
    err.print(
        f"[green]done[/green]: step {result['step']} in {result['wall_time_s']:.0f}s → {result['checkpoint']}"
    )


@model_app.command("eval-er")
def eval_er_command(
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="safetensors or official .pth (default: shipped)")
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="held-out photos (default: bundled split)")
    ] = None,
    n_params: Annotated[int, typer.Option("--n-params", help="parameter draws per protocol")] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 20_260_719,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """PSNR/SSIM per protocol and per masked-latent intervention on held-out images and params."""
    from model_core.er_data import list_images
    from model_core.er_io import load_er_checkpoint
    from model_core.eval_er import evaluate_er, format_table

    try:
        encoder, renderer, _ = load_er_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    result = evaluate_er(
        encoder, renderer, list_images(images) if images else None, n_params=n_params, seed=seed
    )
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(format_table(result))


def _mount_subcommands() -> None:
    """Sub-apps live beside the code they drive."""
    from aether_data.evaluation.cli import benchmark_app
    from aether_data.expert_db.cli import expert_db_app, stats_app
    from aether_data.presets.cli import presets_app

    app.add_typer(presets_app, name="presets", help="The preset library: list, show, import, apply, export.")
    app.add_typer(expert_db_app, name="expert-db", help="Expert pair DB for the auto workflow.")
    app.add_typer(stats_app, name="stats", help="Statistics files the samplers use.")
    app.add_typer(model_app, name="model")
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


def _build_overrides(
    *,
    sources: str | None,
    num_samples: int | None,
    seed: int | None,
    samples_per_shard: int | None,
    image_size: int | None,
    workers: int | None,
    ray_address: str | None,
    annotator: str | None,
    openai_base_url: str | None,
    openai_model: str | None,
    annotator_model_path: str | None,
    annotator_cache_dir: str | None,
) -> dict[str, Any]:
    """The spec fields that `aether build`'s flags override (only the flags that were given)."""
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
    for field, value in (
        ("backend", annotator),
        ("base_url", openai_base_url),
        ("model", openai_model),
        ("model_path", annotator_model_path),
        ("cache_dir", annotator_cache_dir),
    ):
        if value is not None:
            overrides.setdefault("annotator", {})[field] = value
    return overrides


def _report_build(summary: Any, fail_on_error_rate: float | None) -> None:
    """Print what a build did; exit 1 on failed shards or a skip rate above the limit."""
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
def build(
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="param | style | auto | region | all")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="pipeline spec YAML (default pipelines/WORKFLOW.yaml)"),
    ] = None,
    sources: Annotated[
        str | None, typer.Option("--sources", help="folder, image or list file (default: bundled photos)")
    ] = None,
    out_dir: Annotated[
        str, typer.Option("--out", "-o", help="output directory or URI (s3://bucket/run)")
    ] = "aether-out",
    num_samples: Annotated[int | None, typer.Option("--num-samples", "-n")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    samples_per_shard: Annotated[int | None, typer.Option("--samples-per-shard")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="short edge in pixels")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="concurrent shard tasks")] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="join a Ray cluster (else RAY_ADDRESS or local)")
    ] = None,
    annotator: Annotated[
        str | None, typer.Option("--annotator", help="template | openai | qwen-vl (default: the spec's)")
    ] = None,
    openai_base_url: Annotated[
        str | None,
        typer.Option("--openai-base-url", help="OpenAI-compatible server, e.g. http://host:8000/v1"),
    ] = None,
    openai_model: Annotated[
        str | None, typer.Option("--openai-model", help="served model name (default: the server's first)")
    ] = None,
    annotator_model_path: Annotated[
        str | None, typer.Option("--annotator-model-path", help="local Qwen2.5-VL / Qwen3-VL folder")
    ] = None,
    annotator_cache_dir: Annotated[
        str | None, typer.Option("--annotator-cache-dir", help="annotation cache (default ~/.cache/aether)")
    ] = None,
    fail_on_error_rate: Annotated[
        float | None,
        typer.Option("--fail-on-error-rate", help="exit 1 if skipped / planned exceeds this fraction"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Build a dataset: plan → shards (Ray Data) → indexes → manifest. Re-run to resume."""
    # Long only by its option declarations (typer reads them from the signature); the work is in
    # _build_overrides, run_build and _report_build.
    from aether_data.build.errors import BuildError
    from aether_data.build.executor import catch_interrupts
    from aether_data.build.run import run_build
    from aether_data.config import SpecError, load_spec

    if workflow is None and config is None:
        workflow = "auto"
    overrides = _build_overrides(
        sources=sources,
        num_samples=num_samples,
        seed=seed,
        samples_per_shard=samples_per_shard,
        image_size=image_size,
        workers=workers,
        ray_address=ray_address,
        annotator=annotator,
        openai_base_url=openai_base_url,
        openai_model=openai_model,
        annotator_model_path=annotator_model_path,
        annotator_cache_dir=annotator_cache_dir,
    )
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
    catch_interrupts()
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
    _report_build(summary, fail_on_error_rate)


@app.command()
def audit(
    directory: Annotated[str, typer.Argument(help="dataset directory or URI (holds manifest.json)")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="also decode every image")] = False,
) -> None:
    """Verify a dataset: checksums, indexes, keys, schemas. Exit 1 and name the shard on any problem."""
    from aether_data.dataset.audit import audit as run_audit

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
        if rec.get("regions"):  # region samples: the edited regions
            what = ", ".join(r["name"] for r in rec["regions"]["items"] if r["label"])
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


@app.command()
def train(
    stage: Annotated[str, typer.Option("--stage", help="er | align | rsft | dapo")],
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="dataset directory (repeatable); not needed for er")
    ] = None,
    config: Annotated[str, typer.Option("--config", help="tiny | a config name | a YAML file")] = "tiny",
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="checkpoint directory")] = None,
    init: Annotated[
        Path | None, typer.Option("--init", help="start from a previous stage's checkpoint directory")
    ] = None,
    num_workers: Annotated[int, typer.Option("--num-workers", help="> 1: Ray Train DDP workers")] = 1,
    use_gpu: Annotated[bool, typer.Option("--use-gpu", help="one GPU per worker")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="ignore an existing checkpoint in --out")
    ] = False,
) -> None:
    """Train a VeraRetouch stage on aether shards (see model_core/TRAINING.md)."""
    from model_core.train.stage import train_stage

    if stage not in ("er", "align", "rsft", "dapo"):
        err.print(f"[red]error:[/red] unknown stage {stage!r}; choose er, align, rsft or dapo")
        raise typer.Exit(2)
    if stage != "er" and not data:
        err.print(f"[red]error:[/red] stage {stage} needs --data DIR (an aether build)")
        raise typer.Exit(2)
    try:
        result = train_stage(
            stage,
            [str(d) for d in data or []],
            config=config,
            max_steps=max_steps,
            out_dir=str(out_dir) if out_dir else None,
            resume=not no_resume,
            num_workers=num_workers,
            use_gpu=use_gpu,
            seed=seed,
            init_from=str(init) if init else None,
            log=lambda msg: err.print(str(msg)),
        )
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    err.print(f"[green]done[/green]: stage {stage} at step {result.get('step')} → {result.get('checkpoint')}")


@app.command()
def retouch(
    image: Annotated[Path, typer.Argument(help="the photo to retouch")],
    output: Annotated[Path, typer.Option("--out", "-o", help="output image (the reasoning goes beside it)")],
    model: Annotated[Path | None, typer.Option("--model", help="a trained VeraRetouch directory")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="style request (style task)")] = None,
    params: Annotated[Path | None, typer.Option("--params", help="official param.json (param task)")] = None,
    ref_before: Annotated[
        Path | None, typer.Option("--ref-before", help="reference pair: before (default: INPUT itself)")
    ] = None,
    ref_after: Annotated[
        Path | None, typer.Option("--ref-after", help="reference pair: after; selects reference retouching")
    ] = None,
    er_checkpoint: Annotated[
        Path | None, typer.Option("--er-checkpoint", help="encoder/renderer weights (default: shipped)")
    ] = None,
) -> None:
    """Retouch a photo with a trained model, or copy a reference pair's edit (--ref-after)."""
    from aether_data.io.atomic import atomic_write_bytes
    from aether_data.io.errors import SourceError
    from aether_data.io.imaging import encode_jpeg, encode_png, load_image

    try:
        if ref_after is not None:
            from model_core.retouch import reference_retouch

            img = load_image(image)
            before = load_image(ref_before) if ref_before else img
            result = reference_retouch(
                img, before, load_image(ref_after), checkpoint=str(er_checkpoint) if er_checkpoint else None
            )
            completion = None
        else:
            if model is None:
                err.print(
                    "[red]error:[/red] give --model DIR, or --ref-after (and --ref-before) for reference retouching"
                )
                raise typer.Exit(2)
            if prompt is not None and params is not None:
                err.print("[red]error:[/red] --prompt and --params are exclusive")
                raise typer.Exit(2)
            from model_core.inference import retouch as run_retouch

            result, completion = run_retouch(model, load_image(image), prompt=prompt, params=params)
    except SourceError as exc:
        err.print(f"[red]error:[/red] cannot read image: {exc}")
        raise typer.Exit(1) from None
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    data = encode_png(result) if output.suffix.lower() == ".png" else encode_jpeg(result, quality=95)
    atomic_write_bytes(output, data)
    err.print(f"wrote {output}")
    if completion is not None:
        atomic_write_bytes(output.with_suffix(".txt"), (completion + "\n").encode("utf-8"))
        out.print(completion)


@app.command(name="eval")
def evaluate(
    data: Annotated[list[Path] | None, typer.Option("--data", help="dataset directory (repeatable)")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="a trained VeraRetouch directory")] = None,
    max_samples: Annotated[int | None, typer.Option("--max-samples")] = None,
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
    device: Annotated[str, typer.Option("--device")] = "cpu",
    method: Annotated[str | None, typer.Option("--name", help="--bench: the table's method name")] = None,
) -> None:
    """Score a model or predictions on a benchmark with the paper's protocols (--bench), or a model
    on held-out shards (--data: PSNR, SSIM, LPIPS if installed, histogram intersections per task)."""
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
        str, typer.Option("--markdown", help="write the README table here")
    ] = "benchmarks/results.md",
    samples: Annotated[int, typer.Option("--samples", help="pairs per workflow measurement")] = 288,
    image_size: Annotated[int, typer.Option("--image-size")] = 512,
    workflows: Annotated[str, typer.Option("--workflows", help="comma-separated")] = "param,style,auto",
    scaling_samples: Annotated[int, typer.Option("--scaling-samples")] = 256,
    memory_samples: Annotated[str, typer.Option("--memory-samples", help="small,large")] = "1000,10000",
    skip_scaling: Annotated[bool, typer.Option("--skip-scaling")] = False,
    skip_memory: Annotated[bool, typer.Option("--skip-memory")] = False,
    workdir: Annotated[
        str | None, typer.Option("--workdir", help="scratch directory (default: temp)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
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
        )
    )


_mount_subcommands()


def run() -> None:  # pragma: no cover - console entry point helper
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
