"""Reasoning SFT (paper Sec. 3.3): only the Multi-Modal LLM trains, tasks sampled at an equal ratio.

The LLM restarts from its pre-trained weights (`RSFTSpec.reset_llm`, paper: keeps align's
probability shift out of multi-task training) while the adaptor, projector and renderer come from
the align checkpoint and stay frozen; the loss is align's α·CE + L1, so the model learns the tagged
format, the reasoning → latent dependency and pixel-accurate latents at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from model_core.train.align import sft_step
from model_core.train.common import Stage
from model_core.train.config import RSFTSpec

LLM_PREFIXES: tuple[str, ...] = ("vlm.model.language_model.", "vlm.lm_head.")
"""State-dict prefixes of the LLM (Llava layout) kept at pre-trained values when `reset_llm`."""


def _roles(spec: RSFTSpec) -> list[str]:
    return ["llm"]


def _tasks(spec: RSFTSpec, available: Sequence[str]) -> list[str]:
    tasks = [t for t in (spec.tasks or available) if t in available]
    if not tasks:
        raise ValueError(f"rsft: no data for tasks {spec.tasks}; found {list(available)}")
    return tasks


def _reset(spec: RSFTSpec) -> list[str]:
    return list(LLM_PREFIXES) if spec.reset_llm else []


STAGE = Stage(name="rsft", roles=_roles, tasks=_tasks, train_step=sft_step, reset_prefixes=_reset)
