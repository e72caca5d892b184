"""The JSON Schemas of records, shard-index metadata and manifests, found as package data.

Why: the schemas are the written contract of the dataset (``manifests/*.schema.json``); writers
check against them before writing and ``aether audit`` checks again after, so both must load the
very same files, in a checkout and in an installed wheel.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from aether_data.resources import data_path

__all__ = ["load_schema", "schema_errors", "schema_path"]


def schema_path(name: str) -> Path:
    """Path of a JSON Schema in ``manifests/`` ("sample" or "sample.schema.json")."""
    fname = name if name.endswith(".json") else f"{name}.schema.json"
    return data_path("manifests", fname)


def load_schema(name: str) -> dict[str, Any]:
    """Load a JSON Schema from ``manifests/`` (a fresh dict each call: callers may mutate it)."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(name: str, instance: Any, limit: int = 3) -> list[str]:
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    out = []
    for e in errors[:limit]:
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        out.append(f"{where}: {e.message}")
    if len(errors) > limit:
        out.append(f"... and {len(errors) - limit} more schema errors")
    return out
