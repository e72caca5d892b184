"""VeraRetouch: a FastVLM-style VLM + task/retouch/reasoning tokens + Retouch Adaptor + Retouch Renderer.

Paper Sec. 3.3. The VLM reads the image (FastViTHD tokens) and the user prompt, and writes a tagged
completion that ends with three *retouch tokens* ``<retouch_light><retouch_color&temp>
<retouch_colormixer>``. The last-layer hidden state that *predicts* each retouch token (the one at
the position before it, as in the official implementation: a causal LM's state at t is what emits
token t+1) goes through the adaptor; the three latent blocks, multiplied by the per-group masks,
condition the renderer, which retouches the input image.

The backbone is any transformers image-text-to-text model with the Llava layout
(``.model.language_model``, ``get_image_features``, image placeholder tokens); ``fast_vlm`` models
are built from a config without any download (the ``tiny`` test config) or loaded from a local
checkpoint directory (``pretrained``). A trained model is a self-contained directory
(`save_model` / `load_model`): safetensors weights, the HF backbone config, the tokenizer, and our
config, so nothing is fetched at inference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from aether_data.contract import (
    INACTIVE_TEXT,
    RETOUCH_TOKENS,
    SPECIAL_TOKENS,
    CompletionFormatError,
    parse_completion,
)
from aether_data.io.atomic import AtomicFile
from aether_data.params import GROUPS
from model_core.adaptor import RetouchAdaptor
from model_core.encoder import apply_masks
from model_core.er_config import ERConfig, get_config
from model_core.renderer import RetouchRenderer

MODEL_FORMAT = "aether-veraretouch/1"
WEIGHTS_FILE = "model.safetensors"
CHAT_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""qwen_2 chat-template specials (pad / turn start / turn end = EOS)."""


# --------------------------------------------------------------------------------------------------
# configuration


class ModelConfig(BaseModel):
    """The VLM side: backbone, tokenizer, image preprocessing, adaptor width."""

    model_config = ConfigDict(extra="forbid")

    architecture: str = "fast_vlm"
    """transformers model type of the backbone; only ``fast_vlm`` can be built without `pretrained`."""
    pretrained: str | None = None
    """Local directory of an HF image-text-to-text checkpoint (e.g. FastVLM-0.5B); None = random init
    from `vision` / `text` (never downloads)."""
    vision: dict[str, Any] = Field(default_factory=dict)
    """TimmWrapperConfig kwargs of the vision tower (random-init builds only)."""
    text: dict[str, Any] = Field(default_factory=dict)
    """Qwen2Config kwargs of the LLM (random-init builds only; vocab_size is set from the tokenizer)."""
    tokenizer: str = "pretrained"
    """``pretrained`` (from `pretrained`), a tokenizer dir, or a built-in one for random models:
    ``bytes`` (byte-level) or ``template-bpe`` (1k-token BPE fitted on template-annotator text)."""
    image_token: str = "<image>"
    image_tokens: int | None = None
    """Visual tokens per image; None = probe the vision tower once at build time."""
    image_size: int = 1024
    image_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    system_prompt: str = "You are a helpful assistant."
    max_length: int = 4096
    """Longest prompt+completion in tokens; longer samples are skipped (never truncated: the retouch
    tokens are at the end)."""
    adaptor_bottleneck: int | None = None
    """Middle width of the adaptor; None = 3·hidden/2 (1344 for FastVLM-0.5B)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: str | None = "sdpa"


class RendererSpec(BaseModel):
    """Which Retouch Renderer to attach and at what size images are rendered during training."""

    model_config = ConfigDict(extra="forbid")

    er_config: str | dict[str, Any] = "paper"
    """ERConfig preset name (paper / cpu / tiny) or a dict of ERConfig fields."""
    checkpoint: str | None = None
    """E/R safetensors (from `aether train --stage er`); None = random init (tests only)."""
    render_size: int = 256
    """Side of the (input, target) pair used by the L1 image loss and rewards (per-pixel model: small
    images carry the colour mapping)."""

    def resolve(self) -> ERConfig:
        """The ERConfig this spec names."""
        if isinstance(self.er_config, dict):
            return ERConfig.from_dict(self.er_config)
        return get_config(self.er_config)


class GenerationSpec(BaseModel):
    """Decoding defaults for inference / evaluation."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = 1024
    temperature: float = 0.0
    """0 = greedy."""
    top_p: float = 1.0


# --------------------------------------------------------------------------------------------------
# tokenizer


TEMPLATE_BPE_VOCAB = 1024


TOKENIZER_CORPUS = Path(__file__).resolve().parent / "configs" / "tokenizer_corpus.json"
"""Text in the dataset's register (template-annotator prompts, instructions and completions) that the
`template-bpe` tokenizer is fitted on. Generated by ``python -m aether_data.annotate.corpus`` and kept
as a file so the trainer never imports the annotators; a test keeps it equal to the generator's output."""


@cache
def template_corpus() -> tuple[str, ...]:
    """The stored tokenizer corpus (see :data:`TOKENIZER_CORPUS`)."""
    return tuple(json.loads(TOKENIZER_CORPUS.read_text(encoding="utf-8")))


def byte_tokenizer(merges_from: Sequence[str] | None = None, vocab_size: int = TEMPLATE_BPE_VOCAB) -> Any:
    """A deterministic byte-level BPE tokenizer for random tiny models, built in code (no download).

    With `merges_from=None` it has the 256 byte symbols only; otherwise BPE merges are fitted on
    that corpus (the `template-bpe` tokenizer: ~4 characters per token on our completions, which
    makes tiny-model steps ~10× cheaper than bytes). Every UTF-8 string round-trips either way.
    The chat specials, image placeholder and VeraRetouch tags are added by `add_special_tokens`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    if merges_from is None:
        tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False, special_tokens=[]
        )
        tok.train_from_iterator(list(merges_from), trainer)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def add_special_tokens(tokenizer: Any, image_token: str) -> int:
    """Register chat specials, the image placeholder and every VeraRetouch tag as single tokens.

    Returns how many were new. Tags must be atomic: the format reward and the latent extraction
    look for their ids, and a tag split into sub-words could be half-generated.
    """
    wanted = [*CHAT_TOKENS, image_token, *SPECIAL_TOKENS]
    vocab = tokenizer.get_vocab()
    new = [t for t in wanted if t not in vocab]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    if tokenizer.eos_token is None:
        tokenizer.eos_token = "<|im_end|>"
    for t in wanted:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"tokenizer splits special token {t!r} into {ids}")
    return len(new)


# --------------------------------------------------------------------------------------------------
# model


@dataclass
class VeraOutput:
    """Outputs of one teacher-forced pass."""

    hidden: torch.Tensor
    """(B, T, H) last-layer hidden states."""
    logits: torch.Tensor | None
    """(N, V) logits at the selected positions (or (B, T, V) when all were asked for)."""
    z: torch.Tensor | None = None
    """(B, 3·d) masked latents."""
    rendered: torch.Tensor | None = None
    """(B, 3, r, r) renderer output."""


class VeraRetouch(nn.Module):
    """The full model; `forward` is one teacher-forced pass over prompt + completion."""

    def __init__(
        self,
        vlm: nn.Module,
        tokenizer: Any,
        renderer: RetouchRenderer,
        config: ModelConfig,
        renderer_spec: RendererSpec,
        image_tokens: int,
    ) -> None:
        super().__init__()
        self.vlm = vlm
        self.tokenizer = tokenizer
        self.renderer = renderer
        self.config = config
        self.renderer_spec = renderer_spec
        self.image_tokens = int(image_tokens)
        hidden = int(self.language_model.config.hidden_size)
        self.adaptor = RetouchAdaptor(hidden, renderer.config.latent_dim, config.adaptor_bottleneck)
        ids = tokenizer.convert_tokens_to_ids
        self.retouch_ids: tuple[int, int, int] = tuple(int(ids(t)) for t in RETOUCH_TOKENS)  # type: ignore[assignment]
        self.image_token_id = int(ids(config.image_token))
        self.im_end_id = int(ids("<|im_end|>"))
        self.im_start_id = int(ids("<|im_start|>"))
        self.pad_id = int(tokenizer.pad_token_id)
        self.source_dir: Path | None = None
        """The model dir this was loaded from (None for a fresh model)."""

    # ---- sub-modules (named by role, for freezing per stage) -------------------------------------

    @property
    def language_model(self) -> nn.Module:
        """The decoder without LM head (the paper's "Multi-Modal LLM" with `lm_head`)."""
        inner = getattr(self.vlm, "model", self.vlm)
        lm = getattr(inner, "language_model", None)
        if lm is None:
            raise AttributeError(f"{type(self.vlm).__name__} has no .model.language_model (not Llava-style)")
        return lm

    @property
    def lm_head(self) -> nn.Module:
        return self.vlm.get_output_embeddings()

    def groups(self) -> dict[str, list[nn.Module]]:
        """Modules per role: vision, projector, llm, adaptor, renderer."""
        inner = getattr(self.vlm, "model", self.vlm)
        vision = [m for m in (getattr(inner, "vision_tower", None),) if m is not None]
        proj = [m for m in (getattr(inner, "multi_modal_projector", None),) if m is not None]
        return {
            "vision": vision,
            "projector": proj,
            "llm": [self.language_model, self.lm_head],
            "adaptor": [self.adaptor],
            "renderer": [self.renderer],
        }

    def set_trainable(self, roles: Sequence[str]) -> list[nn.Parameter]:
        """Freeze everything, then unfreeze `roles`; returns the trainable parameters (deduplicated,
        so tied embeddings appear once)."""
        groups = self.groups()
        unknown = set(roles) - set(groups)
        if unknown:
            raise ValueError(f"unknown module roles {sorted(unknown)}; expected {sorted(groups)}")
        for p in self.parameters():
            p.requires_grad_(False)
        seen: set[int] = set()
        out: list[nn.Parameter] = []
        for role in roles:
            for mod in groups[role]:
                for p in mod.parameters():
                    p.requires_grad_(True)
                    if id(p) not in seen:
                        seen.add(id(p))
                        out.append(p)
        return out

    def train(self, mode: bool = True) -> VeraRetouch:
        """Like nn.Module.train, but fully frozen parts stay in eval mode: a frozen FastViT must not
        update its BatchNorm running statistics (or apply dropout) while the LLM trains."""
        super().train(mode)
        if mode:
            for mods in self.groups().values():
                for mod in mods:
                    if not any(p.requires_grad for p in mod.parameters()):
                        mod.eval()
        return self

    # ---- embedding -------------------------------------------------------------------------------

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) → (n, image_tokens, H); the vision tower runs without autograd when frozen."""
        inner = getattr(self.vlm, "model", self.vlm)
        tower = getattr(inner, "vision_tower", None)
        proj = getattr(inner, "multi_modal_projector", None)
        if self.config.architecture == "fast_vlm" and tower is not None and proj is not None:
            frozen = not any(p.requires_grad for p in tower.parameters())
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                feat = tower(pixel_values, return_dict=True).last_hidden_state
            if feat.ndim == 4:
                feat = feat.flatten(2).permute(0, 2, 1)
            return proj(feat)
        out = self.vlm.get_image_features(pixel_values=pixel_values)
        feats = getattr(out, "pooler_output", out)
        if isinstance(feats, (list, tuple)):
            feats = torch.stack(list(feats))
        return feats

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with image features scattered over the placeholder tokens (row order)."""
        emb = self.vlm.get_input_embeddings()(input_ids)
        placeholder = input_ids == self.image_token_id
        n_slots = int(placeholder.sum())
        if pixel_values is None or pixel_values.shape[0] == 0:
            if n_slots:
                raise ValueError(f"{n_slots} image placeholder tokens but no pixel_values")
            return emb
        feats = self.image_features(pixel_values.to(emb.dtype)).to(emb.dtype)
        if n_slots != feats.shape[0] * feats.shape[1]:
            raise ValueError(
                f"image placeholders ({n_slots}) != features ({feats.shape[0]}×{feats.shape[1]}); "
                "each image needs exactly `image_tokens` placeholders"
            )
        return emb.masked_scatter(placeholder.unsqueeze(-1).expand_as(emb), feats.reshape(-1))

    # ---- retouch-token hidden states ------------------------------------------------------------

    def retouch_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, 3) position of the last occurrence of each retouch token per row (ValueError if absent)."""
        cols = []
        t = input_ids.shape[1]
        for tok, tid in zip(RETOUCH_TOKENS, self.retouch_ids):
            hit = input_ids == tid
            if not bool(hit.any(dim=1).all()):
                raise ValueError(f"a sequence has no {tok} token")
            cols.append(t - 1 - hit.flip(1).to(torch.int8).argmax(dim=1))
        pos = torch.stack(cols, dim=1)
        if bool((pos < 1).any()):
            raise ValueError("a retouch token at position 0 has no predecessor")
        return pos

    def retouch_hidden(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, 3, H): the hidden state at the position *before* each retouch token (the one that
        predicts it)."""
        pos = self.retouch_positions(input_ids) - 1
        idx = pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        return hidden.gather(1, idx)

    def latents(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, masks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 3·d) renderer latents, each group block multiplied by its mask (Eq. 2)."""
        z = self.adaptor(self.retouch_hidden(hidden, input_ids).float())
        if masks is not None:
            z = apply_masks(z, masks.to(z.dtype))
        return z

    # ---- passes ----------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        logit_positions: torch.Tensor | None = None,
        all_logits: bool = False,
        masks: torch.Tensor | None = None,
        render_in: torch.Tensor | None = None,
        with_latents: bool = True,
    ) -> VeraOutput:
        """Teacher-forced pass.

        `logit_positions` (B, T) bool selects where logits are computed (the lm_head over the whole
        sequence of a 150k vocabulary would dominate memory); `render_in` (B,3,r,r) is rendered with
        the latents when given. Position ids follow the attention mask, so left- and right-padded
        batches give the same states.
        """
        emb = self.embed(input_ids, pixel_values)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.language_model(
            inputs_embeds=emb, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        hidden = out.last_hidden_state
        logits = None
        if all_logits:
            logits = self.lm_head(hidden)
        elif logit_positions is not None:
            logits = self.lm_head(hidden[logit_positions])
        z = rendered = None
        if with_latents:
            z = self.latents(hidden, input_ids, masks)
            if render_in is not None:
                rendered = self.renderer(render_in.float(), z)
        return VeraOutput(hidden=hidden, logits=logits, z=z, rendered=rendered)

    @torch.no_grad()
    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        pixel_values: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        num_return_sequences: int = 1,
    ) -> list[list[int]]:
        """Sample completions (token ids, up to and including the stop token) for left-padded prompts.

        Stops at ``<retouch_colormixer>`` (the last token the renderer needs) or ``<|im_end|>``.
        Rows are ordered prompt-major: row i·G + g is sample g of prompt i.
        """
        device = next(self.parameters()).device
        width = max(len(p) for p in prompt_ids)
        ids = torch.full((len(prompt_ids), width), self.pad_id, dtype=torch.long)
        att = torch.zeros_like(ids)
        for i, p in enumerate(prompt_ids):
            ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            att[i, width - len(p) :] = 1
        kwargs: dict[str, Any] = {
            "input_ids": ids.to(device),
            "attention_mask": att.to(device),
            "max_new_tokens": int(max_new_tokens),
            "eos_token_id": [self.retouch_ids[2], self.im_end_id],
            "pad_token_id": self.pad_id,
            "num_return_sequences": int(num_return_sequences),
            # tokens that must never be generated: an extra image placeholder would break the pass
            "suppress_tokens": sorted({self.image_token_id, self.pad_id, self.im_start_id}),
        }
        if pixel_values is not None:
            kwargs["pixel_values"] = pixel_values.to(device=device, dtype=self.vlm.dtype)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0)
        else:
            kwargs.update(do_sample=False)
        was_training = self.training
        self.eval()
        try:
            out = self.vlm.generate(**kwargs)
        finally:
            self.train(was_training)
        gen = out[:, width:].tolist()
        stops = {self.retouch_ids[2], self.im_end_id}
        result = []
        for row in gen:
            keep: list[int] = []
            for t in row:
                keep.append(int(t))
                if t in stops:
                    break
            while keep and keep[-1] == self.pad_id and self.pad_id not in stops:
                keep.pop()
            result.append(keep)
        return result


def masks_from_completion(text: str, workflow: str) -> list[int]:
    """Group masks implied by a completion: a group whose plan is INACTIVE_TEXT is masked off (the
    data's convention), everything on when the text does not parse (let the latents decide)."""
    try:
        parsed = parse_completion(text, workflow)
    except CompletionFormatError:
        return [1, 1, 1]
    return [0 if parsed.plans[g] == INACTIVE_TEXT else 1 for g in GROUPS]


def completion_text(model: VeraRetouch, ids: Sequence[int]) -> str:
    """Decoded completion without the closing ``<|im_end|>`` / padding."""
    keep = [int(t) for t in ids if int(t) not in (model.im_end_id, model.pad_id)]
    return model.tokenizer.decode(keep, skip_special_tokens=False)


def force_retouch(model: VeraRetouch, ids: Sequence[int]) -> tuple[list[int], int]:
    """Completion ids that end with the three retouch tokens: appended when the model did not emit
    them in order at the end (truncated or malformed generation), so latents always exist.

    Padding is dropped; everything generated (an early ``<|im_end|>`` included) is kept, so the
    first `len(ids)` tokens are exactly the policy's actions. Returns (ids, number forced).
    """
    out = [int(t) for t in ids if int(t) != model.pad_id]
    tail = list(model.retouch_ids)
    if out[-3:] == tail:
        return out, 0
    return out + tail, len(tail)


# --------------------------------------------------------------------------------------------------
# building, saving, loading


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _build_backbone(cfg: ModelConfig, tokenizer: Any, hf_config_dir: Path | None) -> nn.Module:
    """The HF backbone: from a saved HF config (model dirs), a local checkpoint, or a fresh config."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    kwargs: dict[str, Any] = {}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if hf_config_dir is not None:
        hf_cfg = AutoConfig.from_pretrained(str(hf_config_dir))
        return AutoModelForImageTextToText.from_config(hf_cfg, **kwargs)
    if cfg.pretrained:
        return AutoModelForImageTextToText.from_pretrained(
            cfg.pretrained, dtype=_torch_dtype(cfg.dtype), local_files_only=True, **kwargs
        )
    if cfg.architecture != "fast_vlm":
        raise ValueError(f"architecture {cfg.architecture!r} needs `pretrained` (a local checkpoint dir)")
    from transformers import FastVlmConfig, FastVlmForConditionalGeneration, Qwen2Config, TimmWrapperConfig

    vision = {"architecture": "fastvit_mci3", "do_pooling": True, "global_pool": "avg", **cfg.vision}
    text = {**cfg.text, "vocab_size": len(tokenizer)}
    hf_cfg = FastVlmConfig(
        vision_config=TimmWrapperConfig(**vision),
        text_config=Qwen2Config(**text),
        image_token_index=int(tokenizer.convert_tokens_to_ids(cfg.image_token)),
        **kwargs,
    )
    return FastVlmForConditionalGeneration(hf_cfg)


def _load_tokenizer(cfg: ModelConfig, tokenizer_dir: Path | None) -> Any:
    from transformers import AutoTokenizer

    if tokenizer_dir is not None:
        return AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    if cfg.tokenizer == "bytes":
        return byte_tokenizer()
    if cfg.tokenizer == "template-bpe":
        return byte_tokenizer(template_corpus())
    source = cfg.pretrained if cfg.tokenizer == "pretrained" else cfg.tokenizer
    if not source:
        raise ValueError("tokenizer: 'pretrained' needs model.pretrained; use 'bytes' or a directory")
    return AutoTokenizer.from_pretrained(source, local_files_only=True)


def _probe_image_tokens(model: VeraRetouch, size: int) -> int:
    with torch.no_grad():
        dev = next(model.parameters()).device
        dummy = torch.zeros(1, 3, size, size, device=dev, dtype=model.vlm.dtype)
        return int(model.image_features(dummy).shape[1])


def build_model(
    cfg: ModelConfig,
    renderer_spec: RendererSpec,
    seed: int = 0,
    *,
    _hf_config_dir: Path | None = None,
    _tokenizer_dir: Path | None = None,
    _load_renderer: bool = True,
) -> VeraRetouch:
    """A fresh VeraRetouch: backbone (random or `pretrained`), tokens added, new adaptor, renderer
    (from `renderer_spec.checkpoint` when given). `seed` fixes every random initialisation."""
    torch.manual_seed(seed)
    tokenizer = _load_tokenizer(cfg, _tokenizer_dir)
    add_special_tokens(tokenizer, cfg.image_token)
    vlm = _build_backbone(cfg, tokenizer, _hf_config_dir)
    vocab = vlm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        vlm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if _hf_config_dir is None and cfg.pretrained:
        image_id = int(tokenizer.convert_tokens_to_ids(cfg.image_token))
        vlm.config.image_token_id = image_id
    er_cfg = renderer_spec.resolve()
    if _load_renderer and renderer_spec.checkpoint:
        from model_core.er_io import load_er_checkpoint

        _, renderer, loaded_cfg = load_er_checkpoint(renderer_spec.checkpoint)
        if loaded_cfg.total_latent != er_cfg.total_latent:
            raise ValueError(
                f"renderer checkpoint latent {loaded_cfg.total_latent} != config {er_cfg.total_latent}"
            )
    else:
        renderer = RetouchRenderer(er_cfg)
    model = VeraRetouch(vlm, tokenizer, renderer, cfg, renderer_spec, image_tokens=cfg.image_tokens or 0)
    if not cfg.image_tokens:
        model.image_tokens = _probe_image_tokens(model, cfg.image_size)
    return model.float() if cfg.dtype == "float32" else model


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of every tensor (tied weights are copied, so safetensors accepts them)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def atomic_save_file(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str]) -> Path:
    """safetensors write via temp file + rename: a crash never leaves a torn file."""
    with AtomicFile(path) as f:
        save_file(dict(tensors), str(f.path), metadata=dict(metadata))
    return path


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and metadata of a safetensors file."""
    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = dict(f.metadata() or {})
        for k in f.keys():
            out[k] = f.get_tensor(k)
    return out, meta


def save_model(model: VeraRetouch, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a self-contained model dir: weights, HF backbone config, tokenizer, our config."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": MODEL_FORMAT,
        "model": model.config.model_dump_json(),
        "renderer": model.renderer_spec.model_dump_json(),
        "er_config": model.renderer.config.to_json(),
        "image_tokens": str(model.image_tokens),
    }
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    model.vlm.config.save_pretrained(str(d / "vlm"))
    model.tokenizer.save_pretrained(str(d / "tokenizer"))
    return atomic_save_file(state_tensors(model), d / WEIGHTS_FILE, meta)


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a model dir or a training out dir (whose final model is in ``model/``)."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / WEIGHTS_FILE).is_file():
            return cand
    raise FileNotFoundError(f"{p}: no {WEIGHTS_FILE} (expected a model dir or a training out dir)")


def load_state_strict(model: nn.Module, tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Strict load with an error naming missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    bad = sorted(k for k in set(own) & set(tensors) if tuple(own[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or bad:
        raise ValueError(
            f"{what}: missing {missing[:8]}, unexpected {unexpected[:8]}, shape mismatch {bad[:8]}"
        )
    model.load_state_dict(dict(tensors), strict=True)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> VeraRetouch:
    """Rebuild a saved model (no network, no `pretrained` needed) in eval mode."""
    d = resolve_model_dir(path)
    tensors, meta = read_tensors(d / WEIGHTS_FILE)
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{d}: not a VeraRetouch model (format {meta.get('format')!r})")
    cfg = ModelConfig.model_validate_json(meta["model"])
    spec = RendererSpec.model_validate_json(meta["renderer"])
    spec = spec.model_copy(update={"er_config": json.loads(meta["er_config"]), "checkpoint": None})
    cfg = cfg.model_copy(update={"image_tokens": int(meta["image_tokens"])})
    model = build_model(
        cfg, spec, _hf_config_dir=d / "vlm", _tokenizer_dir=d / "tokenizer", _load_renderer=False
    )
    load_state_strict(model, tensors, str(d / WEIGHTS_FILE))
    model.source_dir = d
    return model.to(device).eval()


def model_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of a saved model (stage, step, config JSON, ...)."""
    d = resolve_model_dir(path)
    with safe_open(str(d / WEIGHTS_FILE), framework="pt", device="cpu") as f:
        return dict(f.metadata() or {})
