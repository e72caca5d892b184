"""Completion helpers shared by inference and DAPO: decoded text, group masks implied by a
completion, and retouch tokens forced onto a truncated generation."""

from __future__ import annotations

from collections.abc import Sequence

from aether_data.contract import INACTIVE_TEXT, CompletionFormatError, parse_completion
from aether_data.params import GROUPS
from model_core.vlm import VeraRetouch


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
