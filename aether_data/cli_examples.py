"""The Examples block of every `aether` command's --help (typer epilogs), in one table.

Why one table: the commands live beside the code they drive (build/cli.py, presets/cli.py, …), but
their examples read best side by side and a test checks that every command has some.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXAMPLES", "add_examples"]

EXAMPLES: dict[str, tuple[str, ...]] = {
    "build": (
        "aether build --workflow param -n 64 --out runs/param",
        "aether build --workflow all -n 10000 --sources photos/ --image-size 512 --out s3://bucket/run",
        "aether build --workflow style --image-size 256 --resize-mode center_crop --out runs/square",
        "aether build --config pipelines/auto.yaml --annotator openai --openai-base-url http://host:8000/v1",
    ),
    "audit": (
        "aether audit runs/param",
        "aether audit s3://bucket/run --deep --json",
        "aether audit runs/train --bench bench/aether",
    ),
    "inspect": ("aether inspect runs/param --n 4", "aether inspect runs/param --contact-sheet sheet.png"),
    "report": ("aether report runs/param", "aether report s3://bucket/run --examples 5"),
    "schema": ("aether schema pipeline-spec > manifests/pipeline-spec.schema.json",),
    "eval": (
        "aether eval --data runs/heldout --model checkpoints/vera --json result.json",
        "aether eval --bench bench/fivek --predictions preds/ --metrics psnr,ssim",
    ),
    "bench": ("aether bench --samples 64 --skip-memory --json bench.json",),
    "train": (
        "aether train --stage er --out checkpoints/er",
        "aether train --stage align --data runs/param --data runs/style --out checkpoints/vera",
    ),
    "retouch": (
        "aether retouch photo.jpg --model checkpoints/vera --out edited.jpg",
        "aether retouch photo.jpg --model checkpoints/vera --prompt 'a warm film look' --out edited.jpg",
    ),
    "render": (
        "aether render photo.jpg --params param.json -o edited.jpg",
        "aether render photo.jpg --preset film.xmp -o edited.jpg",
    ),
    "export": ("aether export runs/param --format llava --out llava/",),
    "presets list": ("aether presets list", "aether presets list --json"),
    "presets show": ("aether presets show PRESET_ID", "aether presets show PRESET_ID --json"),
    "presets import": ("aether presets import my-presets/ -o my-library.jsonl.gz",),
    "presets apply": ("aether presets apply PRESET_ID photo.jpg -o styled.jpg",),
    "presets export": ("aether presets export --id PRESET_ID --format cube -o preset.cube",),
    "presets generate": ("aether presets generate -o presets/library.jsonl.gz",),
    "expert-db build": ("aether expert-db build --pairs pairs/ --out expert_db/",),
    "expert-db info": ("aether expert-db info expert_db/", "aether expert-db info expert_db/ --json"),
    "stats strength": (
        "aether stats strength --pairs fivek/ --out strength.yaml",
        "aether stats strength --pairs pairs/ --xmp-pairs xmp-pairs/ --limit 500 --out strength.yaml",
    ),
    "stats operators": ("aether stats operators --xmp-pairs xmp-pairs/ --out presets/operator_stats.yaml",),
    "model train-er": ("aether model train-er --images photos/ --out checkpoints/er",),
    "model eval-er": ("aether model eval-er --checkpoint checkpoints/er --json",),
    "benchmark build": (
        "aether benchmark build --kind aether --data runs/all --out bench/aether",
        "aether benchmark build --kind fivek --fivek fivek/ --out bench/fivek",
    ),
    "benchmark check-disjoint": ("aether benchmark check-disjoint --bench bench/aether --data runs/train",),
}


def _epilog(lines: tuple[str, ...]) -> str:
    # a blank line between examples: typer's rich help joins lines of one paragraph
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


def add_examples(app: Any, prefix: str = "") -> None:
    """Give every registered command (and sub-app command) without an epilog its Examples."""
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        key = f"{prefix}{name}"
        if not info.epilog and key in EXAMPLES:
            info.epilog = _epilog(EXAMPLES[key])
    for group in app.registered_groups:
        if group.typer_instance is not None and group.name:
            add_examples(group.typer_instance, f"{prefix}{group.name} ")
