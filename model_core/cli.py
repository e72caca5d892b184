"""`aether model …`, `aether train` and `aether retouch`: the commands that drive model_core."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

model_app = typer.Typer(help="The Retouch Encoder / Renderer: train and evaluate.", no_args_is_help=True)


@model_app.command("train-er")
def train_er_command(
    config: Annotated[str, typer.Option("--config", help="cpu (small) | paper")] = "cpu",
    images: Annotated[
        Path | None, typer.Option("--images", help="folder of training photos (default: bundled)")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="checkpoint directory")] = Path("runs/er"),
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="stop after N optimiser steps \\[default: the config's]")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="training seed")] = 0,
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
    seed: Annotated[int, typer.Option("--seed", help="seed of the evaluation parameters")] = 20_260_719,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
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


def train_command(
    stage: Annotated[str, typer.Option("--stage", help="er | align | rsft | dapo")],
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="dataset directory (repeatable); not needed for er")
    ] = None,
    config: Annotated[str, typer.Option("--config", help="tiny | a config name | a YAML file")] = "tiny",
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="stop after N optimiser steps \\[default: the config's]")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="checkpoint directory")] = None,
    init: Annotated[
        Path | None, typer.Option("--init", help="start from a previous stage's checkpoint directory")
    ] = None,
    num_workers: Annotated[int, typer.Option("--num-workers", help="> 1: Ray Train DDP workers")] = 1,
    use_gpu: Annotated[bool, typer.Option("--use-gpu", help="one GPU per worker")] = False,
    seed: Annotated[int, typer.Option("--seed", help="training seed")] = 0,
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


def retouch_command(
    image: Annotated[Path, typer.Argument(help="the photo to retouch")],
    output: Annotated[Path, typer.Option("--out", "-o", help="output image (the reasoning goes beside it)")],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="a trained VeraRetouch directory, or the official release folder"),
    ] = None,
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
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", help="sampling temperature, 0 = greedy (default: the model's)"),
    ] = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="nucleus sampling (default: the model's)")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", help="generation budget (default: the model's)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="sampling seed")] = 0,
) -> None:
    """Retouch a photo with a trained model or the official release folder.

    With --ref-after, copy a reference pair's edit instead."""
    # long only by its option declarations (typer reads them from the signature)
    from aether_data.io.atomic import atomic_write_bytes
    from aether_data.io.errors import SourceError
    from aether_data.io.imaging import OUTPUT_FORMATS, encode_for_suffix, encode_jpeg, encode_png, load_image

    if output.suffix.lower() not in OUTPUT_FORMATS:
        err.print(f"[red]error:[/red] {output}: use one of {', '.join(sorted(OUTPUT_FORMATS))}")
        raise typer.Exit(2)
    if output.parent.exists() and not output.parent.is_dir():
        err.print(f"[red]error:[/red] {output}: {output.parent} is not a folder")
        raise typer.Exit(2)
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

            result, completion = run_retouch(
                model,
                load_image(image),
                prompt=prompt,
                params=params,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                seed=seed,
            )
    except SourceError as exc:
        err.print(f"[red]error:[/red] cannot read image: {exc}")
        raise typer.Exit(1) from None
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    try:
        suffix = output.suffix.lower()
        data = (
            encode_png(result)
            if suffix == ".png"
            else encode_jpeg(result, quality=95)
            if suffix in (".jpg", ".jpeg")
            else encode_for_suffix(result, suffix)
        )
        atomic_write_bytes(output, data)
        if completion is not None:
            atomic_write_bytes(output.with_suffix(".txt"), (completion + "\n").encode("utf-8"))
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {output}: {exc}")
        raise typer.Exit(1) from None
    err.print(f"wrote {output}")
    if completion is not None:
        out.print(completion)
