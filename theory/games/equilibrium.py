"""The regularised Nash equilibrium of a preference game, distances to it, and a certificate that needs no pi*.

Everything is computed from log-probabilities l = log pi, normalised by a max-shifted logsumexp
(:func:`normalise_logits`); a policy is never renormalised directly. With r(pi) = log pi - log mu - P pi / beta:

1. Equilibrium. The game J_beta(pi, pi') = pi^T P pi' - beta KL(pi || mu) + beta KL(pi' || mu) has the unique
   symmetric Nash equilibrium pi* = softmax(log mu + P pi* / beta), i.e. span(r(pi*)) = 0. For uniform mu it is the
   logit quantal response equilibrium (lambda = 1 / beta) of the zero-sum game P - 1/2.
2. Best response and exploitability. BR(pi) = softmax(log mu + P pi / beta) maximises J_beta(., pi), and by the
   Gibbs variational identity
       e(pi) = max_pi' J_beta(pi', pi) - 1/2 = beta log sum_y mu(y) exp((P pi)(y) / beta) + beta KL(pi || mu) - 1/2
             = beta KL(pi || BR(pi));
   the two-sided duality gap of (pi, pi) is 2 e(pi).
3. Certificate. F(pi) = beta (log pi - log mu) - P pi is beta-strongly monotone relative to the entropy
   ((pi - pi*)^T P (pi - pi*) = 0), so with Pinsker
       beta KL(pi* || pi) <= <F(pi), pi - pi*> <= 1/2 span(F) |pi - pi*|_1 <= 1/2 beta span(r) sqrt(2 KL(pi* || pi)),
   i.e. KL(pi* || pi) <= 1/2 span(r(pi))^2: an upper bound computable from pi alone (one product with P).
4. Ground truth (:func:`solve_equilibrium`). Nash mirror prox (:class:`theory.games.nash.NashMirrorProx`, eta' = 2)
   until span(r) <= ``newton_start``, then Newton's method on the logits z:
       G(z) = z - log mu - P softmax(z) / beta,   G'(z) = I - P (diag pi - pi pi^T) / beta,
   with pi = softmax(z). G'(z) 1 = 1 (the rows of diag pi - pi pi^T sum to zero) and P (diag pi - pi pi^T) is similar
   to a skew matrix on the range of diag pi - pi pi^T, so G' is invertible without a gauge fix, and a Newton step
   from z - c 1 lands on the same policy as from z. Newton needs the dense P and O(A^3) work, so it runs for
   A <= NEWTON_MAX_ACTIONS; larger or low-rank games stop at the certified mirror-prox iterate.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from theory.backend import array_module, to_numpy
from theory.games.preference import PreferenceGame
from theory.solver import Callback, SolverResult, iterate

NEWTON_MAX_ACTIONS = 4000
NEWTON_START = 1e-2
"""Residual span at which Newton takes over (KL(pi* || pi) <= 5e-5 is then certified). Measured on random games
(A = 1000, 4000; beta = 0.1, 0.01), Newton from there needs two steps, and the whole solve is 1.2-1.5x faster than from
1e-4; a Newton step that fails sends the solver back to mirror prox (:class:`EquilibriumSolver`)."""
NEWTON_QUADRATIC = 0.1
"""A Newton step that shrinks no game's residual span by this factor ends the polish (rounding floor reached)."""
ROUNDING_FLOOR = 16
"""The polish also ends once every span is below ROUNDING_FLOOR eps (|log pi| + |log mu| + |P pi| / beta)_max."""


# --------------------------------------------------------------------------------------------- log-space helpers


def normalise_logits(logits):
    """l - logsumexp(l) over the last axis, with the max shifted out first."""
    xp = array_module(logits)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def kl(p_log, q_log):
    """KL(p || q) = sum p (l_p - l_q) over the last axis, from log-probabilities, in float64.

    Each term is evaluated as q phi(delta), phi(delta) = delta e^delta - e^delta + 1 >= 0 (delta = l_p - l_q), which
    equals p delta - p + q: the first-order terms that cancel in sum p delta never appear, so a KL of 1e-20 between
    nearby policies comes out accurate to its own relative precision, not to 1e-16.
    """
    xp = array_module(p_log)
    p_log = xp.asarray(p_log, dtype=xp.float64)
    q_log = xp.asarray(q_log, dtype=xp.float64)
    delta = p_log - q_log
    q = xp.exp(q_log)
    # Clipping keeps exp finite and makes p(y) = 0 (delta = -inf) contribute q(y), as p delta - p + q does.
    near = xp.clip(delta, -700.0, 1.0)
    term = q * (near * xp.exp(near) - xp.expm1(near))
    far = delta > 1.0  # there p delta - p + q has no cancellation (and q e^delta could overflow)
    if bool(xp.any(far)):
        p = xp.exp(p_log)
        term = xp.where(far, p * xp.maximum(delta, 1.0) - p + q, term)
    return xp.sum(term, axis=-1)


def span(values):
    """max - min over the last axis (the span semi-norm; constant shifts of logits do not count)."""
    xp = array_module(values)
    return xp.max(values, axis=-1) - xp.min(values, axis=-1)


# --------------------------------------------------------------------------------------------- a game on a backend


class GameArrays:
    """A game's arrays on an array module, shaped to broadcast against policies of shape ``shape``.

    ``log_reference`` is log mu; ``beta`` has a trailing axis of length one (shape batch + (1,)); ``shape`` is
    batch_shape + (A,).
    """

    def __init__(self, game: PreferenceGame, xp: ModuleType = np) -> None:
        if not isinstance(game, PreferenceGame):
            raise TypeError(f"game: expected a PreferenceGame, got {type(game).__name__}")
        self.game, self.xp = game, xp
        self.operator = game.operator(xp)
        self.log_reference = xp.log(xp.asarray(game.reference))
        self.beta = xp.asarray(np.asarray(game.beta, dtype=game.dtype)[..., None])
        self.shape = game.batch_shape + (game.n_actions,)

    def matvec(self, pi):
        return self.operator.matvec(pi)

    def residual(self, log_pi, P_pi):
        """r = log pi - log mu - P pi / beta."""
        return log_pi - self.log_reference - P_pi / self.beta

    def best_response_logits(self, P_pi):
        """log BR(pi) = log mu + P pi / beta, normalised."""
        return normalise_logits(self.log_reference + P_pi / self.beta)

    def certified_metrics(self, log_pi, P_pi) -> dict:
        """Per game: ``certificate`` 1/2 span(r)^2, ``residual_span`` and ``exploitability`` beta KL(pi || BR(pi))."""
        spans = self.xp.asarray(span(self.residual(log_pi, P_pi)), dtype=self.xp.float64)
        gap = self.beta[..., 0] * kl(log_pi, self.best_response_logits(P_pi))
        return {"certificate": 0.5 * spans**2, "residual_span": spans, "exploitability": gap}


# --------------------------------------------------------------------------------------------- metrics of a policy


def _with_log(pi):
    xp = array_module(pi)
    with np.errstate(divide="ignore"):
        return xp.log(pi)


def best_response_logits(game: PreferenceGame, pi):
    """log BR(pi) = log mu + P pi / beta - logsumexp(.): player 1's regularised best response to pi."""
    arrays = GameArrays(game, array_module(pi))
    return arrays.best_response_logits(arrays.matvec(pi))


def exploitability(game: PreferenceGame, pi):
    """e(pi) = beta KL(pi || BR(pi)) = max_pi' J_beta(pi', pi) - 1/2 (module docstring, step 2); per game."""
    arrays = GameArrays(game, array_module(pi))
    return arrays.beta[..., 0] * kl(_with_log(pi), arrays.best_response_logits(arrays.matvec(pi)))


def duality_gap(game: PreferenceGame, pi):
    """max_pi' J_beta(pi', pi) - min_pi'' J_beta(pi, pi'') = 2 e(pi) (the game is symmetric)."""
    return 2 * exploitability(game, pi)


def unregularised_exploitability(game: PreferenceGame, pi):
    """max_y (P pi)(y) - pi^T P pi: how much the best pure action beats pi in the game without regularisation."""
    xp = array_module(pi)
    P_pi = game.operator(xp).matvec(pi)
    return xp.max(P_pi, axis=-1) - xp.sum(pi * P_pi, axis=-1)


def residual(game: PreferenceGame, log_pi):
    """r = log pi - log mu - P pi / beta; constant (span 0) exactly at pi*."""
    arrays = GameArrays(game, array_module(log_pi))
    return arrays.residual(log_pi, arrays.matvec(arrays.xp.exp(log_pi)))


def kl_certificate(game: PreferenceGame, log_pi):
    """1/2 span(r(pi))^2 >= KL(pi* || pi), computable without pi* (module docstring, step 3)."""
    return 0.5 * span(residual(game, log_pi)) ** 2


# --------------------------------------------------------------------------------------------- ground truth


def newton_update(arrays: GameArrays, log_pi, P_pi):
    """One Newton step on G(z) = z - log mu - P softmax(z) / beta from z = log pi (dense P, batched solve)."""
    xp = arrays.xp
    P = arrays.operator.matrix
    pi = xp.exp(log_pi)
    # G'(z) = I - (P diag(pi) - (P pi) pi^T) / beta
    coupling = (P * pi[..., None, :] - P_pi[..., :, None] * pi[..., None, :]) / arrays.beta[..., None]
    jacobian = xp.eye(pi.shape[-1], dtype=pi.dtype) - coupling
    # G'(z) 1 = 1, so the constant part of r only shifts z; solving for the centred r keeps the right-hand side at
    # the size of the error (a constant of ~1/beta would cost the solve cond * eps * |r| of accuracy).
    r = arrays.residual(log_pi, P_pi)
    step = xp.linalg.solve(jacobian, -(r - xp.mean(r, axis=-1, keepdims=True))[..., None])[..., 0]
    return normalise_logits(log_pi + step)


class EquilibriumSolver:
    """Stepped ground truth for pi* (module docstring, step 4): Nash mirror prox, then a Newton polish.

    ``step()`` returns the worst game's ``certificate``, ``residual_span``, ``exploitability``, the mirror-prox
    ``queries`` so far and ``newton`` (1 for a Newton step). Newton steps are accepted per game only where they
    shrink the residual span; the polish ends once every span is at the rounding floor (``ROUNDING_FLOOR``) or no
    game's span shrank by ``NEWTON_QUADRATIC``. ``converged``: the certificate is <= ``tol`` in every game and, if
    Newton ran, the polish has ended.
    If it ends above ``tol`` (Newton left its basin), mirror prox resumes with a 100x smaller ``newton_start``.
    Accessors: ``log_policy``, ``policy``, ``certificate``, ``residual_span``, ``exploitability`` (numpy, per game).
    """

    def __init__(
        self,
        game: PreferenceGame,
        *,
        tol: float = 1e-13,
        newton: bool = True,
        newton_start: float = NEWTON_START,
        backend: str = "auto",
    ) -> None:
        from theory.games.nash import NashMirrorProx  # nash.py builds on this module's metrics

        self._mirror_prox = NashMirrorProx(game, tol=tol, backend=backend)
        self.arrays = self._mirror_prox.arrays
        self.xp = self.arrays.xp
        self.tol = self._mirror_prox.tol
        if not (np.isfinite(newton_start) and newton_start > 0):
            raise ValueError(f"newton_start: expected a positive residual span, got {newton_start!r}")
        self.newton_start = float(newton_start)
        self.use_newton = bool(newton) and not game.is_low_rank and game.n_actions <= NEWTON_MAX_ACTIONS
        self.newton_steps = 0
        self._newton_phase = False
        self._polished = False
        self._log_pi = self._P_pi = self._metrics = None

    @property
    def converged(self) -> bool:
        if not self._newton_phase:
            return self._mirror_prox.converged
        return self._polished and float(self.xp.max(self._metrics["certificate"])) <= self.tol

    def step(self) -> dict[str, float]:
        if not self._newton_phase:
            metrics = self._mirror_prox.step() | {"newton": 0.0}
            spans = self._mirror_prox.residual_spans
            if self.use_newton and not self._mirror_prox.converged and float(spans.max()) <= self.newton_start:
                self._newton_phase, self._polished = True, False
                self._log_pi, self._P_pi = self._mirror_prox.iterate_and_product()
                self._metrics = self.arrays.certified_metrics(self._log_pi, self._P_pi)
            return metrics
        xp = self.xp
        candidate = newton_update(self.arrays, self._log_pi, self._P_pi)
        P_candidate = self.arrays.matvec(xp.exp(candidate))
        metrics = self.arrays.certified_metrics(candidate, P_candidate)
        old_spans, new_spans = self._metrics["residual_span"], metrics["residual_span"]
        improved = new_spans < old_spans
        self._log_pi = xp.where(improved[..., None], candidate, self._log_pi)
        self._P_pi = xp.where(improved[..., None], P_candidate, self._P_pi)
        self._metrics = {name: xp.where(improved, metrics[name], self._metrics[name]) for name in metrics}
        self.newton_steps += 1
        at_floor = bool(xp.all(self._metrics["residual_span"] <= self._rounding_floor()))
        self._polished = at_floor or not bool(xp.any(new_spans <= NEWTON_QUADRATIC * old_spans))
        if self._polished and float(xp.max(self._metrics["certificate"])) > self.tol:
            self._newton_phase = False
            self.newton_start /= 100
            self._mirror_prox.restart(self._log_pi)
        return {name: float(xp.max(value)) for name, value in self._metrics.items()} | {
            "queries": float(self._mirror_prox.queries),
            "newton": 1.0,
        }

    def _rounding_floor(self):
        """The residual span that rounding alone leaves, per game (each term of r carries eps of its size)."""
        xp, arrays = self.xp, self.arrays
        size = (
            xp.max(xp.abs(self._log_pi), axis=-1)
            + xp.max(xp.abs(arrays.log_reference), axis=-1)
            + xp.max(xp.abs(self._P_pi / arrays.beta), axis=-1)
        )
        return ROUNDING_FLOOR * xp.finfo(self._log_pi.dtype).eps * size

    def _state(self):
        if self._newton_phase:
            return self._log_pi, self._metrics
        return self._mirror_prox.iterate_and_product()[0], self._mirror_prox.current_metrics()

    @property
    def queries(self) -> int:
        """Preference queries of the mirror-prox phase (Newton reads P itself)."""
        return self._mirror_prox.queries

    @property
    def log_policy(self) -> np.ndarray:
        return to_numpy(self._state()[0])

    @property
    def policy(self) -> np.ndarray:
        return np.exp(self.log_policy)

    @property
    def certificate(self):
        return _per_game(self._state()[1]["certificate"])

    @property
    def residual_span(self):
        return _per_game(self._state()[1]["residual_span"])

    @property
    def exploitability(self):
        return _per_game(self._state()[1]["exploitability"])


def _per_game(values):
    """A float for one game, a numpy array for a batch."""
    values = to_numpy(values)
    return float(values) if values.ndim == 0 else values


@dataclass(frozen=True, kw_only=True)
class EquilibriumResult(SolverResult):
    """``log_policy`` and ``policy`` of pi* (shape batch + (A,)), the ``certificate`` 1/2 span(r)^2 >= KL(pi* || pi),
    the ``residual_span`` span(r), the ``exploitability`` beta KL(pi || BR(pi)) (floats, or arrays per game), the
    mirror-prox ``queries``, the number of ``newton_steps`` and the ``backend``."""

    log_policy: np.ndarray
    policy: np.ndarray
    certificate: float | np.ndarray
    residual_span: float | np.ndarray
    exploitability: float | np.ndarray
    queries: int
    newton_steps: int
    backend: str


def solve_equilibrium(
    game: PreferenceGame,
    *,
    tol: float = 1e-13,
    max_iter: int = 100_000,
    newton: bool = True,
    newton_start: float = NEWTON_START,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
    backend: str = "auto",
) -> EquilibriumResult:
    """pi* of ``game`` (one game or a batch) by :class:`EquilibriumSolver`: converged when KL(pi* || pi) <= ``tol`` is
    certified and, for dense games with A <= NEWTON_MAX_ACTIONS, the Newton polish has reached the rounding floor
    (span(r) ~ 1e-14 in float64)."""
    solver = EquilibriumSolver(game, tol=tol, newton=newton, newton_start=newton_start, backend=backend)
    outcome = iterate(solver, max_iter=max_iter, callback=callback, callback_every=callback_every, progress=progress)
    log_policy = solver.log_policy
    return EquilibriumResult(
        log_policy=log_policy,
        policy=np.exp(log_policy),
        certificate=solver.certificate,
        residual_span=solver.residual_span,
        exploitability=solver.exploitability,
        queries=solver.queries,
        newton_steps=solver.newton_steps,
        backend=solver.xp.__name__,
        **outcome.fields(),
    )
