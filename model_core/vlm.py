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
checkpoint directory (``pretrained``): see `model_core.model_io` (building, saving, loading),
`model_core.vlm_config` (configuration) and `model_core.tokenizer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aether_data.contract import RETOUCH_TOKENS
from model_core.adaptor import RetouchAdaptor
from model_core.encoder import apply_masks
from model_core.renderer import RetouchRenderer
from model_core.vlm_config import ModelConfig, RendererSpec


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
