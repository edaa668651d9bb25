"""Optimistic online mirror descent (OOMD) in the stochastically extended adversarial (SEA) model.

Paper: S. Chen, Y.-J. Zhang, W.-W. Tu, P. Zhao, L. Zhang, "Optimistic Online Mirror Descent for Bridging
Stochastic and Adversarial Online Convex Optimization" (arXiv 2302.04552, ICML 2023; JMLR 25(178), 2024).
SEA model (Sachs et al. 2022): at round t nature picks a distribution D_t, the learner plays x_t, then
f_t ~ D_t is revealed; F_t = E f_t. The two difficulty measures are

    sigma^2_{1:T} = sum_t sup_x E ||grad f_t(x) - grad F_t(x)||_*^2          (stochastic variance)
    Sigma^2_{1:T} = sum_t sup_x ||grad F_t(x) - grad F_{t-1}(x)||_*^2,  grad F_0 = 0   (adversarial variation)

and for convex, smooth F_t the paper's OOMD has expected regret O(sqrt(sigma^2_{1:T}) + sqrt(Sigma^2_{1:T})).

OOMD, one round t (B_psi the Bregman divergence of the geometry's mirror map psi):

1. play   x_t       = argmin_{x in X} eta_t <M_t, x> + B_psi(x, xhat_t),  optimism M_t = grad f_{t-1}(x_{t-1}), M_1 = 0;
2. observe g_t = grad f_t(x_t);
3. update xhat_{t+1} = argmin_{x in X} eta_t <g_t, x> + B_psi(x, xhat_t);
4. step   eta_t = D / sqrt(delta + 4 G^2 + Vbar_{t-1}),  Vbar_{t-1} = sum_{s<t} ||g_s - M_s||_*^2   (convex case).

Geometries: Euclidean psi = 1/2 ||x||^2 on a ball (both argmins are projected gradient steps) and the
negative entropy on the probability simplex (both are multiplicative-weights steps: OOMD = optimistic
MWU, the self-play dynamics of the preference games in this package).

What is derived here rather than read in the paper (of the paper, only its abstract and the convex step size,
as quoted by a later paper, were available):

- [D] the per-realisation certificate Regret_t <= D^2 / (2 eta_t) + sum_{s<=t} eta_s / 2 ||g_s - M_s||_*^2 of
  the Euclidean method with non-increasing steps (the standard optimistic-OMD lemma, convex f_t);
- [D, unverified against the paper] the strongly convex step eta_t = 2 / (lambda t): with it the same lemma
  gives Regret_T <= sum_t ||g_t - M_t||^2 / (lambda t) for lambda-strongly convex f_t (Euclidean);
- [D, heuristic] the simplex "diameter" D = sqrt(2 log d), chosen so that D^2 / 2 = log d = max_u KL(u || uniform).
  The varying-step analysis needs sup_t KL(u || xhat_t), which the entropy does not bound.

Baselines: :class:`OnlineMirrorDescent` (the same adaptive step, no optimism: M_t = 0) and
:class:`OnlineGradientDescent` (eta_t = D / (G sqrt t), adversarially safe; or the fixed-horizon step
D / (G sqrt T); or 1 / (lambda t) for lambda-strongly convex losses) and :class:`FollowTheRegularizedLeader` (FTRL on
the linearised losses with the same anytime step). On the simplex the same classes run (optimistic) multiplicative
weights, and FTRL is Hedge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from theory.solver import Callback, SolverResult, iterate


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return int(value)


def _real(value, name: str, *, positive: bool = False) -> float:
    """A finite real number, non-negative (or positive when ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: expected a {'positive' if positive else 'non-negative'} finite number, got {value}")
    return value


def _vector(value, dim: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != (dim,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected a finite vector of shape ({dim},), got shape {array.shape}")
    return array


# --------------------------------------------------------------------------------------------- geometries


@dataclass(frozen=True)
class EuclideanBall:
    """X = {x in R^d : ||x||_2 <= radius}, psi = 1/2 ||x||^2: mirror steps are projected gradient steps."""

    dim: int
    radius: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dim", _positive_int(self.dim, "dim"))
        object.__setattr__(self, "radius", _real(self.radius, "radius", positive=True))

    @property
    def diameter(self) -> float:
        """D = 2 radius."""
        return 2.0 * self.radius

    def initial_point(self) -> np.ndarray:
        return np.zeros(self.dim)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Euclidean projection onto the ball (works row-wise on a (T, d) array)."""
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return x * np.minimum(1.0, self.radius / np.maximum(norms, 1e-300))

    def mirror_step(self, anchor: np.ndarray, direction: np.ndarray, step: float) -> np.ndarray:
        """argmin_x step <direction, x> + 1/2 ||x - anchor||^2 over the ball = P(anchor - step direction)."""
        return self.project(anchor - step * direction)

    def dual_norm(self, v: np.ndarray) -> float:
        return float(np.linalg.norm(v))


@dataclass(frozen=True)
class ProbabilitySimplex:
    """X = {x >= 0, sum x = 1} in R^d, psi = sum x log x: mirror steps are multiplicative-weights steps."""

    dim: int

    def __post_init__(self) -> None:
        if _positive_int(self.dim, "dim") < 2:
            raise ValueError(f"dim: the simplex needs at least 2 coordinates, got {self.dim}")
        object.__setattr__(self, "dim", int(self.dim))

    @property
    def diameter(self) -> float:
        """D = sqrt(2 log d), so that D^2 / 2 = log d = max_u KL(u || uniform) [D, heuristic; module docstring]."""
        return float(np.sqrt(2.0 * np.log(self.dim)))

    def initial_point(self) -> np.ndarray:
        return np.full(self.dim, 1.0 / self.dim)

    def mirror_step(self, anchor: np.ndarray, direction: np.ndarray, step: float) -> np.ndarray:
        """argmin_x step <direction, x> + KL(x || anchor) = anchor exp(-step direction) / normaliser."""
        with np.errstate(divide="ignore"):
            logits = np.log(anchor) - step * direction
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def dual_norm(self, v: np.ndarray) -> float:
        """||v||_inf, the dual of the l1 norm in which the entropy is 1-strongly convex (Pinsker)."""
        return float(np.max(np.abs(v)))


Geometry = EuclideanBall | ProbabilitySimplex


# ----------------------------------------------------------------------------------------- loss sequences


@dataclass(frozen=True, eq=False)
class QuadraticLosses:
    """A realised sequence f_t(x) = 1/2 ||x - y_t||^2 on a ball, y_t = c_t + xi_t (row t of ``targets``)."""

    targets: np.ndarray
    domain: EuclideanBall

    @property
    def horizon(self) -> int:
        return self.targets.shape[0]

    def value(self, t: int, x: np.ndarray) -> float:
        """f_{t+1}(x) (``t`` counts from 0)."""
        return 0.5 * float(np.sum((x - self.targets[t]) ** 2))

    def gradient(self, t: int, x: np.ndarray) -> np.ndarray:
        return x - self.targets[t]

    def best_fixed(self) -> tuple[np.ndarray, np.ndarray]:
        """min_{x in ball} sum_{s<=t} f_s(x) (T,) and its minimiser (T, d), for every prefix t.

        sum_{s<=t} 1/2 ||x - y_s||^2 = t/2 ||x - ybar_t||^2 + const, so the minimiser is P(ybar_t), the
        projection of the running mean of the targets onto the ball.
        """
        rounds = np.arange(1, self.horizon + 1)[:, None]
        sums = np.cumsum(self.targets, axis=0)
        squares = np.cumsum(np.sum(self.targets**2, axis=1))
        best = self.domain.project(sums / rounds)
        values = 0.5 * rounds[:, 0] * np.sum(best**2, axis=1) - np.sum(best * sums, axis=1) + 0.5 * squares
        return values, best


@dataclass(frozen=True, eq=False)
class LinearLosses:
    """A realised sequence f_t(x) = <l_t, x> on the simplex, l_t = g_t + xi_t (row t of ``loss_vectors``)."""

    loss_vectors: np.ndarray
    domain: ProbabilitySimplex

    @property
    def horizon(self) -> int:
        return self.loss_vectors.shape[0]

    def value(self, t: int, x: np.ndarray) -> float:
        return float(self.loss_vectors[t] @ x)

    def gradient(self, t: int, x: np.ndarray) -> np.ndarray:
        return self.loss_vectors[t].copy()

    def best_fixed(self) -> tuple[np.ndarray, np.ndarray]:
        """min_i sum_{s<=t} l_s[i] (T,) and the vertex e_i attaining it (T, d), for every prefix t."""
        cumulative = np.cumsum(self.loss_vectors, axis=0)
        return cumulative.min(axis=1), np.eye(self.domain.dim)[np.argmin(cumulative, axis=1)]


Losses = QuadraticLosses | LinearLosses


# ------------------------------------------------------------------------------------------- environments


def switching_signs(T: int, period: int) -> np.ndarray:
    """s_t = (-1)^floor((t-1) / period) for t = 1..T: +1 on the first block, then alternating blocks."""
    return np.where((np.arange(T) // period) % 2 == 0, 1.0, -1.0)


@dataclass(frozen=True, kw_only=True, eq=False)
class _SwitchingEnvironment:
    """Means m_t = center + drift s_t direction, s_t = +-1 switching every ``period`` rounds, plus noise.

    The adversarial knob is ``drift``: the mean jumps by 2 drift ||direction||_* at each of the
    floor((T - 1) / period) switches (period 1: it alternates every round, the adversarial extreme).
    """

    dim: int
    noise: float = 0.0
    drift: float = 0.0
    period: int = 1
    center: np.ndarray | None = None
    direction: np.ndarray | None = None

    def __post_init__(self) -> None:
        dim = _positive_int(self.dim, "dim")
        object.__setattr__(self, "dim", dim)
        object.__setattr__(self, "noise", _real(self.noise, "noise"))
        object.__setattr__(self, "drift", _real(self.drift, "drift"))
        object.__setattr__(self, "period", _positive_int(self.period, "period"))
        center = self._default_center() if self.center is None else _vector(self.center, dim, "center")
        direction = self._default_direction() if self.direction is None else _vector(self.direction, dim, "direction")
        if not np.any(direction):
            raise ValueError("direction: expected a non-zero vector")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "direction", direction)

    def means(self, T: int) -> np.ndarray:
        """m_1..m_T as a (T, dim) array (grad F_t is built from them)."""
        signs = switching_signs(_positive_int(T, "T"), self.period)
        return self.center + self.drift * signs[:, None] * self.direction

    def sigma_sq_total(self, T: int) -> float:
        """sigma^2_{1:T} = T sigma_t^2 (the noise law does not change over time)."""
        return _positive_int(T, "T") * self.round_variance

    def variation_total(self, T: int) -> float:
        """Sigma^2_{1:T} = sup_x ||grad F_1(x)||_*^2 + (number of switches) (2 drift ||direction||_*)^2."""
        switches = (_positive_int(T, "T") - 1) // self.period
        jump = 2.0 * self.drift * self.domain.dual_norm(self.direction)
        return self.first_variation + switches * jump**2

    def _extreme_means(self) -> np.ndarray:
        """The two means center +- drift direction, (2, dim): every m_t is one of them."""
        return self.center + self.drift * np.array([[1.0], [-1.0]]) * self.direction

    def sample(self, T: int, seed: int | np.random.Generator = 0) -> Losses:
        """Draw f_1..f_T (the means are fixed in advance: an oblivious adversary)."""
        T = _positive_int(T, "T")
        rng = np.random.default_rng(seed)
        return self._losses(self.means(T) + self.noise * self._standard_noise(rng, (T, self.dim)))


@dataclass(frozen=True, kw_only=True, eq=False)
class SEAQuadraticEnvironment(_SwitchingEnvironment):
    """f_t(x) = 1/2 ||x - c_t - xi_t||^2 on the ball of radius ``radius`` in R^dim, xi_t ~ N(0, noise^2 I).

    grad f_t - grad F_t = -xi_t, so sigma_t^2 = dim noise^2; grad F_t - grad F_{t-1} = -(c_t - c_{t-1}) for
    t >= 2 and sup_{||x|| <= R} ||x - c_1||^2 = (R + ||c_1||)^2 at t = 1. ``direction`` is normalised to unit
    length; defaults: c centred at the origin, moving along e_1. Each f_t is 1-smooth and 1-strongly convex.
    """

    radius: float = 1.0
    strong_convexity = 1.0

    def _default_center(self) -> np.ndarray:
        return np.zeros(self.dim)

    def _default_direction(self) -> np.ndarray:
        return np.eye(self.dim)[0]

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", _real(self.radius, "radius", positive=True))
        super().__post_init__()
        object.__setattr__(self, "direction", self.direction / np.linalg.norm(self.direction))

    @property
    def domain(self) -> EuclideanBall:
        return EuclideanBall(self.dim, self.radius)

    @property
    def round_variance(self) -> float:
        return self.dim * self.noise**2

    @property
    def first_variation(self) -> float:
        return (self.radius + float(np.linalg.norm(self.means(1)[0]))) ** 2

    @property
    def gradient_bound(self) -> float:
        """G = R + max_t ||c_t|| + noise sqrt(dim): bounds sqrt(E ||grad f_t(x)||^2) on the ball.

        Gaussian gradients have no almost-sure bound; this is the root-mean-square one.
        """
        largest_mean = float(np.linalg.norm(self._extreme_means(), axis=1).max())
        return self.radius + largest_mean + self.noise * np.sqrt(self.dim)

    def _standard_noise(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        return rng.standard_normal(shape)

    def _losses(self, targets: np.ndarray) -> QuadraticLosses:
        return QuadraticLosses(targets, self.domain)


@dataclass(frozen=True, kw_only=True, eq=False)
class SEALinearSimplexEnvironment(_SwitchingEnvironment):
    """f_t(x) = <g_t + xi_t, x> on the simplex, xi_t = noise * (independent random signs): E ||xi_t||_inf^2 = noise^2.

    Rademacher rather than Gaussian noise keeps sigma_t^2 in the dual norm ||.||_inf exact. Means g_t switch
    between center +- drift direction; defaults: center = linspace(0, 1, dim) (action 0 best),
    direction = e_0 - e_{dim-1}. grad F_t = g_t is constant in x, so Sigma^2 starts with ||g_1||_inf^2.
    """

    def _default_center(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.dim)

    def _default_direction(self) -> np.ndarray:
        return np.eye(self.dim)[0] - np.eye(self.dim)[-1]

    @property
    def domain(self) -> ProbabilitySimplex:
        return ProbabilitySimplex(self.dim)

    @property
    def round_variance(self) -> float:
        return self.noise**2

    @property
    def first_variation(self) -> float:
        return self.domain.dual_norm(self.means(1)[0]) ** 2

    @property
    def gradient_bound(self) -> float:
        """G = max_t ||g_t||_inf + noise, an almost-sure bound on ||grad f_t||_inf."""
        return float(np.abs(self._extreme_means()).max()) + self.noise

    def _standard_noise(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        return rng.choice(np.array([-1.0, 1.0]), size=shape)

    def _losses(self, loss_vectors: np.ndarray) -> LinearLosses:
        return LinearLosses(loss_vectors, self.domain)


Environment = SEAQuadraticEnvironment | SEALinearSimplexEnvironment


# ----------------------------------------------------------------------------------------------- learners


class _MirrorLearner:
    """The shared two-step mirror-descent round; subclasses choose the step size and whether to be optimistic.

    x_t = argmin eta_t <M_t, x> + B(x, xhat_t);  xhat_{t+1} = argmin eta_t <g_t, x> + B(x, xhat_t).
    With M_t = 0 the play is the anchor itself, x_t = xhat_t: plain OMD / OGD.
    """

    optimistic = False

    def __init__(self, geometry: Geometry, *, gradient_bound: float) -> None:
        if not isinstance(geometry, EuclideanBall | ProbabilitySimplex):
            raise TypeError(f"geometry: expected an EuclideanBall or a ProbabilitySimplex, got {geometry!r}")
        self.geometry = geometry
        self.gradient_bound = _real(gradient_bound, "gradient_bound", positive=True)

    def reset(self) -> None:
        """Back to round 1: xhat_1 = the geometry's centre, M_1 = 0, Vbar_0 = 0."""
        self.round = 1
        self.variation = 0.0
        self._anchor = self.geometry.initial_point()
        self._hint = np.zeros(self.geometry.dim)
        self._prepare_round()

    def _prepare_round(self) -> None:
        self._step = self._step_size()
        # Without optimism M_t = 0 and x_t = xhat_t exactly; skip the (identity) mirror step.
        self._play = self._anchor
        if self.optimistic:
            self._play = self.geometry.mirror_step(self._anchor, self._hint, self._step)

    def _step_size(self) -> float:
        raise NotImplementedError

    @property
    def step_size(self) -> float:
        """eta_t of the current round."""
        return self._step

    @property
    def hint(self) -> np.ndarray:
        """M_t of the current round (zero for the non-optimistic learners)."""
        return self._hint.copy()

    @property
    def anchor(self) -> np.ndarray:
        """xhat_t."""
        return self._anchor.copy()

    def predict(self) -> np.ndarray:
        """x_t, the point played this round."""
        return self._play.copy()

    def update(self, gradient) -> None:
        """Take g_t = grad f_t(x_t), move the anchor and go to round t + 1."""
        g = _vector(gradient, self.geometry.dim, "gradient")
        self.variation += self.geometry.dual_norm(g - self._hint) ** 2
        self._anchor = self.geometry.mirror_step(self._anchor, g, self._step)
        if self.optimistic:
            self._hint = g
        self.round += 1
        self._prepare_round()


class OptimisticOMD(_MirrorLearner):
    """OOMD of Chen et al. (arXiv 2302.04552) with optimism M_t = grad f_{t-1}(x_{t-1}).

    Convex case: eta_t = D / sqrt(delta + 4 G^2 + Vbar_{t-1}), Vbar_{t-1} = sum_{s<t} ||g_s - M_s||_*^2.
    With ``strong_convexity`` lambda: eta_t = 2 / (lambda t) [D, unverified against the paper].
    """

    optimistic = True

    def __init__(
        self,
        geometry: Geometry,
        *,
        gradient_bound: float,
        delta: float = 1.0,
        strong_convexity: float | None = None,
    ) -> None:
        super().__init__(geometry, gradient_bound=gradient_bound)
        self.delta = _real(delta, "delta")
        self.strong_convexity = (
            None if strong_convexity is None else _real(strong_convexity, "strong_convexity", positive=True)
        )
        self.reset()

    def _step_size(self) -> float:
        if self.strong_convexity is not None:
            return 2.0 / (self.strong_convexity * self.round)
        return self.geometry.diameter / np.sqrt(self.delta + 4 * self.gradient_bound**2 + self.variation)


class OnlineMirrorDescent(OptimisticOMD):
    """OMD without optimism (M_t = 0, x_t = xhat_t) and OOMD's step: eta_t = D / sqrt(delta + 4G^2 + sum ||g_s||^2)."""

    optimistic = False


class OnlineGradientDescent(_MirrorLearner):
    """x_{t+1} = argmin eta_t <g_t, x> + B(x, x_t): projected OGD on the ball, Hedge on the simplex.

    eta_t = D / (G sqrt t) (anytime, adversarially safe); D / (G sqrt(horizon)) when ``horizon`` is given (the
    fixed-horizon tuning); 1 / (lambda t) with ``strong_convexity`` lambda.
    """

    def __init__(
        self,
        geometry: Geometry,
        *,
        gradient_bound: float,
        horizon: int | None = None,
        strong_convexity: float | None = None,
    ) -> None:
        super().__init__(geometry, gradient_bound=gradient_bound)
        if horizon is not None and strong_convexity is not None:
            raise ValueError("horizon: give either a horizon or a strong_convexity, not both")
        self.horizon = None if horizon is None else _positive_int(horizon, "horizon")
        self.strong_convexity = (
            None if strong_convexity is None else _real(strong_convexity, "strong_convexity", positive=True)
        )
        self.reset()

    def _step_size(self) -> float:
        if self.strong_convexity is not None:
            return 1.0 / (self.strong_convexity * self.round)
        rounds = self.round if self.horizon is None else self.horizon
        return self.geometry.diameter / (self.gradient_bound * np.sqrt(rounds))


class FollowTheRegularizedLeader(_MirrorLearner):
    """FTRL on the linearised losses: x_{t+1} = argmin_{x in X} eta_{t+1} <sum_{s<=t} g_s, x> + psi(x).

    psi is the geometry's mirror map centred at x_1 (1/2 ||x||^2 on the ball, the entropy on the simplex), so the
    argmin is one mirror step from x_1 along the gradient sum: P(-eta G_t) on the ball, softmax(-eta G_t) on the
    simplex (Hedge). eta_t = D / (G sqrt t) (anytime); D / (G sqrt(horizon)) when ``horizon`` is given. Unlike OMD,
    the step-size schedule is applied to the whole gradient sum (the "lazy" projection).
    """

    def __init__(self, geometry: Geometry, *, gradient_bound: float, horizon: int | None = None) -> None:
        super().__init__(geometry, gradient_bound=gradient_bound)
        self.horizon = None if horizon is None else _positive_int(horizon, "horizon")
        self.reset()

    def reset(self) -> None:
        self._gradient_sum = np.zeros(self.geometry.dim)
        super().reset()

    def _step_size(self) -> float:
        rounds = self.round if self.horizon is None else self.horizon
        return self.geometry.diameter / (self.gradient_bound * np.sqrt(rounds))

    def update(self, gradient) -> None:
        """Add g_t to the gradient sum and play its regularised leader at round t + 1."""
        g = _vector(gradient, self.geometry.dim, "gradient")
        self.variation += self.geometry.dual_norm(g) ** 2
        self._gradient_sum += g
        self.round += 1
        self._step = self._step_size()
        self._anchor = self.geometry.mirror_step(self.geometry.initial_point(), self._gradient_sum, self._step)
        self._play = self._anchor


Learner = OptimisticOMD | OnlineMirrorDescent | OnlineGradientDescent | FollowTheRegularizedLeader


# ------------------------------------------------------------------------------------------------ the game


class OnlineGame:
    """The protocol, stepped one round at a time: play x_t = learner.predict(), reveal f_t, feed grad f_t(x_t)."""

    def __init__(self, learner: Learner, losses: Losses) -> None:
        if not isinstance(learner, _MirrorLearner):
            raise TypeError(f"learner: expected an online learner such as OptimisticOMD, got {type(learner).__name__}")
        if learner.geometry != losses.domain:
            raise ValueError(f"learner: its geometry {learner.geometry} is not the environment's {losses.domain}")
        self.learner = learner
        self.losses = losses
        self.round = 0
        self.iterates = np.empty((losses.horizon, losses.domain.dim))
        self.round_losses = np.empty(losses.horizon)

    @property
    def converged(self) -> bool:
        """True once all T rounds are played."""
        return self.round == self.losses.horizon

    def step(self) -> dict[str, float]:
        t, learner = self.round, self.learner
        x, hint, step_size = learner.predict(), learner.hint, learner.step_size
        gradient = self.losses.gradient(t, x)
        self.iterates[t], self.round_losses[t] = x, self.losses.value(t, x)
        learner.update(gradient)
        self.round += 1
        return {
            "loss": self.round_losses[t],
            "step_size": step_size,
            "hint_error_sq": learner.geometry.dual_norm(gradient - hint) ** 2,
            "gradient_norm": learner.geometry.dual_norm(gradient),
        }


@dataclass(frozen=True, kw_only=True)
class OnlineResult(SolverResult):
    """One online run: per-round ``regret`` R_t = sum_{s<=t} f_s(x_s) - min_x sum_{s<=t} f_s(x) and its parts.

    ``iterates`` (T, d) are x_1..x_T; ``losses`` f_t(x_t); ``cumulative_loss`` and ``comparator_loss`` the two
    sums; ``comparator`` the best fixed point in hindsight at T; ``sigma_sq_total`` and ``variation_total`` the
    environment's sigma^2_{1:T} and Sigma^2_{1:T} at the horizon played. ``history`` holds per-round loss,
    step_size, hint_error_sq = ||g_t - M_t||_*^2, gradient_norm and seconds.
    """

    learner: str
    iterates: np.ndarray = field(repr=False)
    losses: np.ndarray = field(repr=False)
    cumulative_loss: np.ndarray = field(repr=False)
    comparator_loss: np.ndarray = field(repr=False)
    regret: np.ndarray = field(repr=False)
    comparator: np.ndarray
    sigma_sq_total: float
    variation_total: float

    @property
    def final_regret(self) -> float:
        return float(self.regret[-1])

    @property
    def bound_scale(self) -> float:
        """sqrt(sigma^2_{1:T}) + sqrt(Sigma^2_{1:T}), the shape of the paper's convex bound."""
        return float(np.sqrt(self.sigma_sq_total) + np.sqrt(self.variation_total))


def run_online(
    learner: Learner,
    environment: Environment,
    T: int,
    seed: int | np.random.Generator = 0,
    *,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
) -> OnlineResult:
    """Reset ``learner``, draw f_1..f_T from ``environment`` with ``seed`` and play T rounds.

    A callback returning True stops early; the result then covers the rounds played (converged=False).
    """
    if not isinstance(environment, SEAQuadraticEnvironment | SEALinearSimplexEnvironment):
        raise TypeError(f"environment: expected an SEA environment, got {type(environment).__name__}")
    T = _positive_int(T, "T")
    game = OnlineGame(learner, environment.sample(T, seed))
    learner.reset()
    outcome = iterate(game, max_iter=T, callback=callback, callback_every=callback_every, progress=progress)
    played = game.round
    comparator_loss, comparators = game.losses.best_fixed()
    cumulative_loss = np.cumsum(game.round_losses[:played])
    fields = outcome.fields()
    if outcome.converged:
        fields["message"] = f"played all {T} rounds"
    return OnlineResult(
        learner=type(learner).__name__,
        iterates=game.iterates[:played].copy(),
        losses=game.round_losses[:played].copy(),
        cumulative_loss=cumulative_loss,
        comparator_loss=comparator_loss[:played],
        regret=cumulative_loss - comparator_loss[:played],
        comparator=comparators[played - 1],
        sigma_sq_total=environment.sigma_sq_total(played),
        variation_total=environment.variation_total(played),
        **fields,
    )
