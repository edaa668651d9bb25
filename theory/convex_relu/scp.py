"""The sampled convex program (SCP): fix sampled first-layer directions and train the output layer by a lasso.

Paper: Bai, Gautam & Sojoudi, arXiv 2201.01965, describe a second algorithm, "simpler to implement", that "solves
unconstrained convex formulations and converges to an approximately globally optimal classifier". The paper's
exact statement was not available to us (notes/convex_relu.md, section 2.8); this module implements the clearly
stated version we can defend, with problem.py's objective and scaling:

1. Sample N directions u_j uniformly on the unit sphere of R^d (d counts the bias column), or take given ones.
2. Features phi_j = (X u_j)_+ (n x N): one fixed ReLU neuron per direction.
3. Solve the lasso  min_alpha 1/2 ||Phi alpha - y||^2 + beta ||alpha||_1  by FISTA with adaptive restart
   (Beck & Teboulle 2009; O'Donoghue & Candes 2015): step 1/L with L = ||Phi||_2^2,
   alpha <- soft(z - Phi^T (Phi z - y) / L, beta / L), z <- alpha + m_k (alpha - alpha_prev), the momentum
   reset whenever (z - alpha_new)^T (alpha_new - alpha_prev) > 0. Stopping: the relative lasso duality gap
   (dual point theta = r min(1, beta / ||Phi^T r||_inf), r = y - Phi alpha) is below ``tol``.
4. Network: neuron j = (sqrt|alpha_j| u_j, sign(alpha_j) sqrt|alpha_j|). With ||u_j|| = 1 its weight decay
   beta/2 (||u||^2 + alpha^2) equals beta |alpha_j| (the best rescaling of (u, alpha) -> (c u, alpha / c)), so
   the network objective of problem.py, step 1, equals the lasso objective.

What it trades off. Against the exact program (step 3 of problem.py, solved by :mod:`theory.convex_relu.admm`)
the SCP is unconstrained (no cone constraints, no second-order cones: a plain lasso whose iteration costs two
products with an n x N matrix), but each sampled direction fixes a whole neuron, not just its pattern: the
exact program optimises over the full cone of weights {v : (2 D - I) X v >= 0} of each pattern, the SCP over one
ray of it. Its optimum is therefore an upper bound: a feasible network, so at least the global optimum of the
network problem (the exact program over all patterns), and, when the directions are a problem's gates (each
gate lies in its own pattern's cone), at least that problem's optimum p*_P. It decreases as directions are
added (nested samples: exactly, the lasso over a superset of features) and approaches the global optimum as
the directions become dense on the sphere, slowly in d: the gap is the price of its simplicity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from theory.backend import get_backend, to_numpy
from theory.convex_relu.problem import ConvexReLUProblem, ReLUNetwork
from theory.solver import Callback, SolverResult, iterate


def sample_directions(d: int, n_samples: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``n_samples`` directions uniform on the unit sphere of R^d, as the columns of a d x N matrix."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"n_samples: expected a positive integer, got {n_samples!r}")
    directions = np.random.default_rng(seed).standard_normal((d, int(n_samples)))
    return directions / np.linalg.norm(directions, axis=0)


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


class SampledConvexProgram:
    """FISTA on the SCP lasso (module docstring, steps 1-4) of a :class:`ConvexReLUProblem`'s X, y and beta.

    ``directions`` (d x N, normalised here) or ``n_samples`` with ``seed`` choose the first layer. ``step()``
    returns ``objective`` (lasso = network objective) and, every ``gap_every`` iterations, ``relative_gap``.
    Accessors: ``alpha`` (N), ``directions`` (d x N, unit columns), ``objective``, ``lower_bound``, ``network``.
    """

    def __init__(
        self,
        problem: ConvexReLUProblem,
        *,
        n_samples: int | None = None,
        directions=None,
        seed: int | np.random.Generator = 0,
        tol: float = 1e-8,
        gap_every: int = 10,
        backend: str = "auto",
    ) -> None:
        if not isinstance(problem, ConvexReLUProblem):
            raise TypeError(f"problem: expected a ConvexReLUProblem, got {type(problem).__name__}")
        if (n_samples is None) == (directions is None):
            raise ValueError("n_samples, directions: give exactly one (a number of samples or a d x N matrix)")
        if directions is None:
            directions = sample_directions(problem.d, n_samples, seed)
        directions = np.asarray(directions, dtype=float)
        if directions.ndim != 2 or directions.shape[0] != problem.d or directions.shape[1] == 0:
            raise ValueError(f"directions: expected a ({problem.d}, N) matrix, got shape {directions.shape}")
        norms = np.linalg.norm(directions, axis=0)
        if not np.all(np.isfinite(directions)) or np.any(norms == 0):
            raise ValueError("directions: expected finite, non-zero columns")
        if isinstance(gap_every, bool) or not isinstance(gap_every, int | np.integer) or gap_every < 1:
            raise ValueError(f"gap_every: expected a positive integer, got {gap_every!r}")
        self.problem, self.tol, self.gap_every = problem, _positive(tol, "tol"), int(gap_every)
        self.xp = xp = get_backend(backend)
        self._directions = directions / norms
        self.Phi = xp.maximum(xp.asarray(problem.X) @ xp.asarray(self._directions), 0.0)
        self.y = xp.asarray(problem.y)
        self.lipschitz = self._largest_eigenvalue()
        n_features = self._directions.shape[1]
        self._alpha = xp.zeros(n_features)
        self._z = xp.zeros(n_features)
        self._momentum = 1.0
        self.objective = 0.5 * float(self.y @ self.y)
        self.lower_bound = 0.0
        self.relative_gap = math.inf
        self.n_iter = 0

    def _largest_eigenvalue(self, iterations: int = 100) -> float:
        """||Phi||_2^2 by power iteration on Phi^T Phi (ten percent of margin against the estimate's shortfall)."""
        xp = self.xp
        vector = xp.ones(self.Phi.shape[1]) / math.sqrt(self.Phi.shape[1])
        value = 0.0
        for _ in range(iterations):
            image = self.Phi.T @ (self.Phi @ vector)
            value = float(xp.linalg.norm(image))
            if value == 0:
                return 1.0
            vector = image / value
        return 1.1 * value

    @property
    def converged(self) -> bool:
        return self.relative_gap <= self.tol

    @property
    def alpha(self) -> np.ndarray:
        return to_numpy(self._alpha)

    @property
    def directions(self) -> np.ndarray:
        return self._directions

    @property
    def network(self) -> ReLUNetwork:
        """Module docstring, step 4; ``pattern`` holds the index of each neuron's direction."""
        alpha = self.alpha
        active = np.flatnonzero(alpha != 0)
        scale = np.sqrt(np.abs(alpha[active]))
        return ReLUNetwork(self._directions[:, active] * scale, np.sign(alpha[active]) * scale, active)

    def step(self) -> dict[str, float]:
        xp, beta, L = self.xp, self.problem.beta, self.lipschitz
        self.n_iter += 1
        gradient = self.Phi.T @ (self.Phi @ self._z - self.y)
        point = self._z - gradient / L
        alpha = xp.sign(point) * xp.maximum(xp.abs(point) - beta / L, 0.0)
        if float((self._z - alpha) @ (alpha - self._alpha)) > 0:  # adaptive restart
            self._momentum = 1.0
        momentum = (1 + math.sqrt(1 + 4 * self._momentum**2)) / 2
        self._z = alpha + ((self._momentum - 1) / momentum) * (alpha - self._alpha)
        self._alpha, self._momentum = alpha, momentum
        residual = self.y - self.Phi @ alpha
        self.objective = 0.5 * float(residual @ residual) + beta * float(xp.sum(xp.abs(alpha)))
        metrics = {"objective": self.objective}
        if self.n_iter % self.gap_every == 0:
            correlation = float(xp.max(xp.abs(self.Phi.T @ residual)))
            scale = min(1.0, beta / correlation) if correlation > 0 else 1.0
            theta = scale * residual
            self.lower_bound = 0.5 * float(self.y @ self.y) - 0.5 * float((theta - self.y) @ (theta - self.y))
            self.relative_gap = (self.objective - self.lower_bound) / max(abs(self.objective), 1e-300)
            metrics["relative_gap"] = self.relative_gap
        return metrics


@dataclass(frozen=True, kw_only=True)
class SCPResult(SolverResult):
    """Directions (d x N, unit), output weights ``alpha`` (N), the lasso ``objective`` (= the network objective),
    its dual ``lower_bound`` (of the lasso, not of the ReLU problem), and the recovered ``network``."""

    directions: np.ndarray
    alpha: np.ndarray
    objective: float
    lower_bound: float
    network: ReLUNetwork


def solve_scp(
    problem: ConvexReLUProblem,
    *,
    n_samples: int | None = None,
    directions=None,
    seed: int | np.random.Generator = 0,
    tol: float = 1e-8,
    max_iter: int = 20_000,
    gap_every: int = 10,
    callback: Callback | None = None,
    callback_every: int = 1,
    backend: str = "auto",
    progress: bool = False,
) -> SCPResult:
    """Run :class:`SampledConvexProgram` until its relative lasso gap is <= ``tol``, the callback stops it, or
    ``max_iter``; the network objective of the result (problem.py, step 1) equals ``objective``."""
    solver = SampledConvexProgram(
        problem, n_samples=n_samples, directions=directions, seed=seed, tol=tol, gap_every=gap_every, backend=backend
    )
    outcome = iterate(solver, max_iter=max_iter, callback=callback, callback_every=callback_every, progress=progress)
    return SCPResult(
        directions=solver.directions,
        alpha=solver.alpha,
        objective=solver.objective,
        lower_bound=solver.lower_bound,
        network=solver.network,
        **outcome.fields(),
    )
