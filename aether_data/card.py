"""The Hub-style dataset card (OUT/README.md): YAML front matter and the prose a reader needs.

Why: a built directory should load with nothing but its card — ``load_dataset(OUT)`` reads the
``configs`` of the front matter (one per workflow, each pointing at its shards), and the sections
say what the pairs are, how to stream them (webdataset, datasets, Ray Data, aether's own reader),
what they are not good for, under which licences the sources came, and how to cite the method.
The card is a function of the manifest (and, from ``aether report``, its statistics tables), so
equal builds give equal cards: no clock, no host.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from aether_data import __version__

__all__ = ["card_text", "front_matter", "licence_id", "size_category", "write_card"]

# What the globally edited workflows are; region shards carry an extra member (masks.png) and
# a `regions` object, so they are their own config and stay out of the default one when mixed.
WORKFLOW_TEXT = {
    "param": "Gaussian-sampled Lightroom parameters (38 sliders, 7 protocols) rendered by aether's "
    "develop engine; `params` holds the exact edit",
    "style": "a real or generated Lightroom preset matched to the image's categories and applied by "
    "aether's preset engine; `preset` names it",
    "auto": "a good photograph degraded by an expert edit replayed backwards (or by known random "
    "operators); `params` holds the fitted / known corrective edit",
    "region": "1–4 segmented regions, each with its own parameters (`regions.items`), label map in "
    "`{key}.masks.png`",
}
GLOBAL_WORKFLOWS = ("param", "style", "auto")

# SPDX identifiers of the Hub's licence list, keyed by the lower-cased licence a source records.
_HUB_LICENCES = {
    "cc0-1.0": "cc0-1.0",
    "cc0": "cc0-1.0",
    "public domain": "cc0-1.0",
    "public-domain": "cc0-1.0",
    "pdm": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0",
    "apache-2.0": "apache-2.0",
    "mit": "mit",
}

CITATION = """\
@misc{veraretouch,
  title        = {VeraRetouch},
  author       = {Guo and others},
  howpublished = {SIGGRAPH 2026},
  note         = {the method and data engine aether reproduces; https://github.com/OpenVeraTeam/VeraRetouch}
}

@software{aether,
  title   = {aether: synthetic photo-retouching training pairs},
  version = {VERSION},
  license = {Apache-2.0}
}"""


def size_category(n: int) -> str:
    """The Hub's size bucket for ``n`` samples."""
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ):
        if n < limit:
            return name
    return "n>1T" if n >= 10**12 else "100M<n<1B" if n < 10**9 else "1B<n<10B"


def licence_id(licences: Counter[str] | dict[str, int] | None) -> str:
    """One Hub licence id for the dataset: the sources' common licence when they all agree and it
    is on the Hub's list, else ``other`` (the card's licence section lists them)."""
    ids = {_HUB_LICENCES.get(str(k).strip().lower(), "other") for k in (licences or {})}
    return ids.pop() if len(ids) == 1 else "other"


def _workflows(manifest: dict[str, Any]) -> list[str]:
    """Workflows with shards, in the manifest's shard order's first appearance (sorted names)."""
    names = {str(s.get("name", s.get("path", ""))).split("/")[-1].split("-")[0] for s in manifest["shards"]}
    return sorted(n for n in names if n)


def _configs(workflows: list[str]) -> list[dict[str, Any]]:
    """``configs``: a default over every globally edited workflow's shards, then one per workflow."""
    glob = [w for w in workflows if w in GLOBAL_WORKFLOWS] or workflows
    if set(glob) == set(workflows):
        default_files: str | list[str] = "shards/*.tar"
    else:
        default_files = [f"shards/{w}-*.tar" for w in glob]
    configs = [
        {
            "config_name": "default",
            "data_files": [{"split": "train", "path": default_files}],
            "default": True,
        }
    ]
    configs += [
        {"config_name": w, "data_files": [{"split": "train", "path": f"shards/{w}-*.tar"}]} for w in workflows
    ]
    return configs


def front_matter(
    manifest: dict[str, Any], name: str, licences: Counter[str] | dict[str, int] | None = None
) -> dict[str, Any]:
    """The card's YAML metadata (the Hub's dataset-card fields)."""
    workflows = _workflows(manifest)
    return {
        "pretty_name": f"aether retouching pairs ({name})",
        "license": licence_id(licences),
        "language": ["en"],
        "task_categories": ["image-to-image"],
        "tags": ["photo-retouching", "image-editing", "instruction-editing", "synthetic", "webdataset"],
        "size_categories": [size_category(int(manifest.get("samples", 0)))],
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "source_datasets": ["original"],
        "multilinguality": ["monolingual"],
        "configs": _configs(workflows),
    }


def _fingerprints(manifest: dict[str, Any]) -> str:
    fps = manifest.get("fingerprints")
    if not isinstance(fps, dict) or not fps:
        return ""
    rows = "".join(f"| {k} | `{v}` |\n" for k, v in sorted(fps.items()))
    return (
        "Fingerprints (sha256) of everything the records depend on; equal fingerprints and seed "
        "give equal bytes:\n\n| input | sha256 |\n|---|---|\n" + rows
    )


def card_text(
    manifest: dict[str, Any],
    name: str,
    licences: Counter[str] | dict[str, int] | None = None,
    stats_markdown: str = "",
) -> str:
    """The whole README.md: front matter, then summary, structure, loading, uses and limitations,
    licences, citation (and, from ``aether report``, the statistics sections)."""
    meta = yaml.safe_dump(front_matter(manifest, name, licences), sort_keys=False, allow_unicode=True)
    workflows = _workflows(manifest)
    per = manifest.get("per_workflow", {})
    wf_lines = "".join(
        f"- **{w}** ({per.get(w, 0)} samples): {WORKFLOW_TEXT.get(w, '')}.\n" for w in workflows
    )
    first = workflows[0] if workflows else "param"
    ext = (manifest.get("spec") or {}).get("image", {}).get("format", "jpg")
    lic_rows = "".join(f"| {k} | {v} |\n" for k, v in sorted((licences or {}).items()))
    lic_table = f"| source licence | samples |\n|---|---|\n{lic_rows}" if lic_rows else ""
    skipped = manifest.get("skipped", {}) or {}
    parts = [
        f"---\n{meta}---\n",
        f"# {name}: photo-retouching training pairs\n",
        "## Summary\n",
        f"{manifest.get('samples', 0)} synthetic (input, target, instruction, reasoning) pairs in "
        f"{len(manifest.get('shards', []))} WebDataset shards, built by aether {manifest.get('code_version', __version__)} "
        f"with seed {manifest.get('seed')} (`manifest.json` holds the full spec; the same spec, "
        f"sources and seed rebuild the same bytes). Skipped inputs: {skipped.get('count', 0)} "
        "(`skipped.parquet`, with reasons).\n\n" + wf_lines,
        _fingerprints(manifest),
        "## Structure\n",
        f"`shards/{{workflow}}-{{shard:06d}}.tar`, one sample per key `{{workflow}}_{{index:09d}}`:\n\n"
        f"- `{{key}}.input.{ext}`, `{{key}}.target.{ext}`: the pair (baseline JPEG q95, 4:4:4, sRGB, "
        "or PNG);\n"
        "- `{key}.json`: the record (`manifests/sample.schema.json`): `instructions` (variants), "
        "`prompt`, `completion` (the reasoning + retouch-token text a model is trained to write), "
        "`reasoning`, `params` (38 normalised values), `masks`, `protocol`, `preset`, `expert_ref`, "
        "`source` (uri, sha256, size, licence), `image`, `scores`, `annotator`, `seed`, `generator`;\n"
        "- region shards only: `{key}.masks.png` and the record's `regions`.\n\n"
        "Every record has every field with the same type whatever its workflow; a field that does "
        'not apply holds the empty value of its type (`""`, `0`, all-zero `params`), never null, so '
        "Arrow readers load all workflows together. `index/{shard}.parquet` holds per-sample byte "
        "offsets and scores; `plan.parquet` the plan; `run.json` timings (not reproducible).\n",
        "## How to load\n",
        "With the Hub's `datasets` (this card's `configs`: `default` = the globally edited workflows, "
        "plus one config per workflow):\n\n"
        "```python\nfrom datasets import load_dataset\n\n"
        f'ds = load_dataset("{name}", split="train")            # this folder (or its Hub repo)\n'
        f'one = load_dataset("{name}", "{first}", split="train")\n'
        'rec = ds[0]["json"]; img = ds[0]["input.' + ext + '"]  # dict, PIL image\n'
        'ds = load_dataset("webdataset", data_files={"train": "'
        + name
        + '/shards/*.tar"}, split="train")\n```\n\n'
        "With webdataset:\n\n"
        "```python\nimport glob\n\nimport webdataset as wds\n\n"
        f'shards = sorted(glob.glob("{name}/shards/*.tar"))\n'
        'ds = wds.WebDataset(shards, shardshuffle=False).decode("pil")\n'
        f'for s in ds: s["input.{ext}"], s["target.{ext}"], s["json"]["instructions"]\n```\n\n'
        "With Ray Data:\n\n"
        "```python\nimport ray\n\n"
        f'ds = ray.data.read_webdataset("{name}/shards")\n```\n\n'
        "With aether's streaming reader (shuffle buffer, worker sharding, tensors for training):\n\n"
        "```python\nfrom model_core.data import ShardStream, discover_shards\n\n"
        f'shards = discover_shards(["{name}"])  # task -> tar paths\n'
        "stream = ShardStream(sorted(sum(shards.values(), [])), seed=0, epochs=1)\n```\n\n"
        f"Check and summarise it: `aether audit {name}`, `aether inspect {name}`, `aether report {name}`.\n",
        "## Uses and limitations\n",
        "Meant for training and evaluating instruction-driven and parametric photo-retouching models "
        "(VeraRetouch-style: reasoning, then retouch tokens decoded into Lightroom parameters). "
        "The pairs are synthetic: targets are rendered by aether's develop engine, or inputs are "
        "degraded from good photographs, so they show the engine's rendering, not Lightroom's, and "
        "the aesthetic judgements are those of the sampling distributions, presets and expert edits "
        "it was given, not of a person. Instructions and reasoning are written by a template or a "
        "vision-language model (see `annotator`) and can be wrong about image content. Not meant for "
        "identifying people or for judging photographs' worth. Small builds repeat their few "
        "source photographs many times.\n",
        "## Licences\n",
        "The code that built it is Apache-2.0. Each pair derives from its source photograph, whose "
        "licence is recorded per record (`source.license`); a source without a recorded licence must "
        "be checked by the user before redistribution. The card's `license` is the sources' common "
        "licence when they all agree, else `other`.\n\n" + lic_table,
        stats_markdown,
        "## Citation\n",
        "```bibtex\n" + CITATION.replace("VERSION", manifest.get("code_version", __version__)) + "\n```\n",
    ]
    return "\n".join(p for p in parts if p)


def write_card(
    out_dir: Any, stats_markdown: str = "", licences: Counter[str] | dict[str, int] | None = None
) -> Any:
    """Write OUT/README.md from the manifest (licences read from the records when not given)."""
    import json

    from aether_data.io.atomic import atomic_write_text
    from aether_data.io.storage import as_path

    out = as_path(out_dir)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    if licences is None:
        licences = record_licences(out, manifest)
    return atomic_write_text(out / "README.md", card_text(manifest, out.name, licences, stats_markdown))


def record_licences(out: Any, manifest: dict[str, Any]) -> Counter[str]:
    """Samples per recorded source licence, from the shards' JSON members (by index offset)."""
    import json

    import pyarrow.parquet as pq

    counts: Counter[str] = Counter()
    for entry in manifest["shards"]:
        rows = pq.read_table(
            (out / entry["index"]).open("rb"), columns=["json_offset", "json_size"]
        ).to_pylist()
        with (out / entry["path"]).open("rb") as f:
            for row in rows:
                f.seek(row["json_offset"])
                rec = json.loads(f.read(row["json_size"]))
                counts[(rec.get("source") or {}).get("license") or "not recorded"] += 1
    return counts
