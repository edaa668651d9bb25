"""RLVR objectives against independent references: every loss against a plain-Python loop over tokens on a tiny
batch (B = 4, T = 3, G = 2 or 4), on-policy gradients against their closed forms on a tabular softmax (GRPO, PACS,
ROVER), exact expectations of PSR / NSR / W-REINFORCE by enumerating all groups, clipping, padding and input checks.

Formulas: /work/shared/notes/rlvr.md §1 and the module docstring of :mod:`lab.rlvr.objectives`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from lab.rlvr.objectives import (
    OBJECTIVES,
    PolicyBatch,
    class_balance_weights,
    generalized_advantages,
    group_advantages,
    leave_one_out,
    needs,
)

DTYPE = torch.float64
MASK = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=float)
LENGTHS = MASK.sum(axis=1).astype(int)
OLD_LOGP = np.array([[-0.5, -1.2, -0.3], [-2.0, -0.7, 0], [-1.0, 0, 0], [-0.4, -0.9, -1.6]])
# log-ratios: rho = 1.105 0.741 1.492 | 0.779 1.051 | 1.350 | 0.905 1.221 0.607 (some outside every clip range)
LOG_RATIO = np.array([[0.1, -0.3, 0.4], [-0.25, 0.05, 0], [0.3, 0, 0], [-0.1, 0.2, -0.5]])
REF_SHIFT = np.array([[0.2, -0.1, 0.05], [0.3, -0.2, 0], [-0.4, 0, 0], [0.1, 0.15, -0.2]])
VALUES = np.array([[0.3, 0.5, 0.8], [0.2, 0.1, 0], [0.6, 0, 0], [0.4, 0.45, 0.7]])
VALUE_SHIFT = np.array([[0.05, -0.3, 0.1], [0.25, 0.0, 0], [-0.1, 0, 0], [0.0, 0.4, -0.05]])
MEAN_LOGP = np.array([[-2.5, -2.7, -2.2], [-2.9, -2.4, 0], [-2.6, 0, 0], [-2.3, -2.8, -2.1]])
MEAN_SHIFT = np.array([[0.1, -0.2, 0.3], [0.05, 0.15, 0], [-0.1, 0, 0], [0.2, -0.05, 0.1]])
CASES = {2: np.array([1.0, 0.0, 0.0, 1.0]), 4: np.array([0.0, 1.0, 0.0, 0.0])}  # group size -> rewards
GARBAGE = (float("nan"), float("inf"), -float("inf"), 1e6, -1e6)


def tiny_arrays():
    """The tiny batch as numpy arrays (padded entries are 0 here)."""
    return {
        "logp": OLD_LOGP + LOG_RATIO,
        "old_logp": OLD_LOGP,
        "ref_logp": OLD_LOGP + REF_SHIFT,
        "values": VALUES,
        "old_values": VALUES + VALUE_SHIFT,
        "mean_logp": MEAN_LOGP,
        "old_mean_logp": MEAN_LOGP + MEAN_SHIFT,
    }


def tiny_batch(group_size, *, rewards=None, padding=None, arrays=None):
    """A PolicyBatch of the tiny arrays, logp and values as grad leaves; ``padding`` fills the padded entries."""
    arrays = tiny_arrays() if arrays is None else arrays
    tensors = {}
    for index, (name, array) in enumerate(arrays.items()):
        array = np.array(array, dtype=float)
        if padding is not None:  # a different mix of garbage in every tensor
            array[MASK == 0] = np.roll(padding, index)[: int((MASK == 0).sum())]
        tensors[name] = torch.tensor(array, dtype=DTYPE, requires_grad=name in ("logp", "values"))
    rewards = CASES[group_size] if rewards is None else rewards
    return PolicyBatch(
        mask=torch.tensor(MASK, dtype=DTYPE),
        rewards=torch.tensor(rewards, dtype=DTYPE),
        group_size=group_size,
        **tensors,
    )


# ---------------------------------------------------------------------------------------------------------------
# Independent references: loops over rows and tokens, numpy only


def clip_term(ratio, advantage, eps_low, eps_high):
    return -min(ratio * advantage, min(max(ratio, 1 - eps_low), 1 + eps_high) * advantage)


def k3(logp, ref):
    return math.exp(ref - logp) - (ref - logp) - 1


def groups(rewards, group_size):
    return [range(start, start + group_size) for start in range(0, len(rewards), group_size)]


def grpo_advantages(rewards, group_size, scale):
    advantages = np.zeros(len(rewards))
    for rows in groups(rewards, group_size):
        block = rewards[list(rows)]
        for i in rows:
            advantages[i] = rewards[i] - block.mean()
            if scale:
                advantages[i] /= np.std(block, ddof=1) + 1e-4
    return advantages


def reference_grpo_family(arrays, rewards, group_size, *, scale, eps_low, eps_high, beta, normaliser):
    advantages = grpo_advantages(rewards, group_size, scale)
    row_sums = []
    for i, length in enumerate(LENGTHS):
        total = 0.0
        for t in range(length):
            ratio = math.exp(arrays["logp"][i, t] - arrays["old_logp"][i, t])
            total += clip_term(ratio, advantages[i], eps_low, eps_high)
            total += beta * k3(arrays["logp"][i, t], arrays["ref_logp"][i, t])
        row_sums.append(total)
    if normaliser == "sequence":
        return np.mean([row_sums[i] / LENGTHS[i] for i in range(len(LENGTHS))])
    if normaliser == "token":
        return sum(row_sums) / LENGTHS.sum()
    return sum(row_sums) / normaliser


def reference_grpo(arrays, rewards, group_size, *, epsilon_low=0.2, epsilon_high=0.2, beta=0.0):
    return reference_grpo_family(
        arrays,
        rewards,
        group_size,
        scale=True,
        eps_low=epsilon_low,
        eps_high=epsilon_high,
        beta=beta,
        normaliser="sequence",
    )


def reference_dr_grpo(arrays, rewards, group_size, *, epsilon_low=0.2, epsilon_high=0.2, beta=0.0, max_length=3):
    return reference_grpo_family(
        arrays,
        rewards,
        group_size,
        scale=False,
        eps_low=epsilon_low,
        eps_high=epsilon_high,
        beta=beta,
        normaliser=len(rewards) * max_length,
    )


def reference_dapo(arrays, rewards, group_size, *, epsilon_low=0.2, epsilon_high=0.28):
    return reference_grpo_family(
        arrays,
        rewards,
        group_size,
        scale=True,
        eps_low=epsilon_low,
        eps_high=epsilon_high,
        beta=0.0,
        normaliser="token",
    )


def sequence_sum(array, i):
    return sum(array[i, t] for t in range(LENGTHS[i]))


def reference_rloo(arrays, rewards, group_size, *, epsilon_low=0.2, epsilon_high=0.2, beta=0.0):
    shaped = [rewards[i] - beta * sequence_sum(arrays["old_logp"] - arrays["ref_logp"], i) for i in range(4)]
    losses = []
    for rows in groups(rewards, group_size):
        for i in rows:
            baseline = np.mean([shaped[j] for j in rows if j != i])
            ratio = math.exp(sequence_sum(arrays["logp"] - arrays["old_logp"], i))
            losses.append(clip_term(ratio, shaped[i] - baseline, epsilon_low, epsilon_high))
    return np.mean(losses)


def reference_ppo(
    arrays,
    rewards,
    group_size,
    *,
    epsilon_low=0.2,
    epsilon_high=0.2,
    gamma=1.0,
    lam=0.95,
    kl_coef=0.0,
    value_clip=0.2,
    value_coef=0.1,
    whiten=True,
):
    advantages, returns, tokens = {}, {}, []
    for i, n in enumerate(LENGTHS):
        old_values = arrays["old_values"][i]
        token_rewards = [-kl_coef * (arrays["old_logp"][i, t] - arrays["ref_logp"][i, t]) for t in range(n)]
        token_rewards[n - 1] += rewards[i]
        deltas = [
            token_rewards[t] + gamma * (old_values[t + 1] if t + 1 < n else 0.0) - old_values[t] for t in range(n)
        ]
        for t in range(n):
            advantages[i, t] = sum((gamma * lam) ** k * deltas[t + k] for k in range(n - t))
            returns[i, t] = advantages[i, t] + old_values[t]
            tokens.append((i, t))
    if whiten:
        raw = np.array([advantages[key] for key in tokens])
        scale = math.sqrt(np.var(raw, ddof=1) + 1e-8)
        advantages = {key: (advantages[key] - raw.mean()) / scale for key in tokens}
    policy, value = [], []
    for i, t in tokens:
        ratio = math.exp(arrays["logp"][i, t] - arrays["old_logp"][i, t])
        policy.append(clip_term(ratio, advantages[i, t], epsilon_low, epsilon_high))
        v, v_old = arrays["values"][i, t], arrays["old_values"][i, t]
        v_clipped = v_old + min(max(v - v_old, -value_clip), value_clip)
        value.append(max((v - returns[i, t]) ** 2, (v_clipped - returns[i, t]) ** 2))
    return np.mean(policy) + value_coef * 0.5 * np.mean(value)


def balanced_weights(rewards, group_size):
    weights = np.ones(len(rewards))
    for rows in groups(rewards, group_size):
        block = rewards[list(rows)]
        if len(set(block)) == 2:
            classes = np.array([0.0, 1.0])
            per_class = compute_class_weight("balanced", classes=classes, y=block)
            weights[list(rows)] = per_class[block.astype(int)]
    return weights


def reference_pacs(arrays, rewards, group_size, *, beta=1.0, balance_classes=True):
    scores = [beta * sequence_sum(arrays["logp"] - arrays["old_logp"], i) for i in range(4)]
    weights = balanced_weights(rewards, group_size) if balance_classes else np.ones(4)
    losses = []
    for rows in groups(rewards, group_size):
        for i in rows:
            logit = scores[i] - np.mean([scores[j] for j in rows if j != i])
            p = 1 / (1 + math.exp(-logit))
            losses.append(-weights[i] * (rewards[i] * math.log(p) + (1 - rewards[i]) * math.log(1 - p)))
    return np.mean(losses)


def reference_decomposed(arrays, rewards, advantage_of, keep, eps_low, eps_high):
    total, count = 0.0, 0
    for i, n in enumerate(LENGTHS):
        if not keep(rewards[i]):
            continue
        for t in range(n):
            ratio = math.exp(arrays["logp"][i, t] - arrays["old_logp"][i, t])
            total += clip_term(ratio, advantage_of(rewards[i]), eps_low, eps_high)
            count += 1
    return total / count


def reference_psr(arrays, rewards, group_size, *, epsilon_low=0.2, epsilon_high=0.2):
    return reference_decomposed(arrays, rewards, lambda r: 1.0, lambda r: r == 1, epsilon_low, epsilon_high)


def reference_nsr(arrays, rewards, group_size, *, epsilon_low=0.2, epsilon_high=0.2):
    return reference_decomposed(arrays, rewards, lambda r: -1.0, lambda r: r == 0, epsilon_low, epsilon_high)


def reference_w_reinforce(arrays, rewards, group_size, *, positive_weight=0.1, epsilon_low=0.2, epsilon_high=0.2):
    return reference_decomposed(
        arrays, rewards, lambda r: positive_weight if r == 1 else -1.0, lambda r: True, epsilon_low, epsilon_high
    )


def reference_rover(arrays, rewards, group_size, *, rho=1.0):
    centred = grpo_advantages(rewards, group_size, scale=False)
    total = 0.0
    for i, n in enumerate(LENGTHS):
        for t in range(n):
            q = rho * (arrays["logp"][i, t] - arrays["old_logp"][i, t])
            next_value = rho * (arrays["mean_logp"][i, t + 1] - arrays["old_mean_logp"][i, t + 1]) if t + 1 < n else 0
            total += (q - centred[i] - next_value) ** 2
    return total / LENGTHS.sum()


REFERENCES = {
    "grpo": (reference_grpo, {"beta": 0.04, "epsilon_high": 0.28}),
    "dr_grpo": (reference_dr_grpo, {"beta": 0.04, "max_length": 5}),
    "dapo": (reference_dapo, {"epsilon_low": 0.1, "epsilon_high": 0.4}),
    "rloo": (reference_rloo, {"beta": 0.05}),
    "ppo": (reference_ppo, {"gamma": 0.9, "lam": 0.8, "kl_coef": 0.05, "value_clip": 0.1, "whiten": False}),
    "pacs": (reference_pacs, {"beta": 2.0, "balance_classes": False}),
    "psr": (reference_psr, {"epsilon_low": 0.3, "epsilon_high": 0.1}),
    "nsr": (reference_nsr, {"epsilon_low": 0.1, "epsilon_high": 0.3}),
    "w_reinforce": (reference_w_reinforce, {"positive_weight": 0.5}),
    "rover": (reference_rover, {"rho": 0.5}),
}


def test_the_registry_holds_the_ten_objectives_and_says_which_tensors_each_needs():
    assert set(OBJECTIVES) == set(REFERENCES)
    assert needs("grpo") == needs("dapo") == needs("pacs") == needs("psr") == set()
    assert needs("grpo", beta=0.04) == needs("dr_grpo", beta=0.1) == needs("rloo", beta=0.05) == {"ref_logp"}
    assert needs("ppo") == {"values", "old_values"}
    assert needs("ppo", kl_coef=0.01) == {"values", "old_values", "ref_logp"}
    assert needs("rover") == {"mean_logp", "old_mean_logp"}
    with pytest.raises(ValueError, match="^name"):
        needs("reinforce")


@pytest.mark.parametrize("group_size", [2, 4])
@pytest.mark.parametrize("custom", [False, True], ids=["defaults", "custom"])
@pytest.mark.parametrize("name", list(REFERENCES))
def test_each_loss_equals_a_token_loop_reference_on_a_tiny_batch(name, custom, group_size):
    reference, hyperparameters = REFERENCES[name]
    hyperparameters = hyperparameters if custom else {}
    output = OBJECTIVES[name](tiny_batch(group_size), **hyperparameters)
    expected = reference(tiny_arrays(), CASES[group_size], group_size, **hyperparameters)
    assert output.loss.ndim == 0
    assert output.loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-14)
    stats = output.stats
    assert all(type(value) is float for value in stats.values())
    assert stats["loss"] == pytest.approx(expected, rel=1e-12, abs=1e-14)
    tokens = MASK == 1
    assert stats["entropy_proxy"] == pytest.approx(-tiny_arrays()["logp"][tokens].mean(), rel=1e-12)
    assert stats["approx_kl"] == pytest.approx(-LOG_RATIO[tokens].mean(), rel=1e-12)
    assert stats["kl_to_ref"] == pytest.approx(
        np.mean(
            [
                k3(lp, lp - d + r)
                for lp, d, r in zip(tiny_arrays()["logp"][tokens], LOG_RATIO[tokens], REF_SHIFT[tokens], strict=True)
            ]
        ),
        rel=1e-12,
    )
    assert stats["reward_mean"] == CASES[group_size].mean()


def test_hand_values_grpo_advantage_dr_grpo_normaliser_pacs_on_policy_and_rover_shift():
    # GRPO: rewards (1, 0) -> mean 1/2, Bessel std sqrt(1/2) -> A = +-0.5 / (0.70711 + 1e-4); (0, 1, 0, 0) with G = 4
    np.testing.assert_allclose(
        group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=DTYPE), 2).numpy(),
        np.array([1, -1, -1, 1]) * 0.5 / (math.sqrt(0.5) + 1e-4),
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        group_advantages(torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=DTYPE), 4).numpy(),
        np.array([-0.25, 0.75, -0.25, -0.25]) / (0.5 + 1e-4),  # std = sqrt((3/16 + 9/16) / 3) = 1/2
        rtol=1e-14,
    )
    np.testing.assert_allclose(
        leave_one_out(torch.tensor([3.0, 5.0, 7.0, 8.0], dtype=DTYPE), 2).numpy(), [-2, 2, -1, 1]
    )
    np.testing.assert_allclose(
        leave_one_out(torch.tensor([3.0, 5.0, 7.0, 9.0], dtype=DTYPE), 4).numpy(), [-4, -4 / 3, 4 / 3, 4], rtol=1e-15
    )
    for group_size, rewards in [(4, [0, 1, 0, 0, 1, 1, 1, 1]), (2, [1, 0, 0, 0, 1, 1, 0, 1])]:
        rewards = np.array(rewards, dtype=float)
        np.testing.assert_allclose(
            class_balance_weights(torch.tensor(rewards), group_size).numpy(), balanced_weights(rewards, group_size)
        )
    weights = class_balance_weights(torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=DTYPE), 4)
    np.testing.assert_allclose(weights.numpy(), [2 / 3, 2, 2 / 3, 2 / 3], rtol=1e-15)  # 4 / (2 * 3), 4 / (2 * 1)

    on_policy = tiny_arrays() | {"logp": OLD_LOGP}
    # Dr.GRPO on-policy with rewards (1, 0, 0, 1), G = 2: A = (1/2, -1/2, -1/2, 1/2), lengths (3, 2, 1, 3)
    loss = OBJECTIVES["dr_grpo"](tiny_batch(2, arrays=on_policy), max_length=4).loss.item()
    assert loss == pytest.approx(-(0.5 * 3 - 0.5 * 2 - 0.5 * 1 + 0.5 * 3) / (4 * 4), rel=1e-14)
    # PACS on-policy: psi = 0, every BCE term is log 2 and the balanced weights of a group sum to G
    assert OBJECTIVES["pacs"](tiny_batch(4, arrays=on_policy)).loss.item() == pytest.approx(math.log(2), rel=1e-14)
    # ROVER with Q = 0 and only the next-state value of row 0, position 1 switched on: target at (0, 0) only
    shifted = np.zeros_like(MEAN_SHIFT)
    shifted[0, 1] = -0.3  # mean_logp - old_mean_logp = +0.3 at (0, 1) -> V_u = 0.3 enters the target of (0, 0)
    rewards = np.zeros(4)
    loss = OBJECTIVES["rover"](
        tiny_batch(2, rewards=rewards, arrays=on_policy | {"old_mean_logp": MEAN_LOGP + shifted})
    )
    assert loss.loss.item() == pytest.approx(0.3**2 / 9, rel=1e-12)


def test_gae_matches_its_closed_forms():
    mask = torch.tensor(MASK, dtype=DTYPE)
    values = torch.tensor(VALUES, dtype=DTYPE)
    terminal = torch.zeros(4, 3, dtype=DTYPE)
    terminal[torch.arange(4), torch.tensor(LENGTHS - 1)] = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=DTYPE)
    # gamma = lam = 1, reward only at the end: A_t = r - V_t, R_t = r on every token
    advantages, returns = generalized_advantages(terminal, values, mask, gamma=1.0, lam=1.0)
    r = np.array([1.0, 0.0, 1.0, 0.0])[:, None] * MASK
    np.testing.assert_allclose(advantages.numpy(), (r - VALUES) * MASK, atol=1e-15)
    np.testing.assert_allclose(returns.numpy(), r, atol=1e-15)
    # lam = 0: A_t = delta_t = r_t + gamma V_{t+1} - V_t, the bootstrap stopping at the last token
    advantages, _ = generalized_advantages(terminal, values, mask, gamma=0.5, lam=0.0)
    expected = terminal.numpy() - VALUES * MASK
    expected[:, :-1] += 0.5 * VALUES[:, 1:] * MASK[:, 1:]
    np.testing.assert_allclose(advantages.numpy(), expected * MASK, atol=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# Gradients on a tabular softmax: logits z (B, T, V), logp = log softmax(z)[token], d logp / dz = e_token - pi


def tabular_batch(group_size, rewards, seed=0, vocabulary=5):
    rng = np.random.default_rng(seed)
    n_rows = len(rewards)
    logits = torch.tensor(rng.normal(size=(n_rows, 3, vocabulary)), dtype=DTYPE, requires_grad=True)
    tokens = torch.tensor(rng.integers(vocabulary, size=(n_rows, 3)))
    log_policy = torch.log_softmax(logits, dim=-1)
    logp = log_policy.gather(-1, tokens[..., None])[..., 0]
    mask = torch.tensor(np.tile(MASK, (n_rows // 4, 1)), dtype=DTYPE)
    batch = PolicyBatch(
        logp=logp,
        old_logp=logp.detach(),
        mask=mask,
        rewards=torch.tensor(rewards, dtype=DTYPE),
        group_size=group_size,
        mean_logp=log_policy.mean(dim=-1),
        old_mean_logp=log_policy.mean(dim=-1).detach(),
    )
    score_gradient = (
        torch.nn.functional.one_hot(tokens, vocabulary).numpy() - torch.softmax(logits, -1).detach().numpy()
    )
    return batch, logits, score_gradient * mask.numpy()[..., None]


def gradient(name, batch, logits, **hyperparameters):
    loss = OBJECTIVES[name](batch, **hyperparameters).loss
    (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
    return grad.numpy()


def test_grpo_on_policy_gradient_is_the_advantage_weighted_score_normalised_per_sequence():
    rewards = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    batch, logits, score = tabular_batch(4, rewards)
    advantages = grpo_advantages(rewards, 4, scale=True)
    lengths = score.any(axis=-1).sum(axis=1)  # |o_i| from the masked score rows
    expected = -(advantages / (len(rewards) * lengths))[:, None, None] * score
    np.testing.assert_allclose(gradient("grpo", batch, logits), expected, rtol=1e-12, atol=1e-15)
    # Dr.GRPO: A without std and the constant B * L_max
    expected = -(grpo_advantages(rewards, 4, scale=False) / (len(rewards) * 7))[:, None, None] * score
    np.testing.assert_allclose(gradient("dr_grpo", batch, logits, max_length=7), expected, rtol=1e-12, atol=1e-15)


def test_pacs_on_policy_gradient_is_reinforce_with_a_leave_one_out_baseline_on_the_weighted_label():
    rewards = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    batch, logits, score = tabular_batch(4, rewards, seed=1)
    beta = 1.5
    for balance in (True, False):
        weights = balanced_weights(rewards, 4) if balance else np.ones(len(rewards))
        assert balance == (weights[0] == 2.0)  # the 1-of-4 group: w = 4 / (2 * 1) for the correct answer
        labels = weights * (rewards - 0.5)
        coefficients = np.array(
            [labels[i] - np.mean([labels[j] for j in rows if j != i]) for rows in groups(rewards, 4) for i in rows]
        )
        if not balance:  # unweighted: exactly y_i - mean_{j != i} y_j
            loo = [
                rewards[i] - np.mean([rewards[j] for j in rows if j != i]) for rows in groups(rewards, 4) for i in rows
            ]
            np.testing.assert_allclose(coefficients, loo, rtol=1e-15)
        # grad L = -(beta / B) sum_i c_i sum_t grad logp_{i,t}
        expected = -(beta / len(rewards)) * coefficients[:, None, None] * score
        actual = gradient("pacs", batch, logits, beta=beta, balance_classes=balance)
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(actual[4:8], 0.0)  # the all-correct group: no gradient on-policy


def test_rover_on_policy_gradient_is_minus_two_rho_times_the_centred_reward_times_the_score():
    rewards = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    batch, logits, score = tabular_batch(2, rewards, seed=2)
    centred = grpo_advantages(rewards, 2, scale=False)
    rho = 0.7
    expected = -2 * rho * centred[:, None, None] * score / score.any(axis=-1).sum()
    np.testing.assert_allclose(gradient("rover", batch, logits, rho=rho), expected, rtol=1e-12, atol=1e-15)


def test_all_correct_and_all_wrong_groups_give_no_grpo_or_pacs_gradient_on_policy_but_pacs_moves_off_policy():
    rewards = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    batch, logits, _ = tabular_batch(4, rewards, seed=3)
    for name in ("grpo", "dr_grpo", "dapo", "rloo", "pacs", "rover"):
        np.testing.assert_array_equal(gradient(name, batch, logits), 0.0)
    off_policy = PolicyBatch(
        logp=batch.logp,
        old_logp=batch.old_logp + 0.1 * torch.arange(24, dtype=DTYPE).reshape(8, 3),
        mask=batch.mask,
        rewards=batch.rewards,
        group_size=4,
    )
    assert np.abs(gradient("pacs", off_policy, logits)).max() > 1e-3  # psi differ -> the self-limiting term acts
    np.testing.assert_array_equal(gradient("grpo", off_policy, logits), 0.0)  # A = 0 whatever the ratio


def test_expected_psr_nsr_and_w_reinforce_gradients_are_positive_multiples_of_grad_j_by_enumeration():
    """One prompt, K = 4 one-token answers of which {0, 1} are correct, groups of G = 3 sampled on-policy from
    pi = softmax(z): the exact expectation over all K^G groups of -grad L against the closed forms
    E[PSR] = (1 - (1 - J)^G) grad J / J, E[NSR] = (1 - J^G) grad J / (1 - J), E[W] = (1 + lambda) grad J."""
    n_answers, group_size, correct = 4, 3, np.array([1.0, 1.0, 0.0, 0.0])
    logits = torch.tensor([0.3, -0.8, 0.5, -0.1], dtype=DTYPE, requires_grad=True)
    probabilities = torch.softmax(logits, 0).detach().numpy()
    success = probabilities @ correct
    grad_success = probabilities * (correct - success)  # dJ/dz_v = pi_v (1[v correct] - J)
    expected = {
        "psr": (1 - (1 - success) ** group_size) / success * grad_success,
        "nsr": (1 - success**group_size) / (1 - success) * grad_success,
        "w_reinforce": 1.1 * grad_success,
    }
    ascent = dict.fromkeys(expected, np.zeros(n_answers))
    for answers in itertools.product(range(n_answers), repeat=group_size):
        logp = torch.log_softmax(logits, 0)[list(answers)][:, None]
        batch = PolicyBatch(
            logp=logp,
            old_logp=logp.detach(),
            mask=torch.ones(group_size, 1, dtype=DTYPE),
            rewards=torch.tensor(correct[list(answers)], dtype=DTYPE),
            group_size=group_size,
        )
        weight = np.prod(probabilities[list(answers)])
        for name in expected:
            (grad,) = torch.autograd.grad(OBJECTIVES[name](batch).loss, logits, retain_graph=True)
            ascent[name] = ascent[name] - weight * grad.numpy()
    for name, value in expected.items():
        np.testing.assert_allclose(ascent[name], value, rtol=1e-12, atol=1e-15)
        assert ascent[name] @ grad_success > 0.99 * np.linalg.norm(ascent[name]) * np.linalg.norm(grad_success)


def test_clipping_cuts_the_gradient_exactly_outside_the_range_on_the_side_of_the_advantage_sign():
    ratios = np.array([[0.79, 0.81, 1.0], [1.27, 1.29, 2.0], [0.79, 0.81, 1.0], [1.27, 1.29, 0.5]])
    rewards = np.array([1.0, 0.0, 0.0, 1.0])  # A = +a, -a, -a, +a
    mask = np.ones((4, 3))
    logp = torch.tensor(np.log(ratios) - 1.0, dtype=DTYPE, requires_grad=True)
    batch = PolicyBatch(
        logp=logp,
        old_logp=torch.full((4, 3), -1.0, dtype=DTYPE),
        mask=torch.tensor(mask, dtype=DTYPE),
        rewards=torch.tensor(rewards, dtype=DTYPE),
        group_size=2,
    )
    output = OBJECTIVES["dapo"](batch)  # eps_low 0.2, eps_high 0.28, token mean
    (grad,) = torch.autograd.grad(output.loss, logp)
    advantage = np.repeat(grpo_advantages(rewards, 2, scale=True)[:, None], 3, axis=1)
    clipped = ((advantage > 0) & (ratios > 1.28)) | ((advantage < 0) & (ratios < 0.8))
    assert clipped.tolist() == [[False] * 3, [False] * 3, [True, False, False], [False, True, False]]
    np.testing.assert_allclose(grad.numpy(), np.where(clipped, 0.0, -advantage * ratios / 12), rtol=1e-12)
    assert output.stats["clip_fraction"] == pytest.approx(2 / 12)
    assert output.stats["clip_fraction_low"] == pytest.approx(1 / 12)
    assert output.stats["clip_fraction_high"] == pytest.approx(1 / 12)
    # symmetric GRPO clip (0.2, 0.2): the ratio 1.27 of row 3 is now clipped too
    (grad,) = torch.autograd.grad(OBJECTIVES["grpo"](batch).loss, logp)
    assert (grad.numpy() == 0).tolist() == [[False] * 3, [False] * 3, [True, False, False], [True, True, False]]


@pytest.mark.parametrize("custom", [False, True], ids=["defaults", "custom"])
@pytest.mark.parametrize("name", list(REFERENCES))
def test_padded_positions_change_nothing_whatever_they_hold(name, custom):
    hyperparameters = REFERENCES[name][1] if custom else {}
    clean, dirty = tiny_batch(4), tiny_batch(4, padding=GARBAGE)
    outputs = [OBJECTIVES[name](batch, **hyperparameters) for batch in (clean, dirty)]
    assert outputs[0].loss.item() == outputs[1].loss.item()
    assert outputs[0].stats == outputs[1].stats
    grads = [
        torch.autograd.grad(out.loss, (b.logp, b.values), allow_unused=True)
        for out, b in zip(outputs, (clean, dirty), strict=True)
    ]
    for clean_grad, dirty_grad in zip(*grads, strict=True):
        if clean_grad is None:
            assert dirty_grad is None
            continue
        np.testing.assert_array_equal(clean_grad.numpy(), dirty_grad.numpy())
        np.testing.assert_array_equal(dirty_grad.numpy()[MASK == 0], 0.0)
    assert np.abs(grads[1][0].numpy()).max() > 0  # the loss does depend on the real tokens


def test_bad_inputs_raise_value_errors_naming_the_argument():
    batch = tiny_batch(2)
    fields = {name: getattr(batch, name) for name in ("logp", "old_logp", "mask", "rewards")}
    with pytest.raises(ValueError, match="^old_logp"):
        PolicyBatch(**fields | {"old_logp": batch.old_logp[:, :2]}, group_size=2)
    with pytest.raises(ValueError, match="^rewards"):
        PolicyBatch(**fields | {"rewards": batch.rewards[:3]}, group_size=2)
    with pytest.raises(ValueError, match="^ref_logp"):
        PolicyBatch(**fields, group_size=2, ref_logp=batch.logp.detach().T)
    with pytest.raises(ValueError, match="^group_size"):
        PolicyBatch(**fields, group_size=3)
    with pytest.raises(ValueError, match="^mask"):
        PolicyBatch(**fields | {"mask": batch.mask.flip(1)}, group_size=2)  # left padding
    with pytest.raises(ValueError, match="^old_logp"):
        PolicyBatch(
            **fields
            | {"old_logp": batch.old_logp.masked_fill(batch.mask.bool() & (batch.old_logp < -1.5), float("nan"))},
            group_size=2,
        )
    bare = PolicyBatch(**fields, group_size=2)
    with pytest.raises(ValueError, match="^values"):
        OBJECTIVES["ppo"](bare)
    with pytest.raises(ValueError, match="^mean_logp"):
        OBJECTIVES["rover"](bare)
    with pytest.raises(ValueError, match="^ref_logp"):
        OBJECTIVES["grpo"](bare, beta=0.04)
    with pytest.raises(ValueError, match="^ref_logp"):
        OBJECTIVES["rloo"](bare, beta=0.05)
    with pytest.raises(ValueError, match="^group_size"):
        OBJECTIVES["rloo"](PolicyBatch(**fields, group_size=1))
    with pytest.raises(ValueError, match="^rewards"):
        OBJECTIVES["pacs"](PolicyBatch(**fields | {"rewards": batch.rewards * 0.5}, group_size=2))
    with pytest.raises(ValueError, match="^epsilon_low"):
        OBJECTIVES["grpo"](bare, epsilon_low=1.5)
    with pytest.raises(ValueError, match="^max_length"):
        OBJECTIVES["dr_grpo"](bare, max_length=2)
