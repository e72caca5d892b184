"""The sample record: what a dataset row says about its pair, checked against `sample.schema.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastjsonschema

from aether_data import __version__
from aether_data import params as P
from aether_data.annotate import Annotation
from aether_data.build.sample import PendingSample
from aether_data.config import PipelineSpec
from aether_data.contract import TASK_TOKENS
from aether_data.dataset.schemas import load_schema
from aether_data.io.canonical import json_bytes
from aether_data.resources import package_root

__all__ = ["PRESET_RECORD_FIELDS", "RecordMaker", "RecordSchemaError", "display_uri", "preset_record"]


class RecordSchemaError(ValueError):
    """A synthesised record that does not match manifests/sample.schema.json."""


PRESET_RECORD_FIELDS = ("id", "name", "primary", "fine", "categories", "matcher", "effects", "unsupported")


def preset_record(preset: dict[str, Any] | None) -> dict[str, Any] | None:
    """The preset as the record stores it (its instructions and plans live in the record already)."""
    if preset is None:
        return None
    return {k: preset[k] for k in PRESET_RECORD_FIELDS if k in preset}


def region_record(extra: dict[str, Any]) -> dict[str, Any]:
    """The record's ``regions`` object: what a reader needs to re-render a region target from the
    stored input and ``{key}.masks.png`` (params normalised like the record's ``params``)."""
    return {
        "masks": "masks.png",
        "segmenter": extra["segmenter"],
        "boundary": dict(extra["boundary"]),
        "items": [
            {
                "label": r["label"],
                "name": r["name"],
                "class": r["class"],
                "named_by": r["named_by"],
                "area": r["area"],
                "protocol": r["protocol"],
                "params": P.normalised_dict(r["params"], decimals=6) if r["params"] else {},
                "masks": r["masks"],
            }
            for r in extra["regions"]
        ],
    }


def encode_labels(labels: Any) -> bytes:
    """A label map (uint8 HxW, one label per pixel) as a deterministic 8-bit grey PNG."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(labels, dtype=np.uint8), "L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def display_uri(uri: str) -> str:
    """Bundled photos are recorded relative to the package so manifests do not leak local paths."""
    try:
        rel = Path(uri).resolve().relative_to(package_root().resolve())
        return f"aether://{rel.as_posix()}"
    except ValueError:
        return uri


class RecordMaker:
    """Assembles a sample's record: the one place a record and its index fields are made."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        # Compiled once to Python code: ~40× faster than the jsonschema reference validator, which
        # `aether audit` still uses, so every record is checked by both implementations.
        self.record_validator = fastjsonschema.compile(load_schema("sample"))

    def check(self, record: dict[str, Any]) -> None:
        """Refuse to write a record the schema would reject (a bug, never the input's fault)."""
        try:
            self.record_validator(record)
        except fastjsonschema.JsonSchemaValueException as error:
            where = ".".join(str(p) for p in error.path[1:]) or "<record>"
            raise RecordSchemaError(f"{record.get('key')}: {where}: {error.message}") from None

    def make(self, p: PendingSample, ann: Annotation) -> tuple[dict[str, bytes], dict[str, Any]]:
        """The record (checked against the schema), its tar members and its index fields."""
        row, ext, pair = p.row, self.spec.image.format, p.pair
        record = {
            "key": row.key,
            "task": TASK_TOKENS[row.workflow],
            "workflow": row.workflow,
            "protocol": pair.protocol,
            "instructions": ann.instructions,
            "prompt": ann.prompt,
            "completion": ann.completion,
            "reasoning": ann.reasoning,
            "params": P.normalised_dict(pair.params, decimals=6) if pair.params is not None else None,
            "params_origin": pair.params_origin,
            "masks": pair.masks,
            "preset": preset_record(pair.preset),
            "expert_ref": pair.expert_ref,
            "source": {
                "uri": display_uri(row.source_uri),
                "sha256": p.source.sha256,
                "width": p.source.width,
                "height": p.source.height,
                "license": p.source.license,
            },
            "image": {"width": p.size[0], "height": p.size[1], "format": ext},
            "scores": p.scores,
            "annotator": ann.annotator,
            "seed": row.seed,
            "generator": {"name": f"aether-{row.workflow}", "version": __version__},
        }
        if p.quality is not None:
            record["quality"] = p.quality
        if row.workflow == "region":  # the region extension; global records keep their exact bytes
            record["regions"] = region_record(pair.extra)
        self.check(record)
        members = {f"input.{ext}": p.input_bytes, f"target.{ext}": p.target_bytes, "json": json_bytes(record)}
        if row.workflow == "region":
            members["masks.png"] = encode_labels(pair.extra["labels"])
        fields = {
            "workflow": row.workflow,
            "task": record["task"],
            "protocol": pair.protocol,
            "preset_id": (pair.preset or {}).get("id"),
            "expert_ref": (pair.expert_ref or {}).get("id"),
            "annotator": ann.annotator.get("name"),
            "attempts": ann.annotator.get("attempts", 0),
            "fallback_reason": ann.annotator.get("fallback_reason"),
            "params_origin": pair.params_origin,
            "score_input": p.scores["aesthetic_input"],
            "score_target": p.scores["aesthetic_target"],
        }
        return members, fields
