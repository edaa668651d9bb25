"""Small-Gain Nash (SGN) certificates: contraction of the game flow x' = -F(x) in a weighted metric.

Paper: V. Sharma, "Small-Gain Nash: Certified Contraction to Nash Equilibria in Differentiable
Games" (arXiv 2512.06791). Steps:

1. On a region, bound each player's curvature mu_i = inf lambda_min(sym J_ii) and the cross-player
   couplings L_ij = sup ||J_ij||_2 (exact for quadratic games, sampled with a safety margin otherwise).
2. For weights w > 0 (metric M(w) = diag(w_i I_{d_i})) form C(w)_ii = 2 w_i mu_i,
   C(w)_ij = -(w_i L_ij + w_j L_ji), i.e. C = W K + K^T W with K_ii = mu_i, K_ij = -L_ij.
   The margin alpha(w) = 1/2 lambda_min(D^{-1/2} C D^{-1/2}), D = diag(w), makes F alpha-strongly
   monotone in ||.||_M: the flow contracts like exp(-alpha t) there.
3. Some w gives alpha > 0 iff K is a nonsingular M-matrix, i.e. the gain matrix Gamma_ij = L_ij / mu_i
   (i != j) has spectral radius < 1 (the small-gain condition); then w_i = y_i / x_i with
   x = K^{-1} 1, y = K^{-T} 1 certifies (Perron / diagonal-Lyapunov weights). For two players the
   best ratio is w2/w1 = L12/L21, alpha* = (mu1 + mu2)/2 - sqrt((mu1 - mu2)^2 + 4 L12 L21)/2, and
   alpha(w) > a exactly on the timescale band r_-(a) < w2/w1 < r_+(a),
   r_+- = [2K - L12 L21 +- 2 sqrt(K (K - L12 L21))] / L21^2, K = (mu1 - a)(mu2 - a).
4. With beta = sup ||M^{1/2} J M^{-1/2}||_2, projected Euler with step h contracts by
   sqrt(1 - 2 h alpha + h^2 beta^2) < 1 per step for h < 2 alpha / beta^2 (best at h = alpha / beta^2).
   RK4 is given the guideline h <= 2.5 / beta of the paper's code: a heuristic, not a proved bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from theory.sgn.games import DifferentiableGame, Region

RK4_GUIDELINE = 2.5


def _sym_min_eig(matrix: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(0.5 * (matrix + matrix.T))[0])


@dataclass(frozen=True)
class GameBounds:
    """Step 1's bounds on a region: ``mu`` (N,), ``coupling`` (N, N) with zero diagonal.

    ``exact`` is True for quadratic games. Sampled bounds were taken over ``n_points`` points of the
    region and widened by ``safety_margin`` (mu shrunk and L grown by that fraction): an estimate, not
    a proof. ``jacobians`` keeps the sampled Jacobians to evaluate the metric Lipschitz constant.
    """

    mu: np.ndarray
    coupling: np.ndarray
    blocks: tuple[int, ...]
    exact: bool
    n_points: int
    safety_margin: float
    euclidean_margin: float
    jacobians: np.ndarray = field(repr=False)

    def describe(self) -> str:
        if self.exact:
            return "exact bounds (quadratic game: the Jacobian is constant)"
        return (
            f"sampled bounds over {self.n_points} points of the region, widened by a safety margin of "
            f"{self.safety_margin:.0%}: an estimate, not a proof"
        )


def estimate_bounds(
    game: DifferentiableGame,
    region: Region | None = None,
    *,
    n_samples: int = 256,
    safety_margin: float = 0.05,
    seed: int | np.random.Generator = 0,
) -> GameBounds:
    """mu_i, L_ij and the Euclidean monotonicity margin inf lambda_min(sym J) on ``region``."""
    if not isinstance(game, DifferentiableGame):
        raise TypeError(f"game: expected a DifferentiableGame, got {type(game).__name__}")
    if game.is_quadratic:
        jacobians = game.jacobian(np.zeros(game.dim))[None]
        exact, margin = True, 0.0
    else:
        if region is None:
            raise ValueError("region: a non-quadratic game needs a Box or Ball where its bounds are estimated")
        if region.dim != game.dim:
            raise ValueError(f"region: expected dimension {game.dim}, got {region.dim}")
        if not (isinstance(n_samples, int) and n_samples >= 1):
            raise ValueError(f"n_samples: expected a positive integer, got {n_samples!r}")
        if not 0 <= safety_margin < 1:
            raise ValueError(f"safety_margin: expected a fraction in [0, 1), got {safety_margin!r}")
        rng = np.random.default_rng(seed)
        jacobians = np.stack([game.jacobian(x) for x in region.sample(n_samples, rng)])
        exact, margin = False, float(safety_margin)
    n = game.n_players
    mu, coupling = np.empty(n), np.zeros((n, n))
    for i, rows in enumerate(game.slices):
        mu[i] = min(_sym_min_eig(J[rows, rows]) for J in jacobians)
        for j, cols in enumerate(game.slices):
            if i != j:
                coupling[i, j] = max(np.linalg.norm(J[rows, cols], 2) for J in jacobians)
    euclidean = min(_sym_min_eig(J) for J in jacobians)
    if not exact:
        mu, coupling = mu - margin * np.abs(mu), coupling * (1 + margin)
        euclidean -= margin * abs(euclidean)
    return GameBounds(mu, coupling, game.blocks, exact, len(jacobians), margin, euclidean, jacobians)


def _checked_bounds(mu, coupling) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=float)
    coupling = np.asarray(coupling, dtype=float)
    if mu.ndim != 1 or mu.size < 2 or not np.all(np.isfinite(mu)):
        raise ValueError(f"mu: expected a finite 1-D array of at least two curvatures, got {mu!r}")
    if coupling.shape != (mu.size, mu.size) or not np.all(np.isfinite(coupling)) or np.any(coupling < 0):
        raise ValueError(f"coupling: expected a non-negative finite ({mu.size}, {mu.size}) matrix")
    coupling = coupling.copy()
    np.fill_diagonal(coupling, 0.0)
    return mu, coupling


def _checked_weights(weights, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"weights: expected {n} positive finite numbers, got {weights!r}")
    return w


def gain_matrix(mu, coupling, weights) -> np.ndarray:
    """C(w): C_ii = 2 w_i mu_i, C_ij = -(w_i L_ij + w_j L_ji)."""
    mu, coupling = _checked_bounds(mu, coupling)
    w = _checked_weights(weights, mu.size)
    K = np.diag(mu) - coupling
    return w[:, None] * K + K.T * w[None, :]


def margin(mu, coupling, weights) -> float:
    """alpha(w) = 1/2 lambda_min(D^{-1/2} C(w) D^{-1/2})."""
    C = gain_matrix(mu, coupling, weights)
    scale = 1.0 / np.sqrt(np.asarray(weights, dtype=float))
    return 0.5 * float(np.linalg.eigvalsh(scale[:, None] * C * scale[None, :])[0])


def small_gain_radius(mu, coupling) -> float:
    """rho(Gamma), Gamma_ij = L_ij / mu_i; infinite when some mu_i <= 0 (no curvature to absorb coupling)."""
    mu, coupling = _checked_bounds(mu, coupling)
    if np.any(mu <= 0):
        return np.inf
    return float(np.max(np.abs(np.linalg.eigvals(coupling / mu[:, None]))))


def perron_weights(mu, coupling) -> np.ndarray | None:
    """w = y / x with x = K^{-1} 1, y = K^{-T} 1 (normalised to w_1 = 1), or None when rho(Gamma) >= 1."""
    mu, coupling = _checked_bounds(mu, coupling)
    if small_gain_radius(mu, coupling) >= 1:
        return None
    K = np.diag(mu) - coupling
    ones = np.ones(mu.size)
    w = np.linalg.solve(K.T, ones) / np.linalg.solve(K, ones)
    return w / w[0]


def two_player_optimum(mu, coupling) -> tuple[float, float]:
    """The best ratio r* = w2/w1 = L12/L21 and alpha* = (mu1+mu2)/2 - sqrt((mu1-mu2)^2 + 4 L12 L21)/2."""
    mu, coupling = _checked_bounds(mu, coupling)
    if mu.size != 2:
        raise ValueError(f"mu: the closed form is for two players, got {mu.size}")
    l12, l21 = coupling[0, 1], coupling[1, 0]
    ratio = l12 / l21 if l21 > 0 and l12 > 0 else (1.0 if l12 == l21 == 0 else np.nan)
    alpha = 0.5 * (mu[0] + mu[1]) - 0.5 * np.sqrt((mu[0] - mu[1]) ** 2 + 4 * l12 * l21)
    return float(ratio), float(alpha)


def timescale_band(mu, coupling, alpha: float = 0.0) -> tuple[float, float] | None:
    """The open interval of ratios w2/w1 with alpha(w) > ``alpha`` (two players), or None when empty."""
    mu, coupling = _checked_bounds(mu, coupling)
    if mu.size != 2:
        raise ValueError(f"mu: the timescale band is for two players, got {mu.size}")
    l12, l21 = coupling[0, 1], coupling[1, 0]
    k = (mu[0] - alpha) * (mu[1] - alpha)
    if mu[0] <= alpha or mu[1] <= alpha or k <= l12 * l21:
        return None
    if l21 == 0:
        return (l12**2 / (4 * k), np.inf) if l12 > 0 else (0.0, np.inf)
    root = 2 * np.sqrt(k * (k - l12 * l21))
    return float((2 * k - l12 * l21 - root) / l21**2), float((2 * k - l12 * l21 + root) / l21**2)


def optimise_weights(mu, coupling, *, method: str = "auto") -> np.ndarray:
    """Weights (w_1 = 1) maximising alpha(w).

    ``"closed_form"`` (two players), ``"perron"`` (certifying, not always optimal), ``"numerical"``
    (Nelder-Mead on log w from the Perron weights, or ones), ``"auto"``: closed form for two players
    when defined, else the better of Perron and numerical.
    """
    mu, coupling = _checked_bounds(mu, coupling)
    n = mu.size
    if method not in ("auto", "closed_form", "perron", "numerical"):
        raise ValueError(f"method: expected 'auto', 'closed_form', 'perron' or 'numerical', got {method!r}")
    if method in ("auto", "closed_form") and n == 2:
        ratio, _ = two_player_optimum(mu, coupling)
        if np.isfinite(ratio):
            return np.array([1.0, ratio])
        if method == "closed_form":
            raise ValueError("coupling: the closed form needs L12, L21 both positive or both zero")
    elif method == "closed_form":
        raise ValueError(f"method: 'closed_form' is for two players, got {n}")
    perron = perron_weights(mu, coupling)
    if method == "perron":
        if perron is None:
            raise ValueError("mu: rho(L_ij / mu_i) >= 1, so no Perron weights exist (the game is not certifiable)")
        return perron
    start = np.log(perron) if perron is not None else np.zeros(n)

    def negative_margin(log_w_rest: np.ndarray) -> float:
        return -margin(mu, coupling, np.exp(np.concatenate([[0.0], np.clip(log_w_rest, -30, 30)])))

    result = minimize(negative_margin, start[1:], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14})
    numerical = np.exp(np.concatenate([[0.0], np.clip(result.x, -30, 30)]))
    if method == "numerical" or perron is None:
        return numerical
    return max((perron, numerical), key=lambda w: margin(mu, coupling, w))


def metric_lipschitz(jacobians: np.ndarray, blocks, weights) -> float:
    """beta(w) = max over the given Jacobians of ||M^{1/2} J M^{-1/2}||_2, M = diag(w_i I_{d_i})."""
    scale = np.sqrt(np.repeat(np.asarray(weights, dtype=float), blocks))
    return float(max(np.linalg.norm(scale[:, None] * J / scale[None, :], 2) for J in np.atleast_3d(jacobians)))


@dataclass(frozen=True)
class SGNCertificate:
    """What :func:`certify` proves (or estimates, when ``bounds.exact`` is False) about a game on a region."""

    certified: bool
    weights: np.ndarray
    margin: float
    lipschitz: float
    euler_step_bound: float
    euler_step: float
    rk4_step_guideline: float
    band: tuple[float, float] | None
    spectral_radius: float
    euclidean_margin: float
    euclidean_certified: bool
    bounds: GameBounds
    message: str

    @property
    def contraction_rate(self) -> float:
        """The flow's rate: ||x(t) - y(t)||_M <= exp(-rate t) ||x(0) - y(0)||_M."""
        return self.margin

    def euler_factor(self, step: float) -> float:
        """sqrt(1 - 2 h alpha + h^2 beta^2): the certified per-step contraction of projected Euler at h."""
        return float(np.sqrt(max(0.0, 1 - 2 * step * self.margin + step**2 * self.lipschitz**2)))


def certify(
    game: DifferentiableGame,
    region: Region | None = None,
    *,
    weights=None,
    bounds: GameBounds | None = None,
    n_samples: int = 256,
    safety_margin: float = 0.05,
    seed: int = 0,
) -> SGNCertificate:
    """Certify ``game`` on ``region`` in the metric of ``weights`` (optimised when None)."""
    if bounds is None:
        bounds = estimate_bounds(game, region, n_samples=n_samples, safety_margin=safety_margin, seed=seed)
    mu, coupling = bounds.mu, bounds.coupling
    w = optimise_weights(mu, coupling) if weights is None else _checked_weights(weights, mu.size)
    w = w / w[0]
    alpha = margin(mu, coupling, w)
    beta = metric_lipschitz(bounds.jacobians, bounds.blocks, w)
    if not bounds.exact:
        beta *= 1 + bounds.safety_margin
    rho = small_gain_radius(mu, coupling)
    certified = alpha > 0
    band = timescale_band(mu, coupling) if mu.size == 2 else None
    if certified:
        message = f"contracts at rate {alpha:.6g} in the weighted metric; {bounds.describe()}"
    elif rho >= 1:
        message = f"not certified: the small-gain radius rho(L_ij / mu_i) = {rho:.6g} >= 1; {bounds.describe()}"
    else:
        message = f"not certified with these weights (alpha = {alpha:.6g} <= 0); optimised weights would certify"
    return SGNCertificate(
        certified=certified,
        weights=w,
        margin=alpha,
        lipschitz=beta,
        euler_step_bound=2 * alpha / beta**2 if certified else 0.0,
        euler_step=alpha / beta**2 if certified else 0.0,
        rk4_step_guideline=RK4_GUIDELINE / beta,
        band=band,
        spectral_radius=rho,
        euclidean_margin=bounds.euclidean_margin,
        euclidean_certified=bounds.euclidean_margin > 0,
        bounds=bounds,
        message=message,
    )
