"""The sample record: what a dataset row says about its pair, checked against `sample.schema.json`."""

from __future__ import annotations

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
from aether_data.resources import display_uri

__all__ = [
    "EXPERT_REF_EMPTY",
    "PRESET_RECORD_FIELDS",
    "RecordMaker",
    "RecordSchemaError",
    "preset_record",
]


class RecordSchemaError(ValueError):
    """A synthesised record that does not match manifests/sample.schema.json."""


PRESET_RECORD_FIELDS = ("id", "name", "primary", "fine", "categories", "matcher", "effects", "unsupported")

# One record shape for every workflow (sample.schema.json, "Type-stable records"): Arrow readers
# (`datasets`, Ray Data) infer column types from the first few records of the first shard, so a
# field that is null, an empty list or missing there and filled elsewhere cannot be loaded. Every
# record therefore has every field, never null: a field that does not apply holds the empty value
# of its type ("" / 0 / 0.0 / all-zero params), and the preset's lists whose length varies
# (categories, effects, unsupported) are "; "-joined strings.
PRESET_EMPTY: dict[str, Any] = {k: "" for k in PRESET_RECORD_FIELDS}
EXPERT_REF_EMPTY: dict[str, Any] = {
    "id": "",
    "distance": 0.0,
    "distance_kind": "",
    "rank": 0,
    "k": 0,
    "latent_masks": [0, 0, 0],
    "group_effects": [0.0, 0.0, 0.0],
    "fit_psnr_before": 0.0,
    "fit_psnr_after": 0.0,
}
ANNOTATOR_FIELDS = {
    "name": "",
    "model": "",
    "prompt_version": "",
    "attempts": 0,
    "fallback_reason": "",
    "variants": "",
}
SECTION_GROUPS = ("light", "globalcolor", "specificcolor")


def preset_record(preset: dict[str, Any] | None) -> dict[str, Any]:
    """The preset as the record stores it (its instructions and plans live in the record already);
    the empty preset (every field "") where the workflow applies none."""
    out = dict(PRESET_EMPTY)
    for k in PRESET_RECORD_FIELDS:
        v = (preset or {}).get(k)
        if v is None:
            continue
        out[k] = "; ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)
    return out


def expert_ref_record(ref: dict[str, Any] | None) -> dict[str, Any]:
    """The expert reference with every field (EXPERT_REF_EMPTY's types) whatever the workflow."""
    out = dict(EXPERT_REF_EMPTY)
    for k, empty in EXPERT_REF_EMPTY.items():
        v = (ref or {}).get(k)
        if v is None:
            continue
        if isinstance(empty, list):
            out[k] = [type(empty[0])(x) for x in v]
        else:
            out[k] = type(empty)(v)
    return out


def _sections(sec: dict[str, Any] | None) -> dict[str, str]:
    return {g: (sec or {}).get(g) or "" for g in SECTION_GROUPS}


def _params(params: dict[str, float] | None) -> dict[str, float]:
    """Normalised params, all 38; all zeros where the record has no global parameters (region)."""
    values = params if params is not None else dict.fromkeys(P.PARAM_NAMES, 0.0)
    return {k: float(v) for k, v in P.normalised_dict(values, decimals=6).items()}


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
                "area": float(r["area"]),
                "protocol": r["protocol"] or "",
                "params": _params(r["params"] or None),
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
            "protocol": pair.protocol or "",
            "instructions": ann.instructions,
            "prompt": ann.prompt,
            "completion": ann.completion,
            "reasoning": {
                "elements": ann.reasoning.get("elements") or "",
                "problems": _sections(ann.reasoning.get("problems")),
                "plans": _sections(ann.reasoning.get("plans")),
            },
            "params": _params(pair.params),
            "params_origin": pair.params_origin or "",
            "masks": [int(m) for m in pair.masks],
            "preset": preset_record(pair.preset),
            "expert_ref": expert_ref_record(pair.expert_ref),
            "source": {
                "uri": display_uri(row.source_uri),
                "sha256": p.source.sha256,
                "width": p.source.width,
                "height": p.source.height,
                "license": p.source.license or "",
            },
            "image": {"width": p.size[0], "height": p.size[1], "format": ext},
            "scores": {k: float(v) for k, v in p.scores.items()},
            "annotator": {
                k: type(empty)(ann.annotator.get(k) or empty) for k, empty in ANNOTATOR_FIELDS.items()
            },
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
