"""SubPO with a torch MLP policy: the optional neural policy of the ``submodular-rl`` experiment.

Paper: Prajapat, Mutny, Zeilinger, Krause, "Submodular Reinforcement Learning" (ICLR 2024, arXiv 2307.13372),
whose SubPO trains a parametric policy pi_phi(a | s, h) on marginal gains. The tabular version is
:mod:`theory.submodular.policy_gradient`; here the logits come from an MLP:

1. Features x(h, s) for the H - 1 decisions h = 0..H-2: ``"state_time"`` = [one-hot(s), h / H] (default: one
   network shared across steps), or ``"state_step"`` = one-hot(h, s), on which a single bias-free linear layer
   is exactly the tabular softmax theta[h, s, a] = W[a, h S + s].
2. log pi_phi(. | s, h) = log_softmax(MLP(x(h, s))). The policy depends on (h, s) only, so its whole table
   (H - 1, S, A) costs one forward pass, and :func:`theory.submodular.rollout` samples from it (inverse CDF per
   step, marginal gains tracked by the objective's :class:`~theory.submodular.GainTracker`): the MLP's
   probabilities per step, with the tabular methods' rollout machinery.
3. The learning signal w (reward-to-go of marginal gains = F(tau) - F(tau_{0:i}), myopic or modular) and the
   advantages A_{b,i} = w_{b,i} - mean_b w_{b,i} (optionally normalised) are theory's.
4. grad J = 1/B sum_b sum_i A_{b,i} grad_phi log pi_phi(a_{b,i} | s_{b,i}, i), by autograd on the surrogate
   loss -1/B sum A log pi (:func:`policy_loss`), then an Adam step of size ``learning_rate``.

The last layer starts at zero, so training starts from the uniform policy, as the tabular solvers do.
"""

from __future__ import annotations

import numpy as np
import torch

from lab.torch_utils import positive_int, torch_threads
from theory.solver import Callback, iterate
from theory.submodular import (
    PolicyGradientResult,
    SubmodularMDP,
    Trajectories,
    advantages,
    evaluate_policy,
    modular_signal,
    myopic_signal,
    reward_to_go_signal,
    rollout,
)
from theory.submodular.policy_gradient import SIGNALS

FEATURES = ("state_time", "state_step")


class MLPPolicy(torch.nn.Module):
    """pi_phi(a | s, h) = softmax(MLP(x(h, s)))_a over ``n_states`` S, ``n_actions`` A and ``n_steps`` = H - 1
    decisions (module docstring, steps 1-2); float64.

    ``hidden`` widths of the tanh hidden layers (``()``: one linear layer), ``features`` in FEATURES, ``bias`` for
    every layer. Weights start U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from ``seed`` (torch's default scale), the last
    layer at zero (the uniform policy).
    """

    def __init__(
        self,
        n_states: int,
        n_actions: int,
        n_steps: int,
        *,
        hidden: tuple[int, ...] = (64,),
        features: str = "state_time",
        bias: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.n_states = positive_int(n_states, "n_states")
        self.n_actions = positive_int(n_actions, "n_actions")
        self.n_steps = positive_int(n_steps, "n_steps")
        if features not in FEATURES:
            raise ValueError(f"features: expected one of {FEATURES}, got {features!r}")
        widths = [positive_int(width, "hidden") for width in hidden]
        self.features = features
        self.register_buffer("inputs", self._feature_table(), persistent=False)
        sizes = [self.inputs.shape[1], *widths, self.n_actions]
        generator = torch.Generator().manual_seed(int(seed))
        layers: list[torch.nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layer = torch.nn.Linear(fan_in, fan_out, bias=bias, dtype=torch.float64)
            last = index == len(sizes) - 2
            with torch.no_grad():
                for parameter in layer.parameters():
                    if last:
                        parameter.zero_()
                    else:
                        parameter.uniform_(-(fan_in**-0.5), fan_in**-0.5, generator=generator)
            layers.append(layer)
            if not last:
                layers.append(torch.nn.Tanh())
        self.network = torch.nn.Sequential(*layers)

    def _feature_table(self) -> torch.Tensor:
        """x(h, s) for every (h, s), row h S + s."""
        steps, states = np.divmod(np.arange(self.n_steps * self.n_states), self.n_states)
        if self.features == "state_step":
            return torch.eye(self.n_steps * self.n_states, dtype=torch.float64)
        one_hot = np.eye(self.n_states)[states]
        return torch.as_tensor(np.column_stack([one_hot, steps / (self.n_steps + 1)]), dtype=torch.float64)

    def log_policy(self) -> torch.Tensor:
        """log pi_phi(a | s, h) as an (H - 1, S, A) tensor (with gradient)."""
        logits = self.network(self.inputs)
        return torch.log_softmax(logits, dim=-1).reshape(self.n_steps, self.n_states, self.n_actions)


def policy_loss(log_policy: torch.Tensor, trajectories: Trajectories, advantage: np.ndarray) -> torch.Tensor:
    """The surrogate -1/B sum_b sum_i A_{b,i} log pi(a_{b,i} | s_{b,i}, i); its negative gradient is SubPO's."""
    steps = torch.arange(trajectories.actions.shape[1])[None, :]
    states = torch.as_tensor(trajectories.states[:, :-1])
    actions = torch.as_tensor(trajectories.actions)
    chosen = log_policy[steps, states, actions]
    weights = torch.as_tensor(advantage, dtype=log_policy.dtype)
    return -(weights * chosen).sum() / advantage.shape[0]


class MLPPolicyGradient:
    """Stepped SubPO (or its myopic / modular variants, ``signal``) with an :class:`MLPPolicy`.

    ``step()`` returns the keys of :class:`theory.submodular.PolicyGradient`: ``mean_objective`` and
    ``max_objective`` of the batch sampled this iteration (before the update), ``gradient_norm`` (of the
    parameters' gradient) and ``entropy`` (mean policy entropy at the visited (s, h), nats). Accessors:
    ``logits`` (the log-policy table (H - 1, S, A), usable wherever tabular logits are), ``policy``,
    ``trajectories`` (the last batch), ``model`` (the torch module).
    """

    def __init__(
        self,
        mdp: SubmodularMDP,
        *,
        hidden: tuple[int, ...] = (64,),
        features: str = "state_time",
        signal: str = "reward_to_go",
        batch_size: int = 256,
        learning_rate: float = 0.01,
        normalize_advantages: bool = True,
        seed: int | np.random.Generator = 0,
        num_threads: int | None = 1,
    ) -> None:
        if not isinstance(mdp, SubmodularMDP):
            raise TypeError(f"mdp: expected a SubmodularMDP, got {type(mdp).__name__}")
        if signal not in SIGNALS:
            raise ValueError(f"signal: expected one of {SIGNALS}, got {signal!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size: expected an integer >= 2, got {batch_size!r}")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float) or not learning_rate > 0:
            raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
        self.mdp, self.signal, self.batch_size = mdp, signal, batch_size
        self.normalize_advantages, self.num_threads = bool(normalize_advantages), num_threads
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer | np.random.Generator):
            raise TypeError(f"seed: expected an int or a numpy.random.Generator, got {seed!r}")
        self._rng = np.random.default_rng(seed)
        self.model = MLPPolicy(
            mdp.n_states,
            mdp.n_actions,
            mdp.horizon - 1,
            hidden=tuple(hidden),
            features=features,
            seed=int(self._rng.spawn(1)[0].integers(2**62)),  # a child stream: sampling draws stay seed's own
        )
        self._optimizer = torch.optim.Adam(self.model.parameters(), lr=float(learning_rate))
        self._state_rewards = mdp.objective.singleton_values() if signal == "modular" else None
        self.n_iter = 0
        self.gradient_norm = np.inf
        self.trajectories: Trajectories | None = None

    @property
    def logits(self) -> np.ndarray:
        with torch.no_grad(), torch_threads(self.num_threads):
            return self.model.log_policy().numpy().copy()

    @property
    def policy(self) -> np.ndarray:
        return np.exp(self.logits)

    @property
    def converged(self) -> bool:
        return self.gradient_norm == 0.0

    def _signal(self, trajectories: Trajectories) -> np.ndarray:
        if self.signal == "reward_to_go":
            return reward_to_go_signal(trajectories.gains)
        if self.signal == "myopic":
            return myopic_signal(trajectories.gains)
        return modular_signal(trajectories.states, self._state_rewards)

    def step(self) -> dict[str, float]:
        with torch_threads(self.num_threads):
            self.n_iter += 1
            log_policy = self.model.log_policy()
            table = log_policy.detach().numpy()
            trajectories = rollout(self.mdp, table, self.batch_size, self._rng)
            advantage = advantages(self._signal(trajectories), normalize=self.normalize_advantages)
            self._optimizer.zero_grad()
            policy_loss(log_policy, trajectories, advantage).backward()
            gradients = [p.grad for p in self.model.parameters() if p.grad is not None]
            self.gradient_norm = float(torch.sqrt(sum((g * g).sum() for g in gradients)))
            self._optimizer.step()
        steps = np.arange(self.mdp.horizon - 1)[None, :]
        visited = table[steps, trajectories.states[:, :-1]]
        entropy = -np.sum(np.exp(visited) * visited, axis=-1).mean()
        self.trajectories = trajectories
        values = trajectories.values
        return {
            "mean_objective": float(values.mean()),
            "max_objective": float(values.max()),
            "gradient_norm": self.gradient_norm,
            "entropy": float(entropy),
        }


def solve_mlp_subpo(
    mdp: SubmodularMDP,
    *,
    hidden: tuple[int, ...] = (64,),
    features: str = "state_time",
    signal: str = "reward_to_go",
    batch_size: int = 256,
    learning_rate: float = 0.01,
    normalize_advantages: bool = True,
    max_iter: int = 300,
    n_eval: int = 1000,
    seed: int = 0,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
    num_threads: int | None = 1,
) -> PolicyGradientResult:
    """``max_iter`` steps of :class:`MLPPolicyGradient`, then the final policy evaluated on ``n_eval`` fresh
    rollouts; ``logits`` of the result is the MLP's log-policy table. ``seed`` is split into a training and an
    evaluation stream as :func:`theory.submodular.solve_subpo` splits it."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an integer, got {seed!r}")
    train_seed, eval_seed = np.random.SeedSequence(int(seed)).spawn(2)
    solver = MLPPolicyGradient(
        mdp,
        hidden=hidden,
        features=features,
        signal=signal,
        batch_size=batch_size,
        learning_rate=learning_rate,
        normalize_advantages=normalize_advantages,
        seed=np.random.default_rng(train_seed),
        num_threads=num_threads,
    )
    outcome = iterate(solver, max_iter=max_iter, callback=callback, callback_every=callback_every, progress=progress)
    logits = solver.logits
    evaluation = evaluate_policy(mdp, logits, n_samples=n_eval, seed=np.random.default_rng(eval_seed))
    return PolicyGradientResult(
        logits=logits, policy=np.exp(logits), signal=signal, evaluation=evaluation, **outcome.fields()
    )
