"""`aether build`: flags → spec overrides, live progress, the closing summary."""

from __future__ import annotations

import threading
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from aether_data import __version__
from aether_data.io.imaging import RESIZE_MODES

err = Console(stderr=True, soft_wrap=True)

# Choices as enums: --help lists them and a bad value is answered with the list.
ResizeMode = Enum("ResizeMode", {m: m for m in RESIZE_MODES}, type=str)
WorkflowName = Enum("WorkflowName", {w: w for w in ("param", "style", "auto", "region", "all")}, type=str)


class BuildProgress:
    """Rich progress per sample: processed / planned, samples/s, ETA, shards done, skipped.

    Workers report each sample as it is rendered (a Ray counter the driver polls, see
    `executor.execute`); a shard's own result settles its count when it finishes.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lock = threading.Lock()
        self.samples = 0  # written, from finished shards
        self.skipped = 0
        self.failed = 0
        self.finished: dict[str, int] = {}  # shard → samples processed (written + skipped)
        self.live: dict[str, int] = {}  # running shard → samples processed so far
        self.shards_total = 0
        self.shards_done = 0
        self.total = 0
        self.t0 = time.perf_counter()
        self.first: tuple[float, int] | None = None  # (time, samples) when samples were first seen
        self.progress = Progress(
            TextColumn("[bold]samples"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def processed(self) -> int:
        return sum(self.finished.values()) + sum(n for s, n in self.live.items() if s not in self.finished)

    def _stats(self, final: bool = False) -> str:
        done = self.processed()
        now = time.perf_counter()
        if done and self.first is None:
            self.first = (now, done)
        # rate from the first samples seen on (Ray's and the workers' start-up are not samples);
        # under a second of samples is too noisy for a live rate, but is what the closing line has
        t1, n1 = self.first or (now, done)
        seen = now - t1 > (0.0 if final else 1.0) and done > n1
        rate = (done - n1) / (now - t1) if seen else 0.0
        eta = format_seconds((self.total - done) / rate) if rate > 0 else "–"
        return (
            f"{f'{rate:.1f}' if rate > 0 else '–'} samples/s · ETA {eta} · "
            f"shards {self.shards_done}/{self.shards_total} · {self.skipped} skipped · {self.failed} failed"
        )

    def _refresh(self, final: bool = False) -> None:
        stats = self._stats(final)
        self.progress.update(self.task, completed=min(self.processed(), self.total), stats=stats)

    def start(self, total_shards: int, reused: int, todo: int, todo_samples: int | None = None) -> None:
        if reused:
            self.console.print(f"resuming: {reused} of {total_shards} shards already done and verified")
        self.t0 = time.perf_counter()
        self.shards_total, self.shards_done = todo, 0
        self.total = int(todo_samples if todo_samples is not None else todo)
        self.progress.start()
        self.task = self.progress.add_task("build", total=self.total, completed=0, stats=self._stats())

    def running(self, counts: dict[str, int]) -> None:
        """Per-shard sample counts of running shards (called from the driver's progress thread)."""
        with self.lock:
            self.live.update(counts)
            if self.task is not None:
                self._refresh()

    def update(self, res: dict[str, Any]) -> None:
        with self.lock:
            self.samples += int(res.get("samples") or 0)
            self.skipped += int(res.get("skipped") or 0)
            self.failed += 0 if res.get("ok") else 1
            self.shards_done += 1
            self.finished[res["name"]] = int(res.get("samples") or 0) + int(res.get("skipped") or 0)
            if not res.get("ok"):
                self.console.print(f"[red]shard {res['name']} failed:[/red] {res['error']}")
            self._refresh()

    def stop(self) -> None:
        with self.lock:
            if self.task is not None:
                self._refresh(final=True)
        self.progress.stop()


def format_seconds(seconds: float) -> str:
    """0:00:19 style (h:mm:ss), as rich's elapsed column."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _build_overrides(
    *,
    sources: str | None,
    num_samples: int | None,
    seed: int | None,
    samples_per_shard: int | None,
    image_size: int | None,
    resize_mode: str | None = None,
    resize_only_if_bigger: bool | None = None,
    workers: int | None = None,
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
    if resize_mode is not None:
        overrides.setdefault("image", {})["resize_mode"] = getattr(resize_mode, "value", resize_mode)
    if resize_only_if_bigger is not None:
        overrides.setdefault("image", {})["resize_only_if_bigger"] = resize_only_if_bigger
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


NEXT_STEPS = (
    ("audit", "check every shard against its index and the schemas"),
    ("report", "statistics, contact sheet and the dataset card (README.md)"),
    ("inspect", "look at a few pairs and their instructions"),
)


def _report_build(summary: Any, fail_on_error_rate: float | None, out_dir: str = "aether-out") -> None:
    """Print what a build did, and what to run next; exit 1 on failed shards or a skip rate above
    the limit."""
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
    per = " · ".join(f"{w} {n}" for w, n in sorted((m.get("per_workflow") or {}).items())) or "none"
    reused = f", {summary.shards_reused} reused" if summary.shards_reused else ""
    err.print(
        f"[green]done[/green] in {format_seconds(summary.seconds)} ({summary.seconds:.1f}s): "
        f"{m.get('samples', 0)} samples in {summary.shards_total} shard{'' if summary.shards_total == 1 else 's'} "
        f"({summary.shards_built} built{reused}) · {rate:.1f} samples/s"
    )
    err.print(f"  per workflow: {per}")
    skipped = m.get("skipped", {"count": 0, "reasons": {}})
    if skipped["count"]:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(skipped["reasons"].items()))
        err.print(f"  [yellow]skipped {skipped['count']} input(s):[/yellow] {reasons} (see skipped.parquet)")
    else:
        err.print("  skipped 0 inputs")
    rejected = m.get("sources_rejected") or {"count": 0, "checked": 0}
    if rejected["count"]:  # left out at plan time: they cost no sample (N means N)
        err.print(
            f"  [yellow]{rejected['count']} of {rejected['checked']} source(s) unusable, left out of the plan:"
            f"[/yellow] {rejected['reasons']} (manifest sources_rejected)"
        )
    replaced = m.get("sources_replaced") or {"count": 0, "reasons": {}}
    if replaced["count"]:  # failed at build time; their samples came from later sources of the plan
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(replaced["reasons"].items()))
        err.print(f"  [yellow]{replaced['count']} source(s) failed and were replaced:[/yellow] {reasons}")
    err.print(f"  output: {out_dir} (dataset card: README.md)")
    err.print("next:")
    width = max(len(c) for c, _ in NEXT_STEPS) + len(out_dir) + 8
    for cmd, what in NEXT_STEPS:
        err.print(f"  {f'aether {cmd} {out_dir}':<{width}} {what}", highlight=False)
    if fail_on_error_rate is not None and summary.planned_samples:
        rate_bad = skipped["count"] / summary.planned_samples
        rate_bad = max(rate_bad, rejected["count"] / max(rejected["checked"], 1))
        if rate_bad > fail_on_error_rate:
            err.print(
                f"[red]skip rate {rate_bad:.3f} exceeds --fail-on-error-rate {fail_on_error_rate}[/red]"
            )
            raise typer.Exit(1)


def _check_options(fail_on_error_rate: float | None, incremental: str | None, overwrite: bool) -> None:
    """Options that typer's types do not bound: a one-line error and exit 2."""
    import math

    problem = None
    if fail_on_error_rate is not None and not (
        math.isfinite(fail_on_error_rate) and 0.0 <= fail_on_error_rate <= 1.0
    ):
        problem = f"--fail-on-error-rate must be a fraction between 0 and 1, got {fail_on_error_rate}"
    elif incremental is not None and incremental != "extend":
        problem = f"--incremental supports only 'extend', got {incremental!r}"
    elif incremental is not None and overwrite:
        problem = "--incremental extend keeps the existing shards; it cannot be combined with --overwrite"
    if problem:
        err.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2)


def build_command(
    workflow: Annotated[
        WorkflowName | None,
        typer.Option(
            "--workflow",
            "-w",
            help="what to build; all = param + style + auto \\[default: auto, or the --config's]",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="pipeline spec YAML \\[default: pipelines/WORKFLOW.yaml]"),
    ] = None,
    sources: Annotated[
        str | None,
        typer.Option("--sources", help="folder, image, list file or URI \\[default: the bundled photos]"),
    ] = None,
    out_dir: Annotated[
        str, typer.Option("--out", "-o", help="output directory or URI (s3://bucket/run)")
    ] = "aether-out",
    num_samples: Annotated[
        int | None, typer.Option("--num-samples", "-n", help="samples to plan \\[default: the spec's, 64]")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="root seed: same spec + sources + seed = same bytes \\[default: the spec's, 0]"
        ),
    ] = None,
    samples_per_shard: Annotated[
        int | None, typer.Option("--samples-per-shard", help="samples per tar shard \\[default: the spec's]")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            help="stored size: short edge (keep_ratio) or square side \\[default: the spec's, 512]",
        ),
    ] = None,
    resize_mode: Annotated[
        ResizeMode | None,
        typer.Option(
            "--resize-mode",
            help="keep_ratio: short edge to --image-size; center_crop: then the centred square; "
            "border: long edge to --image-size, padded square \\[default: the spec's, keep_ratio]",
        ),
    ] = None,
    resize_only_if_bigger: Annotated[
        bool | None,
        typer.Option(
            "--resize-only-if-bigger/--resize-always",
            help="never upscale smaller crops / always scale to --image-size "
            "\\[default: only keep_ratio never upscales]",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="concurrent shard tasks \\[default: the spec's, 2]")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="join a Ray cluster \\[default: RAY_ADDRESS, else an embedded local Ray]"
        ),
    ] = None,
    annotator: Annotated[
        str | None,
        typer.Option("--annotator", help="template | openai | qwen-vl \\[default: the spec's, template]"),
    ] = None,
    openai_base_url: Annotated[
        str | None,
        typer.Option(
            "--openai-base-url",
            help="OpenAI-compatible server, e.g. http://host:8000/v1 \\[default: the spec's]",
        ),
    ] = None,
    openai_model: Annotated[
        str | None, typer.Option("--openai-model", help="served model name \\[default: the server's first]")
    ] = None,
    annotator_model_path: Annotated[
        str | None,
        typer.Option(
            "--annotator-model-path", help="local Qwen2.5-VL / Qwen3-VL folder \\[default: the spec's]"
        ),
    ] = None,
    annotator_cache_dir: Annotated[
        str | None,
        typer.Option("--annotator-cache-dir", help="annotation cache \\[default: ~/.cache/aether]"),
    ] = None,
    fail_on_error_rate: Annotated[
        float | None,
        typer.Option(
            "--fail-on-error-rate",
            help="exit 1 if skipped / planned exceeds this fraction \\[default: no limit]",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
    strength_stats: Annotated[
        str | None,
        typer.Option(
            "--strength-stats",
            help="calibrate edit strengths (param, auto operators) to `aether stats strength` output",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="delete a previous build in --out first, then build")
    ] = False,
    incremental: Annotated[
        str | None,
        typer.Option(
            "--incremental", help="extend: grow a dataset of the same spec and seed to --num-samples"
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show Ray's own log output on the console")
    ] = False,
) -> None:
    """Build a dataset: plan → shards (Ray Data) → indexes → manifest. Re-run to resume."""
    # Long only by its option declarations (typer reads them from the signature); the work is in
    # _build_overrides, run_build and _report_build.
    from aether_data.build.errors import BuildError
    from aether_data.build.executor import catch_interrupts
    from aether_data.build.run import run_build
    from aether_data.config import SpecError, load_spec

    workflow = getattr(workflow, "value", workflow)
    if workflow is None and config is None:
        workflow = "auto"
    _check_options(fail_on_error_rate, incremental, overwrite)
    overrides = _build_overrides(
        sources=sources,
        num_samples=num_samples,
        seed=seed,
        samples_per_shard=samples_per_shard,
        image_size=image_size,
        resize_mode=resize_mode,
        resize_only_if_bigger=resize_only_if_bigger,
        workers=workers,
        ray_address=ray_address,
        annotator=annotator,
        openai_base_url=openai_base_url,
        openai_model=openai_model,
        annotator_model_path=annotator_model_path,
        annotator_cache_dir=annotator_cache_dir,
    )
    if strength_stats is not None:  # issue 17: calibrated param sampler and random operators
        overrides.setdefault("param", {})["strength_stats"] = strength_stats
        overrides.setdefault("auto", {})["strength_stats"] = strength_stats
    try:
        spec = load_spec(config, workflow, overrides)
    except SpecError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    err.print(
        f"aether {__version__}: building [bold]{spec.workflow}[/bold] · {spec.num_samples} samples · "
        f"{spec.samples_per_shard}/shard · seed {spec.seed} · {spec.runtime.workers} workers → {out_dir}"
    )
    if verbose:
        import os

        os.environ["AETHER_RAY_VERBOSE"] = "1"
    progress = None if quiet else BuildProgress(err)
    catch_interrupts()
    try:
        summary = run_build(
            spec, out_dir, progress=progress, overwrite=overwrite, extend=incremental == "extend"
        )
    except BuildError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted:[/yellow] finished shards are kept; re-run the same command to resume")
        raise typer.Exit(130) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write output: {exc}")
        raise typer.Exit(1) from None
    if summary.manifest is not None and not summary.failed:
        from aether_data.card import write_card

        try:
            write_card(out_dir)  # OUT/README.md: `load_dataset(OUT)` reads its configs
        except OSError as exc:
            err.print(f"[yellow]warning:[/yellow] dataset card not written: {exc}")
    _report_build(summary, fail_on_error_rate, out_dir)
