"""The official VeraRetouch interface: the parameter dict of the param prompt and the qwen_2 chat text.

Why: the dataset exists to train VeraRetouch, and trainers score the official release on it, so the
user turns must be the official ones byte for byte and the chat text must be what the official
`conv_qwen_2.get_prompt()` builds. These strings are an interface (like a file format), pinned to
OFFICIAL_REPO at OFFICIAL_COMMIT (Apache-2.0 code); the task prompts themselves live in the
versioned files data/prompts/{auto,style,param}_v2.txt, and tests/data/veraretouch/ holds copies of the
official strings that the tests compare against.
"""

from __future__ import annotations

from collections.abc import Mapping

from aether_data import params as P

OFFICIAL_REPO = "OpenVeraTeam/VeraRetouch"
OFFICIAL_COMMIT = "35427b81a20283c4a2305b83b12a7fe09e16a6b2"

IMAGE_TOKEN = "<image>"
QWEN2_SYSTEM = "<|im_start|>system\nYou are a helpful assistant."
QWEN2_ROLES: tuple[str, str] = ("<|im_start|>user\n", "<|im_start|>assistant\n")
QWEN2_SEP = "<|im_end|>\n"
"""conv_qwen_2 of llava/conversation.py (SeparatorStyle.QWEN_2): system, roles and separator."""


def organised_dict(params: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Slider-scale params → what the official `get_organized_dict` returns for our param.json.

    Three groups in the official order with all their keys, each value = official ±100 value / 100
    rounded to 3 decimals (as the official code computes it, negative zero included).
    """
    values = P.official_values(params)
    return {P.GROUP_TITLES[g]: {n: round(values[n] / 100.0, 3) for n in P.GROUP_PARAMS[g]} for g in P.GROUPS}


def param_instruction(params: Mapping[str, float]) -> str:
    """The param prompt's instruction in dict form: the organised dict printed as Python prints it."""
    return str(organised_dict(params))


def human_turn(prompt: str, has_image: bool) -> str:
    """The human turn of a conversation: "<image>\\n" + prompt, except for param (officially no image)."""
    return f"{IMAGE_TOKEN}\n{prompt}" if has_image else prompt


def conversation_text(
    prompt: str,
    completion: str | None = None,
    *,
    has_image: bool = True,
    system: str = "You are a helpful assistant.",
) -> str:
    """The qwen_2 chat text of one exchange, equal to the official `conv_qwen_2.get_prompt()`.

    completion None → ends with the assistant role (the generation prompt, as at inference);
    otherwise the completion and the separator "<|im_end|>\\n" follow (what the trainer labels).
    """
    text = (
        f"<|im_start|>system\n{system}{QWEN2_SEP}{QWEN2_ROLES[0]}{human_turn(prompt, has_image)}{QWEN2_SEP}"
    )
    text += QWEN2_ROLES[1]
    return text if completion is None else text + completion + QWEN2_SEP
