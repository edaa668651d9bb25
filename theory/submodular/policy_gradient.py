"""SubPO: policy gradient on marginal gains, from Prajapat, Mutny, Zeilinger, Krause, "Submodular Reinforcement
Learning" (ICLR 2024, arXiv 2307.13372), with a tabular time-dependent softmax policy pi(a | s, h).

1. Roll out B trajectories tau = (s_0, ..., s_{H-1}) of pi_theta and record the marginal gains
   F(s_{j+1} | tau_{0:j}) (:func:`theory.submodular.mdp.rollout`).
2. Weigh each decision i = 0..H-2 by a learning signal w_i:
   * ``"reward_to_go"`` (SubPO, the paper): w_i = sum_{j >= i} F(s_{j+1} | tau_{0:j}) = F(tau) - F(tau_{0:i}),
     i.e. REINFORCE on F(tau) with the history-dependent baseline F(tau_{0:i}) (unbiased);
   * ``"myopic"`` (the released code's surrogate): w_i = F(s_{i+1} | tau_{0:i}), the immediate gain only;
   * ``"modular"`` (modular PG, the standard-RL baseline): w_i = sum_{j > i} r(s_j) with r(s) = F({s}), repeats
     counted.
3. Advantage A_i = w_i - b_i with the per-step batch mean b_i; optionally divided by the standard deviation of all
   advantages of the batch (a batch whose advantages are all equal carries no signal: A = 0).
4. grad J = 1/B sum_b sum_i A_{b,i} grad log pi(a_{b,i} | s_{b,i}, i); for the softmax,
   d log pi(a | s, i) / d theta[i, s, :] = e_a - pi(. | s, i).
5. Ascend theta with Adam (default; step ``learning_rate``) or plain gradient ascent.

``converged`` means the last batch carried no signal (gradient exactly 0: all sampled trajectories equally good
at every step), which happens once the policy is deterministic along its path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.solver import Callback, SolverResult, iterate
from theory.submodular.mdp import (
    PolicyEvaluation,
    SubmodularMDP,
    Trajectories,
    evaluate_policy,
    rollout,
    softmax_policy,
)

SIGNALS = ("reward_to_go", "myopic", "modular")
OPTIMIZERS = ("adam", "sgd")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
FLAT_SPREAD = 1e-9
"""Advantages with standard deviation below FLAT_SPREAD * (1 + max |w|) are treated as equal (no signal)."""


def reward_to_go_signal(gains: np.ndarray) -> np.ndarray:
    """(B, H - 1): w_i = sum_{j > i} gains_j = F(tau) - F(tau_{0:i}) for gains (B, H) (SubPO, paper)."""
    return np.cumsum(gains[:, :0:-1], axis=1)[:, ::-1]


def myopic_signal(gains: np.ndarray) -> np.ndarray:
    """(B, H - 1): w_i = gains_{i+1} = F(s_{i+1} | tau_{0:i}) (the released code's surrogate)."""
    return gains[:, 1:]


def modular_signal(states: np.ndarray, state_rewards: np.ndarray) -> np.ndarray:
    """(B, H - 1): w_i = sum_{j > i} r(s_j), the reward-to-go of standard RL with r(s) = F({s})."""
    return reward_to_go_signal(state_rewards[states])


def advantages(signal: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """A_i = w_i - mean_b w_i, divided by the batch standard deviation when ``normalize`` (0 when flat)."""
    centred = signal - signal.mean(axis=0, keepdims=True)
    spread = centred.std()
    if spread <= FLAT_SPREAD * (1.0 + np.abs(signal).max()):
        return np.zeros_like(centred)
    return centred / spread if normalize else centred


def policy_gradient(logits: np.ndarray, trajectories: Trajectories, advantage: np.ndarray) -> np.ndarray:
    """1/B sum_b sum_i A_{b,i} (e_{a_{b,i}} - pi(. | s_{b,i}, i)) placed at theta[i, s_{b,i}, :]."""
    steps, n_states, n_actions = logits.shape
    batch = advantage.shape[0]
    cell = np.arange(steps)[None, :] * n_states + trajectories.states[:, :-1]
    weights = advantage.ravel()
    chosen = np.bincount((cell * n_actions + trajectories.actions).ravel(), weights, steps * n_states * n_actions)
    visits = np.bincount(cell.ravel(), weights, steps * n_states).reshape(steps, n_states, 1)
    return (chosen.reshape(logits.shape) - visits * softmax_policy(logits)) / batch


class PolicyGradient:
    """Stepped tabular softmax policy gradient (module docstring, steps 1-5) for one ``signal`` in SIGNALS.

    ``step()`` returns ``mean_objective``, ``max_objective`` (F(tau) of the batch sampled this iteration, before the
    update), ``gradient_norm`` and ``entropy`` (mean policy entropy at the visited (s, h), in nats).
    Accessors: ``logits`` (H - 1, S, A), ``policy`` (probabilities), ``trajectories`` (the last batch).
    """

    def __init__(
        self,
        mdp: SubmodularMDP,
        *,
        signal: str = "reward_to_go",
        batch_size: int = 256,
        learning_rate: float = 0.1,
        optimizer: str = "adam",
        normalize_advantages: bool = True,
        initial_logits=None,
        seed: int | np.random.Generator = 0,
    ) -> None:
        if not isinstance(mdp, SubmodularMDP):
            raise TypeError(f"mdp: expected a SubmodularMDP, got {type(mdp).__name__}")
        if signal not in SIGNALS:
            raise ValueError(f"signal: expected one of {SIGNALS}, got {signal!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size: expected an integer >= 2, got {batch_size!r}")
        if not (isinstance(learning_rate, int | float) and learning_rate > 0):
            raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
        self.mdp, self.signal, self.optimizer = mdp, signal, optimizer
        self.batch_size, self.learning_rate = batch_size, float(learning_rate)
        self.normalize_advantages = bool(normalize_advantages)
        self._logits = np.zeros(mdp.logits_shape) if initial_logits is None else mdp.check_logits(initial_logits).copy()
        self._rng = np.random.default_rng(seed)
        self._state_rewards = mdp.objective.singleton_values() if signal == "modular" else None
        self._first_moment = np.zeros_like(self._logits)
        self._second_moment = np.zeros_like(self._logits)
        self.n_iter = 0
        self.gradient_norm = np.inf
        self.trajectories: Trajectories | None = None

    @property
    def logits(self) -> np.ndarray:
        return self._logits.copy()

    @property
    def policy(self) -> np.ndarray:
        return softmax_policy(self._logits)

    @property
    def converged(self) -> bool:
        return self.gradient_norm == 0.0

    def _signal(self, trajectories: Trajectories) -> np.ndarray:
        if self.signal == "reward_to_go":
            return reward_to_go_signal(trajectories.gains)
        if self.signal == "myopic":
            return myopic_signal(trajectories.gains)
        return modular_signal(trajectories.states, self._state_rewards)

    def _ascend(self, gradient: np.ndarray) -> None:
        if self.optimizer == "sgd":
            self._logits += self.learning_rate * gradient
            return
        beta1, beta2 = ADAM_BETAS
        self._first_moment = beta1 * self._first_moment + (1 - beta1) * gradient
        self._second_moment = beta2 * self._second_moment + (1 - beta2) * gradient**2
        first = self._first_moment / (1 - beta1**self.n_iter)
        second = self._second_moment / (1 - beta2**self.n_iter)
        self._logits += self.learning_rate * first / (np.sqrt(second) + ADAM_EPSILON)

    def step(self) -> dict[str, float]:
        self.n_iter += 1
        trajectories = rollout(self.mdp, self._logits, self.batch_size, self._rng)
        advantage = advantages(self._signal(trajectories), normalize=self.normalize_advantages)
        gradient = policy_gradient(self._logits, trajectories, advantage)
        policy = softmax_policy(self._logits)
        steps = np.arange(self.mdp.horizon - 1)
        visited_policy = policy[steps[None, :], trajectories.states[:, :-1]]
        entropy = -np.sum(visited_policy * np.log(np.maximum(visited_policy, 1e-300)), axis=-1).mean()
        self.gradient_norm = float(np.sqrt(np.sum(gradient * gradient)))  # not BLAS: its threads stall on busy cores
        self._ascend(gradient)
        self.trajectories = trajectories
        values = trajectories.values
        return {
            "mean_objective": float(values.mean()),
            "max_objective": float(values.max()),
            "gradient_norm": self.gradient_norm,
            "entropy": float(entropy),
        }


@dataclass(frozen=True, kw_only=True)
class PolicyGradientResult(SolverResult):
    """The learned ``logits`` and ``policy`` (H - 1, S, A), the ``signal`` trained on, and an ``evaluation`` of the
    final policy (mean F(tau) +- s.e. over fresh rollouts, F of its greedy path); ``history["mean_objective"]``
    holds the training curve."""

    logits: np.ndarray
    policy: np.ndarray
    signal: str
    evaluation: PolicyEvaluation


def _solve(
    mdp: SubmodularMDP,
    signal: str,
    *,
    batch_size: int,
    learning_rate: float,
    optimizer: str,
    normalize_advantages: bool,
    max_iter: int,
    n_eval: int,
    seed: int,
    callback: Callback | None,
    callback_every: int,
    progress: bool,
) -> PolicyGradientResult:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an integer, got {seed!r}")
    train_seed, eval_seed = np.random.SeedSequence(int(seed)).spawn(2)
    solver = PolicyGradient(
        mdp,
        signal=signal,
        batch_size=batch_size,
        learning_rate=learning_rate,
        optimizer=optimizer,
        normalize_advantages=normalize_advantages,
        seed=np.random.default_rng(train_seed),
    )
    outcome = iterate(solver, max_iter=max_iter, callback=callback, callback_every=callback_every, progress=progress)
    evaluation = evaluate_policy(mdp, solver.logits, n_samples=n_eval, seed=np.random.default_rng(eval_seed))
    return PolicyGradientResult(
        logits=solver.logits, policy=solver.policy, signal=signal, evaluation=evaluation, **outcome.fields()
    )


def solve_subpo(
    mdp: SubmodularMDP,
    *,
    myopic: bool = False,
    batch_size: int = 256,
    learning_rate: float = 0.1,
    optimizer: str = "adam",
    normalize_advantages: bool = True,
    max_iter: int = 300,
    n_eval: int = 1000,
    seed: int = 0,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
) -> PolicyGradientResult:
    """SubPO: ``max_iter`` steps of :class:`PolicyGradient` on the reward-to-go of marginal gains (``myopic=True``:
    the immediate gain, as the released code), then an evaluation over ``n_eval`` fresh rollouts. ``seed`` fixes
    both the training and the evaluation samples."""
    return _solve(
        mdp,
        "myopic" if myopic else "reward_to_go",
        batch_size=batch_size,
        learning_rate=learning_rate,
        optimizer=optimizer,
        normalize_advantages=normalize_advantages,
        max_iter=max_iter,
        n_eval=n_eval,
        seed=seed,
        callback=callback,
        callback_every=callback_every,
        progress=progress,
    )


def solve_modular_pg(
    mdp: SubmodularMDP,
    *,
    batch_size: int = 256,
    learning_rate: float = 0.1,
    optimizer: str = "adam",
    normalize_advantages: bool = True,
    max_iter: int = 300,
    n_eval: int = 1000,
    seed: int = 0,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
) -> PolicyGradientResult:
    """Modular PG: REINFORCE with reward-to-go on r(s) = F({s}) (repeats counted), evaluated on the true F."""
    return _solve(
        mdp,
        "modular",
        batch_size=batch_size,
        learning_rate=learning_rate,
        optimizer=optimizer,
        normalize_advantages=normalize_advantages,
        max_iter=max_iter,
        n_eval=n_eval,
        seed=seed,
        callback=callback,
        callback_every=callback_every,
        progress=progress,
    )
