"""DAPO-AE pieces: dynamic sampling, clip-higher, token-level loss, rewards."""

from __future__ import annotations

import numpy as np
import torch

from aether_data.contract import INACTIVE_TEXT, RETOUCH_SEQUENCE
from model_core.train.config import DAPOSpec
from model_core.train.dapo import (
    aesthetic_reward,
    clipped_objective,
    dynamic_sampling_mask,
    format_reward,
    group_advantages,
    similarity_reward,
    token_level_loss,
    total_reward,
)

VALID = (
    "<plan_light_start>Strongly increase contrast (Contrast2012) by +0.310.<plan_light_end>\n"
    f"<plan_globalcolor_start>{INACTIVE_TEXT}<plan_globalcolor_end>\n"
    f"<plan_specificcolor_start>{INACTIVE_TEXT}<plan_specificcolor_end>\n"
    f"{RETOUCH_SEQUENCE}"
)


def test_dynamic_sampling_drops_all_equal_groups() -> None:
    rewards = torch.tensor(
        [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.2, 0.9, 0.2, 0.2], [0.5, 0.5, 0.5, 0.5 + 1e-3]]
    )
    assert dynamic_sampling_mask(rewards).tolist() == [False, False, True, True]
    adv = group_advantages(rewards)
    assert torch.allclose(adv[:2], torch.zeros(2, 4))  # why they are dropped: no signal
    assert torch.allclose(adv[2].mean(), torch.tensor(0.0), atol=1e-6) and adv[2, 1] > 0


def test_clip_higher_bounds_ratio_asymmetrically() -> None:
    eps_low, eps_high = 0.2, 0.28
    ratio = torch.linspace(0.0, 3.0, 301, requires_grad=True)
    pos = clipped_objective(ratio, torch.ones(301), eps_low, eps_high)
    neg = clipped_objective(ratio, -torch.ones(301), eps_low, eps_high)
    # positive advantage: gain capped at 1 + ε_high; negative: the penalty stops growing below 1 − ε_low
    assert torch.isclose(pos.max(), torch.tensor(1.0 + eps_high))
    assert torch.isclose(neg.min(), torch.tensor(-(3.0)))  # unclipped side: ratio > 1 is fully penalised
    assert torch.isclose(neg[ratio.detach() < 1 - eps_low].max(), torch.tensor(-(1.0 - eps_low)))
    (pos.sum() + neg.sum()).backward()
    g = ratio.grad
    r = ratio.detach()
    assert torch.all(g[(r > 1 + eps_high) & (r < 3.0)] == -1.0)  # only the negative branch pushes there
    assert torch.all(g[r < 1 - eps_low] == 1.0)  # only the positive branch pushes there
    assert (DAPOSpec().eps_low, DAPOSpec().eps_high) == (eps_low, eps_high)  # the trainer's defaults
    # the bounds really differ in the objective, not only in the arguments: a symmetric clip at
    # eps_low would cap the positive gain at 1.2, clip-higher lets it reach 1.28 (hand-worked)
    sym = clipped_objective(ratio.detach(), torch.ones(301), eps_low, eps_low)
    assert torch.isclose(sym.max(), torch.tensor(1.0 + eps_low))
    at = torch.tensor([0.5, 1.0, 1.25, 1.5])  # ratio 1.25 is inside [1 - 0.2, 1 + 0.28], clipped at 1.2
    assert torch.allclose(
        clipped_objective(at, torch.ones(4), eps_low, eps_high), torch.tensor([0.5, 1.0, 1.25, 1.28])
    )
    assert torch.allclose(
        clipped_objective(at, torch.ones(4), eps_low, eps_low), torch.tensor([0.5, 1.0, 1.2, 1.2])
    )
    assert torch.allclose(
        clipped_objective(at, -torch.ones(4), eps_low, eps_high), torch.tensor([-0.8, -1.0, -1.25, -1.5])
    )


def test_token_level_loss_weights_every_token_equally() -> None:
    # one long sequence (4 tokens, A=+1) and one short one (1 token, A=-1) at ratio 1
    adv = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0])
    logp = torch.zeros(5, requires_grad=True)
    loss, n_clipped = token_level_loss(logp, torch.zeros(5), adv, 0.2, 0.28)
    assert torch.isclose(loss, torch.tensor(-(4 - 1) / 5))  # sample-level averaging would give 0
    assert n_clipped == 0
    loss.backward()
    assert torch.allclose(logp.grad, -adv / 5)
    # micro-batches normalised by the whole batch's token count add up to the full loss
    parts = [token_level_loss(logp[:2], torch.zeros(2), adv[:2], 0.2, 0.28, 5)[0],
             token_level_loss(logp[2:], torch.zeros(3), adv[2:], 0.2, 0.28, 5)[0]]  # fmt: skip
    assert torch.isclose(parts[0] + parts[1], loss)
    _, n_clipped = token_level_loss(
        torch.log(torch.tensor([2.0, 0.5])), torch.zeros(2), torch.tensor([1.0, -1.0]), 0.2, 0.28
    )
    assert n_clipped == 2


def test_format_reward_is_one_only_on_a_valid_completion() -> None:
    assert format_reward(VALID, "param") == 1.0
    assert format_reward(VALID, "style") == 1.0
    assert format_reward(VALID, "auto") == 0.0  # auto needs key elements and problems
    assert format_reward(VALID[: -len(RETOUCH_SEQUENCE)], "param") == 0.0
    assert format_reward(VALID.replace("<plan_light_end>", ""), "param") == 0.0
    assert format_reward(VALID + "<retouch_light>", "param") == 0.0
    assert format_reward("", "param") == 0.0


def test_rewards_are_in_unit_interval() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    assert similarity_reward(a, a) == 1.0
    assert similarity_reward(a, 1 - a) < similarity_reward(a, np.clip(a + 0.05, 0, 1)) < 1.0
    assert 0.0 <= aesthetic_reward(a) <= 1.0
    spec = DAPOSpec()
    assert total_reward({"format": 1.0, "similarity": 0.5}, spec) == 1.5
    assert total_reward({"format": 0.0, "similarity": 0.5, "aesthetic": 0.5}, spec) == 1.0
