"""Pipeline specs: the pydantic models behind `pipelines/*.yaml` and `aether build` flags.

A spec is validated completely before any work starts, so a typo in a YAML file fails with the
field path and the reason instead of half-way through a million-sample run. The resolved spec is
stored verbatim in the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aether_data.contract import WORKFLOWS
from aether_data.resources import data_path
from aether_data.sampling import PROTOCOLS

PIPELINES_DIR = data_path("pipelines")


class SpecError(ValueError):
    """A pipeline spec that cannot run; the message names the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourcesSpec(_Strict):
    """Where source photos come from (None = the bundled photographs)."""

    path: str | None = Field(None, description="folder, image file, or .txt/.csv/.tsv/.parquet list")
    max_pixels: int = Field(100_000_000, gt=0, description="decompression-bomb guard")
    crop_scale: tuple[float, float] = Field(
        (0.6, 1.0), description="random crop area range applied per sample (1,1 = no crop)"
    )
    flip: bool = Field(True, description="random horizontal flips")
    precheck: bool = Field(
        True,
        description="decode every local source at draft scale at plan time and leave broken ones out of"
        " the plan (N means N; listed in the manifest's sources_rejected)",
    )
    replacements: int = Field(
        8,
        ge=0,
        le=64,
        description="a sample whose source fails (unreadable at build time, or every draft fails a"
        " quality gate) is built from the next sources of the plan's permutation, up to this many",
    )

    @field_validator("crop_scale")
    @classmethod
    def _check_crop(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not 0.1 <= lo <= hi <= 1.0:
            raise ValueError("crop_scale must satisfy 0.1 <= low <= high <= 1")
        return v


class ImageSpec(_Strict):
    """Output image geometry and encoding."""

    size: int = Field(
        512,
        ge=16,
        le=8192,
        description="stored size in pixels: the short edge (keep_ratio), the square's side (center_crop, border)",
    )
    resize_mode: Literal["keep_ratio", "center_crop", "border"] = Field(
        "keep_ratio",
        description="as img2dataset: keep_ratio = short edge to `size`, aspect kept; center_crop = short "
        "edge to `size`, then the centred size×size square; border = long edge to `size`, then "
        "padded (black) to size×size. center_crop and border give one shape, so batches collate",
    )
    resize_only_if_bigger: bool | None = Field(
        None,
        description="never upscale a smaller crop (true) or scale it up to `size` (false); default "
        "(null): true for keep_ratio, false for center_crop and border so every image is size×size",
    )
    format: Literal["jpg", "png"] = "jpg"
    quality: int = Field(95, ge=50, le=100, description="JPEG quality")


class ParamSpec(_Strict):
    """Param workflow: Gaussian sampling over the 7 protocols."""

    operator_stats: str | None = Field(None, description="operator_stats.yaml (default: presets/)")
    protocols: list[str] = Field(default_factory=lambda: list(PROTOCOLS))
    protocol_order: Literal["balanced", "random"] = Field(
        "balanced", description="balanced = round-robin over `protocols` by sample index"
    )
    strength_stats: str | None = Field(
        None,
        description="calibrate edit strengths to a reference (`aether stats strength` output): each "
        "sample's parameters are scaled to a mean CIEDE2000 drawn from it (None = operator_stats only)",
    )
    instruction_variants: int = Field(3, ge=3, le=10)

    @field_validator("protocols")
    @classmethod
    def _check_protocols(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if p not in PROTOCOLS]
        if bad or not v:
            raise ValueError(f"unknown protocols {bad}; choose from {list(PROTOCOLS)}")
        return v


class RegionSpec(_Strict):
    """Region workflow: per-region parameters over semantic masks (PerTouch-style; see workflows/region.py)."""

    segmenter: str = Field(
        "classical",
        description="'classical' (weight-free: sky, skin, SLIC merged by colour) or a local folder "
        "holding a OneFormer / Mask2Former checkpoint (never downloaded)",
    )
    device: str = Field("cpu", description="torch device of a transformers segmenter")
    max_regions: int = Field(4, ge=1, le=8, description="regions edited per photo: 1..max_regions")
    min_area: float = Field(0.03, ge=0.0, lt=1.0, description="smallest region (fraction of the image)")
    protocols: list[str] | None = Field(None, description="per-region protocols (default: param.protocols)")
    boundary_sigma: float = Field(5.0, ge=0.0, le=50.0, description="feathering Gaussian sigma, pixels")
    boundary_shift: int = Field(20, ge=0, le=100, description="max boundary shift, pixels (perturbation)")
    replace_p: float = Field(0.05, ge=0.0, le=1.0, description="semantic replacement probability")

    @field_validator("protocols")
    @classmethod
    def _check_protocols(cls, v: list[str] | None) -> list[str] | None:
        bad = [p for p in v or [] if p not in PROTOCOLS]
        if bad or v == []:
            raise ValueError(f"unknown protocols {bad}; choose from {list(PROTOCOLS)}")
        return v


class StyleSpec(_Strict):
    """Style workflow: match the photo to preset categories, apply one preset from them."""

    library: str | None = Field(None, description="preset library file (default: presets/library)")
    extra_presets: list[str] = Field(default_factory=list, description="folders of .xmp/.lrtemplate to add")
    matcher: Literal["heuristic", "clip", "qwen-vl"] = "heuristic"
    matcher_model: str | None = Field(
        None, description="local weights for clip ('ARCH:/path' or an open_clip folder) / qwen-vl (folder)"
    )
    matcher_device: str = Field("cpu", description="torch device of the clip / qwen-vl matcher")
    top_categories: int = Field(3, ge=1, le=193, description="fine categories kept by the matcher")
    render: Literal["lut", "direct"] = Field("lut", description="bake the per-pixel part into a 3D LUT")
    lut_size: int = Field(33, ge=9, le=129)
    lut_interpolation: Literal["tetrahedral", "trilinear", "u8"] = Field(
        "u8",
        description="u8 = 8-bit tetrahedral (compiled kernel): several times faster than the float paths"
        " and ≥ 50 dB from the exact render; tetrahedral / trilinear = float interpolation",
    )
    instruction_variants: int = Field(3, ge=3, le=10)


class AutoSpec(_Strict):
    """Auto workflow: inverse degradation of high-quality photos (paper Sec. 3.2).

    A `supplementary_fraction` of samples is degraded by random operators (known corrective
    params); the rest by the encoder/renderer: the source's nearest expert targets by histogram
    (`knn_k`, `distance`), one picked by the sample seed, its inverse latent rendered onto the
    source with random group masks, corrective params fitted with the torch develop engine.
    """

    operator_stats: str | None = Field(None, description="operator_stats.yaml (default: presets/)")
    strength_stats: str | None = Field(
        None,
        description="calibrate the random operators' strengths to a reference (`aether stats strength`"
        " output): each degradation is scaled to a mean CIEDE2000 drawn from it",
    )
    supplementary_fraction: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="fraction of samples degraded by random operators (known corrective params); "
        "the rest use the encoder/renderer over the expert DB",
    )
    expert_db: str | None = Field(
        None, description="expert pair DB folder (`aether expert-db build`); default: the bundled demo DB"
    )
    er_checkpoint: str | None = Field(
        None, description="encoder/renderer weights (default: model_core/checkpoints/er-cpu.safetensors)"
    )
    knn_k: int = Field(2, ge=1, le=1000, description="nearest expert targets the reference is drawn from")
    distance: Literal["hellinger", "l2"] = Field("hellinger", description="histogram feature distance")
    mask_keep_prob: float = Field(
        0.75, gt=0.0, le=1.0, description="probability of keeping each latent group (>= 1 group kept)"
    )
    lut_size: int = Field(
        25,
        ge=9,
        le=129,
        description="3D LUT size the renderer is baked to (25: ≥ 46 dB from the network, 2.4× cheaper than 33)",
    )
    require_toward_reference: bool = Field(
        True,
        description="keep an encoder/renderer degradation only if it moves the source's histogram toward"
        " the reference's unretouched input (else retry with every active group, then fall back to"
        " random operators)",
    )
    fit_steps: int = Field(30, ge=0, le=2000, description="Adam steps fitting the corrective params")
    fit_pixels: int = Field(
        256,
        ge=64,
        le=1_000_000,
        description="pixels the fit works on (a square grid of this many pixels sampled from the pair)",
    )
    scorer: Literal["heuristic", "laion", "qalign", "liqe"] = Field(
        "heuristic", description="aesthetic scorer of the source filter (aether_data.scoring.registry)"
    )
    scorer_model: str | None = Field(
        None, description="laion: open_clip 'ViT-L-14:/path/to/weights' or a local open_clip folder"
    )
    scorer_head: str | None = Field(None, description="laion: LAION aesthetic MLP head (.pth / .safetensors)")
    scorer_device: str = Field("cpu", description="torch device of the laion scorer")
    min_source_score: float | None = Field(
        3.0,
        description="skip sources scoring below this, on the scorer's own scale (heuristic 0–10, laion "
        "~0–10, qalign/liqe 1–5; reason low-aesthetic-source); None = keep all. The default 3.0 keeps "
        "every bundled photo (heuristic 3.9–9.3) and drops badly under-exposed ones (a photo at a "
        "quarter of its exposure scores 1.1–2.5)",
    )

    @model_validator(mode="after")
    def _check_scorer(self) -> AutoSpec:
        if self.scorer == "laion" and not (self.scorer_model and self.scorer_head):
            raise ValueError(
                "scorer 'laion' needs scorer_model (open_clip weights) and scorer_head (LAION MLP)"
            )
        if self.scorer in ("qalign", "liqe") and not self.scorer_model:
            raise ValueError(f"scorer '{self.scorer}' needs scorer_model (local weights)")
        return self


class GateSpec(_Strict):
    """Thresholds of one workflow's quality gates (`aether_data.quality`; docs/design.md)."""

    min_delta_e: float = Field(
        1.5, ge=0.0, description="visible change: mean CIEDE2000 between input and target above this"
    )
    min_delta_e_by_protocol: dict[str, float] = Field(
        default_factory=dict, description="per-protocol floors overriding min_delta_e (param, auto)"
    )
    min_rgb_diff: float = Field(
        3.0, ge=0.0, description="visible change: mean |RGB| difference above this many 8-bit levels"
    )
    min_grad_corr: float = Field(
        0.9,
        ge=-1.0,
        le=1.0,
        description="structure kept: luma-gradient correlation at least this (texture edits exempt)",
    )
    max_new_clipped: float = Field(
        0.1, ge=0.0, le=1.0, description="clipping: share of newly clipped pixels at most this"
    )
    target_not_worse: bool = Field(
        False, description="aesthetic: the target scores no lower than the input (heuristic scorer)"
    )

    @field_validator("min_delta_e_by_protocol")
    @classmethod
    def _check_protocols(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [p for p in v if p not in PROTOCOLS]
        if bad:
            raise ValueError(f"unknown protocols {bad}; choose from {list(PROTOCOLS)}")
        return v

    def delta_e_floor(self, protocol: str | None) -> float:
        return self.min_delta_e_by_protocol.get(protocol or "", self.min_delta_e)


class QualitySpec(_Strict):
    """Quality gates: a draft that fails one is redrawn from a sub-seed of its own seed (up to
    `max_redraws` times), then skipped with reason ``quality:<gate>``."""

    enabled: bool = Field(True, description="measure and gate every pair (off: measure nothing)")
    max_redraws: int = Field(8, ge=0, le=64, description="redraws of a failing draft before it is skipped")
    param: GateSpec = Field(default_factory=GateSpec)
    style: GateSpec = Field(default_factory=GateSpec)
    auto: GateSpec = Field(default_factory=lambda: GateSpec(max_new_clipped=0.2, target_not_worse=True))
    region: GateSpec = Field(default_factory=lambda: GateSpec(min_delta_e=1.0, min_rgb_diff=2.0))

    def gates(self, workflow: str) -> GateSpec:
        return getattr(self, workflow)


class AnnotatorSpec(_Strict):
    """Which annotator writes instructions and reasoning (see `aether_data.annotate.make_annotator`).

    Secrets never live here (the spec is stored in the manifest): the OpenAI-compatible backend
    reads its key from the `AETHER_OPENAI_API_KEY` environment variable only.
    """

    backend: Literal["template", "openai", "qwen-vl"] = "template"
    model: str | None = Field(None, description="openai: served model name; qwen-vl: optional label")
    base_url: str | None = Field(
        None, description="openai: server root ending in /v1, e.g. http://host:8000/v1"
    )
    model_path: str | None = Field(None, description="qwen-vl: local Qwen2.5-VL / Qwen3-VL folder")
    concurrency: int = Field(8, ge=1, le=1024, description="openai: requests in flight per worker")
    timeout_s: float = Field(60.0, gt=0, description="openai: per-request timeout (seconds)")
    max_retries: int = Field(2, ge=0, le=20, description="extra attempts after a failure, then template")
    retry_backoff_s: float = Field(0.5, ge=0, description="openai: first backoff (doubles, seeded jitter)")
    batch_size: int = Field(4, ge=1, le=1024, description="qwen-vl: samples per generate() call")
    num_gpus: float = Field(0.0, ge=0, description="qwen-vl: GPUs per shard actor (Ray num_gpus)")
    max_new_tokens: int = Field(768, ge=16, le=32768)
    temperature: float = Field(0.0, ge=0, le=2, description="0 = greedy (first attempt)")
    cache_dir: str | None = Field(
        None, description="default: $AETHER_CACHE_DIR or ~/.cache/aether/annotations"
    )
    param_text_share: float = Field(
        0.2, ge=0, le=1, description="param samples whose prompt is a plain-text description, not the dict"
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL such as http://127.0.0.1:8000/v1")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(
                "base_url must not carry credentials or a query (the spec is stored in the manifest); "
                "put the key in the AETHER_OPENAI_API_KEY environment variable"
            )
        return v.rstrip("/")

    @model_validator(mode="after")
    def _check_backend(self) -> AnnotatorSpec:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("annotator backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if self.backend == "qwen-vl" and not self.model_path:
            raise ValueError(
                "annotator backend 'qwen-vl' needs model_path (a local Qwen2.5-VL/Qwen3-VL folder)"
            )
        return self


class RuntimeSpec(_Strict):
    """Where and how wide to run."""

    workers: int = Field(2, ge=1, le=4096, description="concurrent shard tasks")
    ray_address: str | None = Field(None, description="join an existing cluster (else RAY_ADDRESS or local)")


class PipelineSpec(_Strict):
    """A complete, resolved build spec."""

    workflow: Literal["param", "style", "auto", "region", "all"]
    num_samples: int = Field(64, ge=1)
    seed: int = Field(0, ge=0, lt=2**63)
    samples_per_shard: int = Field(256, ge=1, le=100_000)
    mix: dict[str, float] = Field(
        default_factory=lambda: {"param": 1.0, "style": 1.0, "auto": 1.0},
        description="relative share per workflow when workflow = all",
    )
    sources: SourcesSpec = Field(default_factory=SourcesSpec)
    image: ImageSpec = Field(default_factory=ImageSpec)
    param: ParamSpec = Field(default_factory=ParamSpec)
    style: StyleSpec = Field(default_factory=StyleSpec)
    auto: AutoSpec = Field(default_factory=AutoSpec)
    region: RegionSpec = Field(default_factory=RegionSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    annotator: AnnotatorSpec = Field(default_factory=AnnotatorSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)

    @model_validator(mode="after")
    def _check_mix(self) -> PipelineSpec:
        bad = [k for k in self.mix if k not in WORKFLOWS]
        if bad:
            raise ValueError(f"mix: unknown workflows {bad}")
        if any(v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("mix: shares must be >= 0 and not all zero")
        return self

    def workflows(self) -> list[str]:
        """Workflows this spec builds, in canonical order."""
        if self.workflow != "all":
            return [self.workflow]
        return [w for w in WORKFLOWS if self.mix.get(w, 0) > 0]


def _format_error(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid pipeline spec ({origin}):"]
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, nested mappings merged key by key (inputs untouched)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def default_spec_path(workflow: str) -> Path:
    """The documented defaults of a workflow, `pipelines/{workflow}.yaml`."""
    return PIPELINES_DIR / f"{workflow}.yaml"


def load_spec(
    path: str | Path | None = None,
    workflow: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> PipelineSpec:
    """Load a spec file (or the workflow's default), apply CLI overrides, validate.

    Raises `SpecError` naming every bad field before anything is built.
    """
    if path is None:
        if workflow is None:
            raise SpecError("give a workflow or a --config file")
        known = ("param", "style", "auto", "region", "all")
        if workflow not in known:
            raise SpecError(f"unknown workflow {workflow!r}; choose from {', '.join(known)}")
        path = default_spec_path(workflow)
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SpecError(f"cannot read pipeline spec {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{p}: a pipeline spec must be a mapping")
    if workflow is not None:
        data["workflow"] = workflow
    data = deep_merge(data, overrides or {})
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_error(exc, str(p))) from None
    return spec


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of pipeline specs (written to manifests/pipeline-spec.schema.json)."""
    return PipelineSpec.model_json_schema()
