"""Torch side of convex ReLU training: attacks on a recovered network, and non-convex training for comparison.

Paper: Bai, Gautam & Sojoudi, arXiv 2201.01965 (§4 adversarial training; §5 compares with back-propagation).
The network is f(x) = sum_j (x^T u_j)_+ alpha_j (:class:`theory.convex_relu.problem.ReLUNetwork`); X carries
its bias column explicitly (the last column, all ones, when ``bias``), and an attacker never moves it.

1. Attacks (Madry et al. 2018 PGD; Goodfellow et al. 2015 FGSM), for labels y in {-1, +1}. Each point k
   maximises its margin loss -y_k f(x_k + delta) over ||delta||_p <= eps, delta_bias = 0; the hinge loss
   (1 - y_k f)_+ is a non-decreasing function of it, so the same delta maximises the hinge loss, but unlike
   the hinge its gradient does not vanish on points classified with margin > 1.
   PGD step:  l_inf: delta <- clip_eps(delta + a sign(grad));  l_2: delta <- P_eps(delta + a grad / ||grad||),
   with a = ``step_size`` (default 2.5 eps / steps); restart 0 starts at delta = 0, further restarts uniformly in
   the ball; the strongest iterate per point over all steps and restarts is returned.
   FGSM: one step of size eps from delta = 0.
2. Non-convex training: full-batch Adam or (plain) gradient descent in float64 on
       L(u, alpha) = 1/2 ||sum_j (X u_j)_+ alpha_j - y||^2 + beta/2 sum_j (||u_j||^2 + alpha_j^2),
   exactly :func:`theory.convex_relu.problem.network_objective` (same data, same scaling, bias weights included).

Theory vs practice. Let p*_all be the convex optimum over *all* patterns of X and m* the width of one of its
solutions (an interior-point solution is usually not the sparsest). Any network of any width maps to a feasible
convex point of no larger objective (merge neurons of equal pattern and output sign), so L >= p*_all always; for
width m >= m*, min L = p*_all, attained by the recovered network (Pilanci & Ergen 2020). With *sampled* patterns S,
the convex optimum p*_S is the minimum of L over networks whose every neuron's activation pattern on X lies in S
(any width); so p*_S >= p*_all, and p*_S >= min L at width >= m*_S. A torch-trained network chooses its own
patterns, so it can end *below* p*_S (it found patterns outside S), or above it (a local minimum, a dead neuron, or
not converged); only below p*_all is impossible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lab.torch_utils import positive_int, torch_threads
from theory.convex_relu.problem import ConvexReLUProblem, ReLUNetwork, network_objective

NORMS = ("inf", "2")
OPTIMIZERS = ("adam", "sgd")


def _positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def _attack_inputs(network, X, y, eps, norm):
    if not isinstance(network, ReLUNetwork):
        raise TypeError(f"network: expected a ReLUNetwork, got {type(network).__name__}")
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != network.hidden.shape[0]:
        raise ValueError(f"X: expected shape (n, {network.hidden.shape[0]}), got {X.shape}")
    y = np.asarray(y, dtype=float)
    if y.shape != (X.shape[0],) or not np.all(np.isin(y, (-1.0, 1.0))):
        raise ValueError(f"y: expected {X.shape[0]} labels in {{-1, +1}}")
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.integer | np.floating):
        raise TypeError(f"eps: expected a real number, got {type(eps).__name__}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    return X, y, float(eps)


def _torch_network(network: ReLUNetwork):
    hidden = torch.as_tensor(network.hidden, dtype=torch.float64)
    output = torch.as_tensor(network.output, dtype=torch.float64)
    return lambda inputs: torch.relu(inputs @ hidden) @ output


def perturbation_mask(d: int, bias: bool) -> np.ndarray:
    """Which of the d columns an attacker may move: all but the last (the bias column) when ``bias``."""
    mask = np.ones(d, dtype=bool)
    if bias:
        mask[-1] = False
    return mask


def _attack_mask(X: np.ndarray, bias: bool) -> np.ndarray:
    if bias and not np.all(X[:, -1] == 1.0):
        raise ValueError("X: with bias=True the last column must be the bias column of ones (see with_bias)")
    return perturbation_mask(X.shape[1], bias)


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "inf":
        return delta.clamp(-eps, eps)
    norms = delta.norm(dim=1, keepdim=True)
    return delta * torch.clamp(eps / norms.clamp_min(1e-300), max=1.0)


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "inf":
        return grad.sign()
    return grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-300)


def _random_start(shape, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    if norm == "inf":
        return (2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1) * eps
    direction = torch.randn(shape, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-300)
    radius = eps * torch.rand((shape[0], 1), generator=generator, dtype=torch.float64) ** (1.0 / shape[1])
    return direction * radius


def pgd_attack(
    network: ReLUNetwork,
    X,
    y,
    eps: float,
    *,
    norm: str = "inf",
    steps: int = 50,
    step_size: float | None = None,
    restarts: int = 1,
    seed: int = 0,
    bias: bool = True,
    num_threads: int | None = 1,
) -> np.ndarray:
    """Adversarial X (same shape) from PGD on the margin loss -y f(x); the bias column (last, if ``bias``) is kept.

    Returns, per row, the strongest point (largest -y_k f) seen over all steps and restarts, the clean row included.
    ``seed`` drives the random restarts; ``num_threads`` as in :func:`torch_threads`.
    """
    X, y, eps = _attack_inputs(network, X, y, eps, norm)
    steps, restarts = positive_int(steps, "steps"), positive_int(restarts, "restarts")
    step_size = 2.5 * eps / steps if step_size is None else _positive_float(step_size, "step_size")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    mask = _attack_mask(X, bias)
    if eps == 0 or not mask.any():
        return X.copy()
    with torch_threads(num_threads):
        return _pgd(network, X, y, eps, norm, steps, step_size, restarts, int(seed), mask)


def _pgd(network, X, y, eps, norm, steps, step_size, restarts, seed, mask) -> np.ndarray:
    f = _torch_network(network)
    clean = torch.as_tensor(X, dtype=torch.float64)
    labels = torch.as_tensor(y, dtype=torch.float64)
    movable = clean[:, mask]
    generator = torch.Generator().manual_seed(seed)

    def margin_loss(points: torch.Tensor) -> torch.Tensor:
        full = clean.clone()
        full[:, mask] = points
        return -labels * f(full)

    best_points = movable.clone()
    with torch.no_grad():
        best_loss = margin_loss(best_points)
    for restart in range(restarts):
        delta = torch.zeros_like(movable) if restart == 0 else _random_start(movable.shape, eps, norm, generator)
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = margin_loss(movable + delta)
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                delta = _project(delta + step_size * _ascent_direction(grad, norm), eps, norm)
                loss = margin_loss(movable + delta)
                better = loss > best_loss
                best_loss = torch.where(better, loss, best_loss)
                best_points[better] = (movable + delta)[better]
    adversarial = X.copy()
    adversarial[:, mask] = best_points.numpy()
    return adversarial


def fgsm_attack(
    network: ReLUNetwork, X, y, eps: float, *, norm: str = "inf", bias: bool = True, num_threads: int | None = 1
) -> np.ndarray:
    """One step of size eps along sign(grad) (l_inf) or grad / ||grad|| (l_2) of -y f(x); bias column kept."""
    X, y, eps = _attack_inputs(network, X, y, eps, norm)
    mask = _attack_mask(X, bias)
    with torch_threads(num_threads):
        return _fgsm(network, X, y, eps, norm, mask)


def _fgsm(network, X, y, eps, norm, mask) -> np.ndarray:
    inputs = torch.as_tensor(X, dtype=torch.float64).requires_grad_(True)
    loss = -torch.as_tensor(y, dtype=torch.float64) * _torch_network(network)(inputs)
    (grad,) = torch.autograd.grad(loss.sum(), inputs)
    grad = grad[:, mask]
    adversarial = X.copy()
    adversarial[:, mask] += eps * _ascent_direction(grad, norm).numpy()
    return adversarial


def accuracy(network: ReLUNetwork, X, y) -> float:
    """Fraction of points with y_k f(x_k) > 0 (a zero output counts as an error)."""
    return float(np.mean(np.asarray(y, dtype=float) * network(X) > 0))


def hinge_losses(network: ReLUNetwork, X, y) -> np.ndarray:
    """(1 - y_k f(x_k))_+ per point."""
    return np.maximum(1.0 - np.asarray(y, dtype=float) * network(X), 0.0)


def robust_accuracy(network: ReLUNetwork, X, y, eps: float, **attack) -> float:
    """Accuracy on :func:`pgd_attack`'s adversarial points (keyword arguments go to the attack)."""
    return accuracy(network, pgd_attack(network, X, y, eps, **attack), y)


@dataclass(frozen=True)
class NonconvexTraining:
    """A non-convex training run: ``objective[t]`` is L after t steps (t = 0..epochs), and the final network."""

    objective: np.ndarray
    network: ReLUNetwork
    optimizer: str
    lr: float
    seed: int

    @property
    def final_objective(self) -> float:
        return float(self.objective[-1])


def nonconvex_objective(X: torch.Tensor, y: torch.Tensor, beta: float, hidden, output) -> torch.Tensor:
    """1/2 ||(X U)_+ alpha - y||^2 + beta/2 (||U||_F^2 + ||alpha||^2), as ``network_objective``."""
    residual = torch.relu(X @ hidden) @ output - y
    return 0.5 * residual @ residual + 0.5 * beta * (hidden.pow(2).sum() + output.pow(2).sum())


def train_nonconvex(
    problem: ConvexReLUProblem,
    width: int,
    *,
    optimizer: str = "adam",
    lr: float = 1e-2,
    epochs: int = 2000,
    seed: int = 0,
    num_threads: int | None = 1,
) -> NonconvexTraining:
    """Full-batch training of the width-``width`` network on the problem's X (bias column included) and y.

    Initialisation (seeded ``torch.Generator``): u_j ~ N(0, I / d), alpha_j ~ N(0, 1 / width). ``"sgd"`` is plain
    full-batch gradient descent (no momentum). The returned network's ``pattern`` is -1 (no source pattern).
    """
    if not isinstance(problem, ConvexReLUProblem):
        raise TypeError(f"problem: expected a ConvexReLUProblem, got {type(problem).__name__}")
    width, epochs = positive_int(width, "width"), positive_int(epochs, "epochs")
    lr = _positive_float(lr, "lr")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    with torch_threads(num_threads):
        return _train(problem, width, optimizer, lr, epochs, int(seed))


def _train(problem: ConvexReLUProblem, width: int, optimizer: str, lr: float, epochs: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    X = torch.as_tensor(problem.X, dtype=torch.float64)
    y = torch.as_tensor(problem.y, dtype=torch.float64)
    hidden = torch.randn((problem.d, width), generator=generator, dtype=torch.float64) / np.sqrt(problem.d)
    output = torch.randn(width, generator=generator, dtype=torch.float64) / np.sqrt(width)
    hidden.requires_grad_(True)
    output.requires_grad_(True)
    parameters = [hidden, output]
    step = torch.optim.Adam(parameters, lr=lr) if optimizer == "adam" else torch.optim.SGD(parameters, lr=lr)
    objective = np.empty(epochs + 1)
    for epoch in range(epochs):
        step.zero_grad()
        loss = nonconvex_objective(X, y, problem.beta, hidden, output)
        objective[epoch] = loss.item()
        loss.backward()
        step.step()
    with torch.no_grad():
        objective[epochs] = nonconvex_objective(X, y, problem.beta, hidden, output).item()
    network = ReLUNetwork(hidden.detach().numpy().copy(), output.detach().numpy().copy(), np.full(width, -1))
    return NonconvexTraining(objective, network, optimizer, lr, seed)


def nonconvex_gap(
    problem: ConvexReLUProblem,
    convex_optimum: float,
    width: int,
    *,
    seeds=(0, 1, 2),
    optimizers=OPTIMIZERS,
    lr: dict | None = None,
    epochs: int = 2000,
) -> list[dict]:
    """Train per optimizer and seed; one row each with the final and best L, and (L - p*) / p* against the optimum.

    ``lr`` maps an optimizer to its step size (defaults: adam 1e-2, sgd 1e-3). The final objective is L of the
    returned network (``network_objective`` agrees); ``best_objective`` is the smallest logged L.
    """
    rates = {"adam": 1e-2, "sgd": 1e-3} | (lr or {})
    rows = []
    for optimizer in optimizers:
        for seed in seeds:
            run = train_nonconvex(problem, width, optimizer=optimizer, lr=rates[optimizer], epochs=epochs, seed=seed)
            final = network_objective(problem, run.network)
            rows.append(
                {
                    "optimizer": optimizer,
                    "seed": int(seed),
                    "final_objective": final,
                    "best_objective": float(run.objective.min()),
                    "convex_optimum": float(convex_optimum),
                    "relative_gap": (final - convex_optimum) / abs(convex_optimum),
                }
            )
    return rows
