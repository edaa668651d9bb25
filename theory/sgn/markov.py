"""Small-Gain Nash in a tabular Markov game: softmax policies, exact policy gradients, Fisher geometry.

Paper: V. Sharma, "Small-Gain Nash: Certified Contraction to Nash Equilibria in Differentiable Games"
(arXiv 2512.06791), the Markov-game experiment (code ``AashVed/SmallGainNash``, ``markov/``).

Game. Two players, states s (S of them), actions a_1 (A_1) and a_2 (A_2), transitions P(s' | s, a_1, a_2),
rewards r_i(s, a_1, a_2), discount gamma in [0, 1), initial distribution rho, temperature tau > 0.
Player i plays pi_i(. | s) = softmax(theta_i[s]) (logits theta_i in R^{S x A_i}, flattened row-major) and
maximises its entropy-regularised normalised return, with one of two regularisations:

* ``"states"`` (default; the paper's code): V_i = (1 - gamma) E_rho[sum_t gamma^t r_i(s_t, a_t)]
  + tau sum_s H(pi_i(. | s)), the entropy summed over states with equal weight.
* ``"discounted"``: V_i = (1 - gamma) E_rho[sum_t gamma^t (r_i(s_t, a_t) + tau H(pi_i(. | s_t)))], the entropy
  weighted by the discounted occupancy (the standard entropy-regularised MDP).

Both are normalised by (1 - gamma) like the paper's code; the unnormalised sums are V_i / (1 - gamma)
(for ``"discounted"``), which rescales mu, L and beta by 1/(1 - gamma) and the step sizes by (1 - gamma).

Steps.

1. Exact evaluation on the joint chain P_pi(s' | s) = sum_a pi_1 pi_2 P: the values
   v_i = (I - gamma P_pi)^{-1} c_i with c_i(s) = E_pi r_i(s, .) (+ tau H(pi_i(. | s)) for ``"discounted"``),
   the occupancy d^T = (1 - gamma) rho^T (I - gamma P_pi)^{-1}, and player i's soft Q-values
   Q_i(s, a_i) = E_{a_j ~ pi_j} [r_i(s, a) + gamma sum_s' P(s' | s, a) v_i(s')].
2. Policy-gradient theorem (Sutton et al. 2000; the regularised form of Cen et al. 2021):
   dV_i / dtheta_i[s, a] = d(s) pi_i(a|s) (Q_i(s, a) - tau log pi_i(a|s) - v_i(s))     (``"discounted"``)
   dV_i / dtheta_i[s, a] = d(s) pi_i(a|s) (Q_i(s, a) - v_i(s)) - tau pi_i(a|s) (log pi_i(a|s) + H_i(s))  (``"states"``)
   The game's pseudo-gradient is F(theta) = (-dV_i / dtheta_i)_i; its Jacobian J = dF/dtheta is exact to rounding
   by complex-step differentiation (every step above is analytic in theta).
   Stationarity: pi_i(. | s) = softmax(kappa(s) Q_i(s, .) / tau) with kappa = 1 (``"discounted"``: the soft
   best response, a soft-Bellman fixed point) or kappa = d(s) (``"states"``), at states with d(s) > 0.
   :func:`nash_equilibrium` solves this fixed point theta = T(theta) = (kappa Q_i / tau)_i (up to the gauge) by
   Levenberg-Marquardt, to ||F|| <= 1e-10.
3. Fisher geometry: F_i(theta) = blockdiag_s(diag(pi_i(. | s)) - pi_i pi_i^T) + eps I. Softmax logits have a gauge:
   theta_i[s] + c 1 gives the same policy, so J u = 0 and u^T J = 0 for every gauge direction u, and u is an
   eigenvector of F_i (eigenvalue eps). Hence F_i^{-1/2} J_ij F_j^{-1/2} vanishes on the gauge and its non-zero
   spectrum is that of its restriction to the complement: with U_i an orthonormal basis of the complement of the
   per-state all-ones directions (:func:`gauge_basis`), G_i = U_i^T F_i U_i and
   Jt_ij = G_i^{-1/2} U_i^T J_ij U_j G_j^{-1/2}, the paper's bounds are
   mu_i = min_theta lambda_min(sym Jt_ii) (its smallest non-zero eigenvalue), L_ij = max_theta ||Jt_ij||_2,
   over the 2^d corners of the cube ||theta - theta*||_inf <= radius and its centre (the paper's grid).
4. The certificate of :mod:`theory.sgn.certificate` applies in the metric M(w) = diag(w_1 F_1, w_2 F_2): margin
   alpha(w) from (mu, L), natural-gradient Lipschitz constant beta(w) = max ||M^{1/2} F^{-1} J M^{-1/2}||_2 =
   max ||D^{1/2} Jt D^{-1/2}||_2 (D = diag(w_i)), evaluated by ``metric_lipschitz`` on the stored Jt. As in the
   paper's code, beta neglects the term (dF^{-1}) F(theta) of the natural field's Jacobian, which vanishes at
   theta* only. The bounds are sampled on the grid: an estimate on the cube, not a proof.
5. Natural policy gradient (NPG), the Euler discretisation of the natural-gradient flow:
   theta_i <- theta_i - h c_i U_i G_i(theta)^{-1} U_i^T F_i(theta), with per-player timescales c_i (equal by
   default). SGN's weights are a Lyapunov metric, not a timescale: with equal timescales the distance to
   theta* in M(w) shrinks per step by at most sqrt(1 - 2 h alpha + h^2 beta^2) (certified for h < 2 alpha/beta^2).
   Timescales c are covered in the metric Q = diag(w_i / c_i F_i): the cross term is then the weighted one, so
   the factor is sqrt(1 - 2 h alpha min_i c_i + h^2 beta_c^2), beta_c = max ||(WC)^{1/2} Jt C^{1/2} W^{-1/2}||
   (:func:`euler_factor`). The paper's code passes its weights to NPG only for the Lyapunov value.

The two-player preference game (:func:`preference_game`) is the one-state, gamma = 0 case with r_1 = P,
r_2 = P^T, P + P^T = 1 1^T, and tau = beta (with a KL reference mu added as beta log mu to the rewards). Its
coupling is exactly skew in the Fisher metric, Jt_21 = -Jt_12^T, so L12 = L21: the optimal weight ratio is 1 and
SGN gives exactly the block margin of w = (1, 1) (:func:`preference_game_example`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import block_diag

from theory.sgn.certificate import GameBounds, SGNCertificate, certify, margin, metric_lipschitz
from theory.sgn.games import DifferentiableGame
from theory.solver import Callback, IterationState, SolverResult, iterate

REGULARISATIONS = ("states", "discounted")
COMPLEX_STEP = 1e-30


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    # The shift uses the real part only, so the function stays analytic for complex-step derivatives.
    shifted = logits - np.max(logits.real, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def gauge_basis(n_states: int, n_actions: int) -> np.ndarray:
    """U (S A x S (A - 1)): orthonormal columns spanning the logits orthogonal to every per-state all-ones vector.

    Per state the Helmert basis u_k = (1, ..., 1, -k, 0, ..., 0) / sqrt(k (k + 1)), k = 1..A-1.
    """
    helmert = np.zeros((n_actions, n_actions - 1))
    for k in range(1, n_actions):
        helmert[:k, k - 1] = 1.0
        helmert[k, k - 1] = -k
        helmert[:, k - 1] /= np.sqrt(k * (k + 1))
    return np.kron(np.eye(n_states), helmert)


def fisher_information(policy: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """blockdiag_s(diag(pi(. | s)) - pi pi^T) + eps I for a policy of shape (..., S, A); shape (..., S A, S A)."""
    policy = np.asarray(policy, dtype=float)
    *batch, n_states, n_actions = policy.shape
    blocks = policy[..., :, None] * np.eye(n_actions) - policy[..., :, None] * policy[..., None, :]
    full = np.zeros((*batch, n_states, n_actions, n_states, n_actions))
    for s in range(n_states):
        full[..., s, :, s, :] = blocks[..., s, :, :]
    size = n_states * n_actions
    return full.reshape(*batch, size, size) + eps * np.eye(size)


def _inverse_sqrt(matrices: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrices)
    return (vectors / np.sqrt(values)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


@dataclass(frozen=True)
class MarkovEvaluation:
    """Exact quantities at a batch of logits (leading axes ``...``); see the module docstring, step 1-2.

    ``policies[i]`` (..., S, A_i); ``values`` (..., 2) the objectives V_i; ``state_values`` (..., S, 2) the
    unnormalised v_i; ``q_values[i]`` (..., S, A_i) player i's Q-values against the other's policy (soft, i.e.
    with future entropy, for ``"discounted"``; unnormalised);
    ``occupancy`` (..., S) the normalised discounted occupancy d; ``gradient`` (..., dim) (dV_i/dtheta_i)_i;
    ``response_logits`` (..., dim) T(theta) = (kappa Q_i / tau)_i, whose softmax is the stationarity condition.
    """

    policies: tuple[np.ndarray, np.ndarray]
    values: np.ndarray
    state_values: np.ndarray
    q_values: tuple[np.ndarray, np.ndarray]
    occupancy: np.ndarray
    gradient: np.ndarray
    response_logits: np.ndarray


@dataclass(frozen=True, eq=False)
class TabularMarkovGame:
    """A two-player tabular Markov game with entropy-regularised softmax policies (module docstring).

    ``transitions`` (S, A_1, A_2, S) with rows on the simplex, ``rewards`` (2, S, A_1, A_2), ``gamma`` in
    [0, 1), ``rho`` (S,) on the simplex, ``tau`` > 0, ``regularisation`` ``"states"`` or ``"discounted"``.
    """

    transitions: np.ndarray
    rewards: np.ndarray
    gamma: float
    rho: np.ndarray
    tau: float
    regularisation: str = "states"

    def __post_init__(self) -> None:
        transitions = np.array(self.transitions, dtype=float)
        if transitions.ndim != 4 or transitions.shape[0] != transitions.shape[3] or min(transitions.shape) < 1:
            raise ValueError(f"transitions: expected shape (S, A1, A2, S), got {transitions.shape}")
        if not np.all(np.isfinite(transitions)) or np.any(transitions < 0):
            raise ValueError("transitions: expected finite non-negative probabilities")
        if not np.allclose(transitions.sum(axis=-1), 1.0, rtol=0, atol=1e-10):
            raise ValueError("transitions: every row P(. | s, a1, a2) must sum to 1")
        n_states, n1, n2, _ = transitions.shape
        if n1 < 2 or n2 < 2:
            raise ValueError(f"transitions: each player needs at least two actions, got {(n1, n2)}")
        rewards = np.array(self.rewards, dtype=float)
        if rewards.shape != (2, n_states, n1, n2) or not np.all(np.isfinite(rewards)):
            raise ValueError(f"rewards: expected finite values of shape {(2, n_states, n1, n2)}, got {rewards.shape}")
        if not (np.isscalar(self.gamma) and 0 <= self.gamma < 1):
            raise ValueError(f"gamma: expected a discount in [0, 1), got {self.gamma!r}")
        rho = np.array(self.rho, dtype=float)
        if rho.shape != (n_states,) or not np.all(np.isfinite(rho)) or np.any(rho < 0) or abs(rho.sum() - 1) > 1e-10:
            raise ValueError(f"rho: expected a probability vector of shape ({n_states},), got {self.rho!r}")
        if not (np.isscalar(self.tau) and np.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau: expected a positive temperature, got {self.tau!r}")
        if self.regularisation not in REGULARISATIONS:
            raise ValueError(f"regularisation: expected one of {REGULARISATIONS}, got {self.regularisation!r}")
        for name, array in (("transitions", transitions), ("rewards", rewards), ("rho", rho)):
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "gamma", float(self.gamma))
        object.__setattr__(self, "tau", float(self.tau))

    @property
    def n_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def n_actions(self) -> tuple[int, int]:
        return self.transitions.shape[1], self.transitions.shape[2]

    @property
    def blocks(self) -> tuple[int, int]:
        """Logit block sizes (S A_1, S A_2)."""
        return self.n_states * self.n_actions[0], self.n_states * self.n_actions[1]

    @property
    def reduced_blocks(self) -> tuple[int, int]:
        """Gauge-free block sizes (S (A_1 - 1), S (A_2 - 1))."""
        return self.n_states * (self.n_actions[0] - 1), self.n_states * (self.n_actions[1] - 1)

    @property
    def dim(self) -> int:
        return sum(self.blocks)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(0, self.blocks[0]), slice(self.blocks[0], self.dim)

    def gauge_bases(self) -> tuple[np.ndarray, np.ndarray]:
        """(U_1, U_2) of :func:`gauge_basis`."""
        return tuple(gauge_basis(self.n_states, a) for a in self.n_actions)

    def gauge_basis(self) -> np.ndarray:
        """blockdiag(U_1, U_2): the joint gauge-free coordinates z = U^T theta."""
        return block_diag(*self.gauge_bases())

    def _logits(self, theta, name: str = "theta") -> np.ndarray:
        theta = np.asarray(theta)
        if not np.iscomplexobj(theta):
            theta = theta.astype(float)
        if theta.ndim < 1 or theta.shape[-1] != self.dim:
            raise ValueError(
                f"{name}: expected last axis of size {self.dim} (logits of both players), got {theta.shape}"
            )
        if not np.all(np.isfinite(theta)):
            raise ValueError(f"{name}: expected finite logits")
        return theta

    def _split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = theta.shape[:-1]
        s1, s2 = self.slices
        return (
            theta[..., s1].reshape(*batch, self.n_states, self.n_actions[0]),
            theta[..., s2].reshape(*batch, self.n_states, self.n_actions[1]),
        )

    def policies(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """(pi_1, pi_2), shapes (..., S, A_i)."""
        return tuple(np.exp(_log_softmax(t)) for t in self._split(self._logits(theta)))

    def evaluate(self, theta) -> MarkovEvaluation:
        """Values, soft Q-values, occupancy and the exact policy gradient at ``theta`` (..., dim)."""
        theta = self._logits(theta)
        batch = theta.shape[:-1]
        log_pi1, log_pi2 = (_log_softmax(t) for t in self._split(theta))
        pi1, pi2 = np.exp(log_pi1), np.exp(log_pi2)
        joint = pi1[..., :, :, None] * pi2[..., :, None, :]
        chain = np.einsum("...sab,sabt->...st", joint, self.transitions)
        expected_reward = np.einsum("...sab,isab->...si", joint, self.rewards)
        entropy = np.stack([-np.sum(pi1 * log_pi1, axis=-1), -np.sum(pi2 * log_pi2, axis=-1)], axis=-1)
        discounted = self.regularisation == "discounted"
        cost = expected_reward + self.tau * entropy if discounted else expected_reward
        system = np.eye(self.n_states) - self.gamma * chain
        state_values = np.linalg.solve(system, cost)
        rho = np.broadcast_to(self.rho[:, None], (*batch, self.n_states, 1))
        occupancy = (1 - self.gamma) * np.linalg.solve(np.swapaxes(system, -1, -2), rho)[..., 0]
        continuation = np.einsum("sabt,...ti->...isab", self.transitions, state_values)
        q_joint = self.rewards + self.gamma * continuation
        q1 = np.einsum("...sab,...sb->...sa", q_joint[..., 0, :, :, :], pi2)
        q2 = np.einsum("...sab,...sa->...sb", q_joint[..., 1, :, :, :], pi1)
        values = (1 - self.gamma) * np.einsum("s,...si->...i", self.rho, state_values)
        d = occupancy[..., None]
        if discounted:
            g1 = d * pi1 * (q1 - self.tau * log_pi1 - state_values[..., :, 0, None])
            g2 = d * pi2 * (q2 - self.tau * log_pi2 - state_values[..., :, 1, None])
        else:
            values = values + self.tau * np.sum(entropy, axis=-2)
            g1 = d * pi1 * (q1 - state_values[..., :, 0, None]) - self.tau * pi1 * (log_pi1 + entropy[..., 0, None])
            g2 = d * pi2 * (q2 - state_values[..., :, 1, None]) - self.tau * pi2 * (log_pi2 + entropy[..., 1, None])
        gradient = np.concatenate([g1.reshape(*batch, -1), g2.reshape(*batch, -1)], axis=-1)
        kappa = 1.0 if discounted else d
        response = np.concatenate([(kappa * q1).reshape(*batch, -1), (kappa * q2).reshape(*batch, -1)], axis=-1)
        return MarkovEvaluation((pi1, pi2), values, state_values, (q1, q2), occupancy, gradient, response / self.tau)

    def value(self, theta) -> np.ndarray:
        """(V_1, V_2) at ``theta``; shape (..., 2)."""
        return self.evaluate(theta).values

    def policy_gradient(self, theta) -> np.ndarray:
        """(dV_1/dtheta_1, dV_2/dtheta_2), exact; shape (..., dim)."""
        return self.evaluate(theta).gradient

    def pseudo_gradient(self, theta) -> np.ndarray:
        """F(theta) = (-dV_i/dtheta_i)_i: the players descend it."""
        return -self.evaluate(theta).gradient

    def response_logits(self, theta) -> np.ndarray:
        """T(theta) = (kappa(s) Q_i(s, .) / tau)_i: F_i[s] = -tau k(s) Phi_i[s] (T_i[s] - theta_i[s]) (step 2).

        k = d, kappa = 1 (``"discounted"``: softmax(T_i) is the one-step soft policy improvement) or k = 1,
        kappa = d (``"states"``), with Phi = diag(pi) - pi pi^T. Equilibria are the fixed points T(theta) = theta
        up to the gauge (where pi is interior and, for ``"discounted"``, d > 0).
        """
        return self.evaluate(theta).response_logits

    def _complex_step(self, function, theta) -> np.ndarray:
        theta = self._logits(theta).real
        directions = theta[..., None, :] + 1j * COMPLEX_STEP * np.eye(self.dim)
        return np.swapaxes(function(directions).imag / COMPLEX_STEP, -1, -2)

    def jacobian(self, theta) -> np.ndarray:
        """J(theta) = dF/dtheta (..., dim, dim) by complex-step differentiation: exact to rounding."""
        return self._complex_step(self.pseudo_gradient, theta)

    def response_jacobian(self, theta) -> np.ndarray:
        """dT/dtheta (..., dim, dim), complex step."""
        return self._complex_step(self.response_logits, theta)

    def fisher(self, theta, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """(F_1, F_2): F_i = blockdiag_s(diag(pi_i) - pi_i pi_i^T) + eps I, shapes (..., S A_i, S A_i)."""
        eps = _non_negative(eps, "eps")
        return tuple(fisher_information(pi, eps) for pi in self.policies(theta))

    def reduced_fisher(self, theta, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """(G_1, G_2): G_i = U_i^T F_i U_i, the Fisher blocks on the gauge-free coordinates (positive definite)."""
        return tuple(u.T @ f @ u for u, f in zip(self.gauge_bases(), self.fisher(theta, eps), strict=True))

    def as_differentiable_game(self) -> DifferentiableGame:
        """F in logit space as a :class:`~theory.sgn.games.DifferentiableGame` (complex-step Jacobian).

        Euclidean bounds on it give mu_i = 0 (the gauge directions are flat): certify in the Fisher geometry.
        """
        return DifferentiableGame(self.pseudo_gradient, self.blocks, jacobian=self.jacobian)


def _non_negative(value, name: str) -> float:
    if not (np.isscalar(value) and np.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
    return float(value)


def _positive(value, name: str) -> float:
    if not (np.isscalar(value) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def _pair(value, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != (2,) or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name}: expected two positive finite numbers, got {value!r}")
    return array


def cooperative_game(
    *, gamma: float = 0.9, tau: float = 1.0, reward_scale: float = 1.0, regularisation: str = "states"
) -> TabularMarkovGame:
    """The paper's example (``markov/env.py``): 2 states, 2 actions each, shared reward.

    Reward ``reward_scale`` * (+1 if the actions match, -1 otherwise) in both states. Transitions, from either
    state: both play action a -> next state a with probability 0.9 (the other with 0.1); a mismatch -> either
    state with probability 1/2. Start in state 0. The uniform policies (theta = 0) are an equilibrium by symmetry.
    """
    transitions = np.zeros((2, 2, 2, 2))
    transitions[:, 0, 0] = [0.9, 0.1]
    transitions[:, 1, 1] = [0.1, 0.9]
    transitions[:, 0, 1] = transitions[:, 1, 0] = [0.5, 0.5]
    match = reward_scale * np.array([[1.0, -1.0], [-1.0, 1.0]])
    rewards = np.broadcast_to(match, (2, 2, 2, 2))
    return TabularMarkovGame(transitions, rewards, gamma, np.array([1.0, 0.0]), tau, regularisation)


def random_markov_game(
    n_states: int,
    n_actions: tuple[int, int] = (2, 2),
    *,
    gamma: float = 0.9,
    tau: float = 1.0,
    regularisation: str = "states",
    seed: int | np.random.Generator = 0,
) -> TabularMarkovGame:
    """A general-sum game: Dirichlet(1) transitions and rho, independent U(-1, 1) rewards per player."""
    rng = np.random.default_rng(seed)
    shape = (n_states, *n_actions)
    transitions = rng.dirichlet(np.ones(n_states), size=shape)
    rewards = rng.uniform(-1, 1, size=(2, *shape))
    return TabularMarkovGame(transitions, rewards, gamma, rng.dirichlet(np.ones(n_states)), tau, regularisation)


# --------------------------------------------------------------------------------------------- equilibrium


@dataclass(frozen=True, kw_only=True)
class NashResult(SolverResult):
    """An entropy-regularised Nash equilibrium: logits ``theta`` (centred per state), its policies, ||F||."""

    theta: np.ndarray
    policies: tuple[np.ndarray, np.ndarray]
    residual: float


class NashSolver:
    """Levenberg-Marquardt on the fixed-point residual R(z) = U^T (theta - T(theta)), theta = U z (gauge-free).

    F = 0 at interior policies exactly when R = 0 (:meth:`TabularMarkovGame.response_logits`). Newton on F
    itself drifts towards deterministic policies, where F -> 0 without an equilibrium; R does not vanish there
    (T is bounded while theta grows). Step: delta = -(J_R^T J_R + lam I)^{-1} J_R^T R, J_R = I - U^T (dT) U,
    accepted when it lowers ||R|| (then lam /= 10), retried with lam *= 10 otherwise; lam -> 0 is Newton's method.
    Converged when ||F(theta)|| <= ``tol``.
    """

    def __init__(self, game: TabularMarkovGame, theta0, *, tol: float = 1e-10, damping: float = 1e-3) -> None:
        if not isinstance(game, TabularMarkovGame):
            raise TypeError(f"game: expected a TabularMarkovGame, got {type(game).__name__}")
        self.game, self.tol = game, _non_negative(tol, "tol")
        self._damping = _positive(damping, "damping")
        theta0 = game._logits(theta0, "theta0").real
        if theta0.shape != (game.dim,):
            raise ValueError(f"theta0: expected shape ({game.dim},), got {theta0.shape}")
        self._basis = game.gauge_basis()
        self._z = self._basis.T @ theta0
        self._fixed_point = self._fixed_point_residual(self._z)
        self.stalled = False

    def _fixed_point_residual(self, z: np.ndarray) -> np.ndarray:
        return z - self._basis.T @ self.game.response_logits(self._basis @ z)

    @property
    def theta(self) -> np.ndarray:
        return self._basis @ self._z

    @property
    def residual(self) -> float:
        """||F(theta)||."""
        return float(np.linalg.norm(self.game.pseudo_gradient(self.theta)))

    @property
    def converged(self) -> bool:
        return self.residual <= self.tol

    def step(self) -> dict[str, float]:
        jac = np.eye(self._z.size) - self._basis.T @ self.game.response_jacobian(self.theta) @ self._basis
        normal, rhs = jac.T @ jac, -jac.T @ self._fixed_point
        current, step_norm = np.linalg.norm(self._fixed_point), 0.0
        for _ in range(40):
            delta = np.linalg.solve(normal + self._damping * np.eye(normal.shape[0]), rhs)
            trial = self._fixed_point_residual(self._z + delta)
            if np.all(np.isfinite(trial)) and np.linalg.norm(trial) < current:
                self._z, self._fixed_point, step_norm = self._z + delta, trial, float(np.linalg.norm(delta))
                self._damping = max(self._damping / 10, 1e-15)
                break
            self._damping *= 10
        else:
            self.stalled = True
        return {
            "residual": self.residual,
            "fixed_point_residual": float(np.linalg.norm(self._fixed_point)),
            "damping": self._damping,
            "step_norm": step_norm,
        }


def _with_stop(callback: Callback | None, should_stop) -> Callback:
    def combined(state: IterationState) -> bool:
        stop = bool(callback(state)) if callback is not None else False
        return stop or should_stop()

    return combined


def nash_equilibrium(
    game: TabularMarkovGame,
    theta0=None,
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
    callback: Callback | None = None,
    progress: bool = False,
) -> NashResult:
    """The entropy-regularised Nash equilibrium reached from ``theta0`` (default: uniform policies), ||F|| <= tol.

    Games with several equilibria (coordination at small tau) return the one this Newton-type method reaches.
    """
    if not isinstance(game, TabularMarkovGame):
        raise TypeError(f"game: expected a TabularMarkovGame, got {type(game).__name__}")
    solver = NashSolver(game, np.zeros(game.dim) if theta0 is None else theta0, tol=tol)
    if solver.converged:
        outcome_fields = {"converged": True, "n_iter": 0, "message": "theta0 is already an equilibrium", "history": {}}
    else:
        outcome = iterate(
            solver,
            max_iter=max_iter,
            callback=_with_stop(callback, lambda: solver.stalled),
            callback_every=1,
            progress=progress,
        )
        outcome_fields = outcome.fields()
        if solver.stalled and not outcome.converged:
            outcome_fields["message"] = (
                f"stalled after {outcome.n_iter} iterations at ||F|| = {solver.residual:.3g}: "
                "a stationary point of ||theta - T(theta)||^2 that is not an equilibrium"
            )
    theta = solver.theta
    return NashResult(theta=theta, policies=game.policies(theta), residual=solver.residual, **outcome_fields)


# --------------------------------------------------------------------------------------------- Fisher bounds


@dataclass(frozen=True)
class FisherBounds(GameBounds):
    """:class:`~theory.sgn.certificate.GameBounds` in the Fisher geometry on the gauge-free coordinates.

    ``jacobians`` holds Jt = G^{-1/2} U^T J U G^{-1/2} at each grid point (so ``metric_lipschitz`` gives the
    natural-gradient beta in M(w)); ``blocks`` are the gauge-free sizes S (A_i - 1); ``euclidean_margin`` is the
    monotonicity margin of the unweighted Fisher metric (w = 1), min over the grid of lambda_min(sym Jt).
    """

    center: np.ndarray = field(repr=False)
    radius: float
    eps: float

    def describe(self) -> str:
        return (
            f"Fisher-geometry bounds (eps = {self.eps:g}) over {self.n_points} points of the cube "
            f"||theta - theta*||_inf <= {self.radius:g} (corners and centre), widened by a safety margin of "
            f"{self.safety_margin:.0%}: an estimate, not a proof"
        )


def policy_distance_inf(game: TabularMarkovGame, theta, theta_star) -> np.ndarray:
    """min over gauge shifts of ||theta - theta* - shift||_inf = max_{i, s} (max_a e - min_a e) / 2, e = theta - theta*.

    The policies of ``theta`` are those of a point of the cube ||. - theta*||_inf <= r exactly when this is <= r.
    Shape: the leading axes of ``theta``.
    """
    e = game._logits(theta).real - game._logits(theta_star, "theta_star").real
    spans = [np.ptp(part, axis=-1).max(axis=-1) for part in game._split(e)]
    return 0.5 * np.maximum(*spans)


def _grid(center: np.ndarray, radius: float, max_points: int, rng: np.random.Generator) -> np.ndarray:
    dim = center.size
    if radius == 0:
        return center[None]
    if 2**dim + 1 <= max_points:
        corners = np.array(list(itertools.product((-radius, radius), repeat=dim)))
    else:
        corners = radius * rng.choice([-1.0, 1.0], size=(max_points - 1, dim))
    return np.vstack([center, center + corners])


def fisher_geometry(game: TabularMarkovGame, points, eps: float = 1e-3) -> np.ndarray:
    """Jt(theta) = G^{-1/2} U^T J(theta) U G^{-1/2} at each of ``points`` (m, dim); shape (m, k, k)."""
    points = game._logits(np.atleast_2d(points), "points").real
    basis = game.gauge_basis()
    reduced = basis.T @ game.jacobian(points) @ basis
    scale = block_diag_batched([_inverse_sqrt(g) for g in game.reduced_fisher(points, eps)])
    return scale @ reduced @ scale


def block_diag_batched(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """blockdiag of matrices with shared leading axes: (..., k_i, k_i) -> (..., sum k_i, sum k_i)."""
    batch = blocks[0].shape[:-2]
    size = sum(b.shape[-1] for b in blocks)
    out = np.zeros((*batch, size, size))
    start = 0
    for b in blocks:
        end = start + b.shape[-1]
        out[..., start:end, start:end] = b
        start = end
    return out


def _sym_min_eigs(matrices: np.ndarray) -> np.ndarray:
    return np.linalg.eigvalsh(0.5 * (matrices + np.swapaxes(matrices, -1, -2)))[..., 0]


def fisher_bounds(
    game: TabularMarkovGame,
    theta_star,
    radius: float = 0.1,
    eps: float = 1e-3,
    *,
    safety_margin: float = 0.0,
    max_points: int = 4097,
    seed: int | np.random.Generator = 0,
) -> FisherBounds:
    """mu_i = min lambda_min(sym Jt_ii), L_ij = max ||Jt_ij||_2 over the paper's grid around ``theta_star``.

    The grid is the centre and the 2^d corners of ||theta - theta*||_inf <= radius (d = ``game.dim``), or the
    centre and ``max_points - 1`` random corners (``seed``) when 2^d + 1 > ``max_points``; radius 0: the centre.
    ``safety_margin`` shrinks mu and grows L (and beta, in ``certify``) by that fraction, as in
    ``estimate_bounds``; the paper uses 0.
    """
    if not isinstance(game, TabularMarkovGame):
        raise TypeError(f"game: expected a TabularMarkovGame, got {type(game).__name__}")
    center = game._logits(theta_star, "theta_star").real
    if center.shape != (game.dim,):
        raise ValueError(f"theta_star: expected shape ({game.dim},), got {center.shape}")
    radius, eps = _non_negative(radius, "radius"), _positive(eps, "eps")
    if not 0 <= safety_margin < 1:
        raise ValueError(f"safety_margin: expected a fraction in [0, 1), got {safety_margin!r}")
    if not (isinstance(max_points, int) and max_points >= 2):
        raise ValueError(f"max_points: expected an integer >= 2, got {max_points!r}")
    points = _grid(center, radius, max_points, np.random.default_rng(seed))
    transformed = fisher_geometry(game, points, eps)
    k1, k2 = game.reduced_blocks
    own, other = (slice(0, k1), slice(k1, k1 + k2)), (slice(k1, k1 + k2), slice(0, k1))
    mu = np.array([_sym_min_eigs(transformed[:, b, b]).min() for b in own])
    coupling = np.zeros((2, 2))
    for i in range(2):
        coupling[i, 1 - i] = np.linalg.norm(transformed[:, own[i], other[i]], ord=2, axis=(-2, -1)).max()
    euclidean = float(_sym_min_eigs(transformed).min())
    if safety_margin:
        mu, coupling = mu - safety_margin * np.abs(mu), coupling * (1 + safety_margin)
        euclidean -= safety_margin * abs(euclidean)
    return FisherBounds(
        mu=mu,
        coupling=coupling,
        blocks=(k1, k2),
        exact=False,
        n_points=len(points),
        safety_margin=float(safety_margin),
        euclidean_margin=euclidean,
        jacobians=transformed,
        center=center,
        radius=radius,
        eps=eps,
    )


def certify_markov(
    game: TabularMarkovGame,
    theta_star=None,
    *,
    radius: float = 0.1,
    eps: float = 1e-3,
    weights=None,
    safety_margin: float = 0.0,
    max_points: int = 4097,
    seed: int = 0,
) -> SGNCertificate:
    """The SGN certificate in M(w) = diag(w_1 F_1, w_2 F_2) on the grid around ``theta_star``.

    ``theta_star`` defaults to :func:`nash_equilibrium` from uniform policies; ``weights`` default to the optimum.
    The certificate's ``euler_step`` / ``euler_step_bound`` are NPG step sizes (module docstring, step 5).
    """
    if theta_star is None:
        nash = nash_equilibrium(game)
        if not nash.converged:
            raise ValueError(f"theta_star: no equilibrium found from uniform policies ({nash.message}); pass one")
        theta_star = nash.theta
    bounds = fisher_bounds(game, theta_star, radius, eps, safety_margin=safety_margin, max_points=max_points, seed=seed)
    # certify() reads only the bounds when they are given; the logit-space game is passed for its type.
    return certify(game.as_differentiable_game(), bounds=bounds, weights=weights)


def euler_factor(bounds: GameBounds, weights, step: float, timescales=None) -> float:
    """sqrt(1 - 2 h alpha(w) min_i c_i + h^2 beta_c^2): certified per-step contraction with timescales c.

    For the update theta_i <- theta_i - h c_i (natural) gradient_i, measured in Q = diag(w_i / c_i F_i):
    beta_c = max ||(W C)^{1/2} Jt C^{1/2} W^{-1/2}||_2 (times 1 + safety_margin). With c = 1 this is
    :meth:`SGNCertificate.euler_factor` of the certificate with these weights.
    """
    w = _pair(weights, "weights")
    c = np.ones(2) if timescales is None else _pair(timescales, "timescales")
    step = _non_negative(step, "step")
    alpha = margin(bounds.mu, bounds.coupling, w)
    scale = np.sqrt(np.repeat(c, bounds.blocks))
    beta = metric_lipschitz(scale[:, None] * bounds.jacobians * scale[None, :], bounds.blocks, w)
    if not bounds.exact:
        beta *= 1 + bounds.safety_margin
    return float(np.sqrt(max(0.0, 1 - 2 * step * alpha * c.min() + step**2 * beta**2)))


# --------------------------------------------------------------------------------------------- policy gradient


@dataclass(frozen=True, kw_only=True)
class PolicyGradientResult(SolverResult):
    """A policy-gradient run: final ``theta``, the ``trajectory`` (n_iter + 1, dim), and the metric used.

    ``history``: ``distance`` to theta* in Q = diag(w_i / c_i F_i(theta*)) after each step, ``contraction`` (its
    ratio to the previous distance), ``residual`` ||F|| after each step, ``seconds``.
    """

    theta: np.ndarray
    trajectory: np.ndarray
    initial_distance: float
    metric_weights: np.ndarray
    geometry: str


class PolicyGradientDynamics:
    """theta_i <- theta_i - h c_i P_i(theta) F_i(theta); P_i = U_i G_i^{-1} U_i^T (natural) or I (Euclidean)."""

    def __init__(
        self,
        game: TabularMarkovGame,
        theta0,
        theta_star,
        *,
        step: float,
        geometry: str = "natural",
        weights=(1.0, 1.0),
        timescales=None,
        eps: float = 1e-3,
        tol: float = 0.0,
    ) -> None:
        if not isinstance(game, TabularMarkovGame):
            raise TypeError(f"game: expected a TabularMarkovGame, got {type(game).__name__}")
        if geometry not in ("natural", "euclidean"):
            raise ValueError(f"geometry: expected 'natural' or 'euclidean', got {geometry!r}")
        self.game, self.geometry = game, geometry
        self.step_size, self.eps, self.tol = _positive(step, "step"), _positive(eps, "eps"), _non_negative(tol, "tol")
        self.weights = _pair(weights, "weights")
        self.timescales = np.ones(2) if timescales is None else _pair(timescales, "timescales")
        theta0, self.theta_star = game._logits(theta0, "theta0").real, game._logits(theta_star, "theta_star").real
        for name, value in (("theta0", theta0), ("theta_star", self.theta_star)):
            if value.shape != (game.dim,):
                raise ValueError(f"{name}: expected shape ({game.dim},), got {value.shape}")
        self._bases = game.gauge_bases()
        reference = game.reduced_fisher(self.theta_star, self.eps)
        metric = self.weights / self.timescales
        self._metric = [m * g for m, g in zip(metric, reference, strict=True)]
        self.theta = theta0.copy()
        self._field = game.pseudo_gradient(self.theta)
        self.distance = self.distance_to_equilibrium(self.theta)
        self.trajectory = [self.theta.copy()]

    def distance_to_equilibrium(self, theta: np.ndarray) -> float:
        """||theta - theta*||_Q on the gauge-free coordinates."""
        total = 0.0
        for u, q, part in zip(self._bases, self._metric, self.game.slices, strict=True):
            e = u.T @ (theta[part] - self.theta_star[part])
            total += e @ q @ e
        return float(np.sqrt(total))

    @property
    def residual(self) -> float:
        return float(np.linalg.norm(self._field))

    @property
    def converged(self) -> bool:
        return self.residual <= self.tol

    @property
    def diverged(self) -> bool:
        return not (np.isfinite(self.distance) and self.distance < 1e6)

    def direction(self, theta: np.ndarray, field_value: np.ndarray) -> np.ndarray:
        if self.geometry == "euclidean":
            return field_value
        reduced = self.game.reduced_fisher(theta, self.eps)
        parts = [
            u @ np.linalg.solve(g, u.T @ field_value[part])
            for u, g, part in zip(self._bases, reduced, self.game.slices, strict=True)
        ]
        return np.concatenate(parts)

    def step(self) -> dict[str, float]:
        speeds = np.repeat(self.timescales, self.game.blocks)
        with np.errstate(over="ignore", invalid="ignore"):
            self.theta = self.theta - self.step_size * speeds * self.direction(self.theta, self._field)
            finite = np.all(np.isfinite(self.theta))
            self._field = self.game.pseudo_gradient(self.theta) if finite else np.full(self.game.dim, np.nan)
            previous, self.distance = self.distance, self.distance_to_equilibrium(self.theta) if finite else np.nan
        self.trajectory.append(self.theta.copy())
        return {"distance": self.distance, "contraction": self.distance / previous, "residual": self.residual}


def policy_gradient(
    game: TabularMarkovGame,
    theta0,
    *,
    step: float,
    n_steps: int,
    theta_star,
    geometry: str = "natural",
    weights=(1.0, 1.0),
    timescales=None,
    eps: float = 1e-3,
    tol: float = 0.0,
    callback: Callback | None = None,
    progress: bool = False,
) -> PolicyGradientResult:
    """theta_i <- theta_i - h c_i P_i F_i(theta): NPG (P_i = U_i G_i(theta)^{-1} U_i^T, the pseudo-inverse of F_i
    on the gauge) for ``geometry="natural"``, plain PG (P_i = I) for ``"euclidean"``.

    ``weights`` w set the metric Q = diag(w_i / c_i F_i(theta*)) where the distance to ``theta_star`` is
    recorded (for both geometries); ``timescales`` c (default equal) scale each player's step. The certificate
    covers c = 1 in M(w) (:meth:`SGNCertificate.euler_factor`) and any c in Q (:func:`euler_factor`); using SGN
    weights as timescales is c = 1 / w. ``tol`` > 0 stops once ||F|| <= tol; with 0 all ``n_steps`` are run.
    """
    dynamics = PolicyGradientDynamics(
        game,
        theta0,
        theta_star,
        step=step,
        geometry=geometry,
        weights=weights,
        timescales=timescales,
        eps=eps,
        tol=tol,
    )
    initial = dynamics.distance
    outcome = iterate(
        dynamics, max_iter=n_steps, callback=_with_stop(callback, lambda: dynamics.diverged), progress=progress
    )
    fields = outcome.fields()
    if dynamics.diverged:
        fields["message"] = f"diverged after {outcome.n_iter} steps"
    elif not outcome.converged and tol == 0:
        fields["message"] = f"ran {outcome.n_iter} steps; ||F|| = {dynamics.residual:.3g}"
    return PolicyGradientResult(
        theta=dynamics.theta,
        trajectory=np.array(dynamics.trajectory),
        initial_distance=initial,
        metric_weights=dynamics.weights / dynamics.timescales,
        geometry=geometry,
        **fields,
    )


def natural_policy_gradient(game: TabularMarkovGame, theta0, **options) -> PolicyGradientResult:
    """NPG, the Euler discretisation of the natural-gradient flow: :func:`policy_gradient` in the natural geometry."""
    return policy_gradient(game, theta0, geometry="natural", **options)


def euclidean_policy_gradient(game: TabularMarkovGame, theta0, **options) -> PolicyGradientResult:
    """Plain PG, its distance recorded in the same metric as NPG's: :func:`policy_gradient` in Euclidean geometry."""
    return policy_gradient(game, theta0, geometry="euclidean", **options)


# --------------------------------------------------------------------------------------------- preference game

ROCK_PAPER_SCISSORS = np.array([[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])
"""P[a, b] = probability that a is preferred to b: paper beats rock, scissors beat paper, rock beats scissors."""


def preference_game(preferences=ROCK_PAPER_SCISSORS, beta: float = 1.0, reference=None) -> TabularMarkovGame:
    """The beta-regularised preference game as a one-state, gamma = 0 Markov game.

    Player 1 maximises pi_1^T P pi_2 - beta KL(pi_1 || mu), player 2 pi_2^T P pi_1 - beta KL(pi_2 || mu), with
    P + P^T = 1 1^T (so the game is constant-sum) and reference mu (default uniform: KL = -entropy + log A).
    The KL's linear part beta log mu is folded into the rewards; tau = beta.
    """
    p = np.asarray(preferences, dtype=float)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] < 2 or not np.all(np.isfinite(p)):
        raise ValueError(f"preferences: expected a finite square matrix with at least 2 actions, got shape {p.shape}")
    if np.any(p < 0) or np.any(p > 1) or not np.allclose(p + p.T, 1.0, rtol=0, atol=1e-12):
        raise ValueError("preferences: expected probabilities with P + P^T = 1 (every pair compared once)")
    n = p.shape[0]
    mu = np.full(n, 1.0 / n) if reference is None else np.asarray(reference, dtype=float)
    if mu.shape != (n,) or not np.all(np.isfinite(mu)) or np.any(mu <= 0) or abs(mu.sum() - 1) > 1e-10:
        raise ValueError(f"reference: expected a positive probability vector of shape ({n},), got {reference!r}")
    beta = _positive(beta, "beta")
    log_mu = np.log(mu)
    rewards = np.stack([p + beta * log_mu[:, None], p.T + beta * log_mu[None, :]])[:, None]
    return TabularMarkovGame(np.ones((1, n, n, 1)), rewards, 0.0, np.ones(1), beta)


@dataclass(frozen=True)
class PreferenceGameExample:
    """SGN on the preference game: the optimal certificate, the w = (1, 1) one, and the coupling's skew defect.

    ``skew_defect`` = max over the grid of ||Jt_21 + Jt_12^T||_2 (zero: the Fisher coupling is skew).
    """

    game: TabularMarkovGame
    nash: NashResult
    optimal: SGNCertificate
    unit: SGNCertificate
    skew_defect: float


def preference_game_example(
    preferences=ROCK_PAPER_SCISSORS, beta: float = 1.0, reference=None, *, radius: float = 0.1, eps: float = 1e-3
) -> PreferenceGameExample:
    """Certify the preference game with optimised weights and with w = (1, 1): SGN adds nothing here.

    The coupling is skew in the Fisher metric (Jt_21 = -Jt_12^T at every point: J_12 = -F_1 S F_2 with
    S = P - 1 1^T / 2 skew), so L12 = L21, the optimal ratio L12/L21 is 1 and alpha(w*) = alpha(1, 1). The block
    bound even loses the skew cancellation: the w = 1 Fisher margin (``bounds.euclidean_margin``) is min_i mu_i,
    above alpha(w*) = (mu_1 + mu_2)/2 - sqrt((mu_1 - mu_2)^2/4 + L^2).
    """
    game = preference_game(preferences, beta, reference)
    nash = nash_equilibrium(game)
    optimal = certify_markov(game, nash.theta, radius=radius, eps=eps)
    unit = certify(game.as_differentiable_game(), bounds=optimal.bounds, weights=[1.0, 1.0])
    jt = optimal.bounds.jacobians
    k1 = optimal.bounds.blocks[0]
    defect = jt[:, k1:, :k1] + np.swapaxes(jt[:, :k1, k1:], -1, -2)
    return PreferenceGameExample(game, nash, optimal, unit, float(np.linalg.norm(defect, 2, axis=(-2, -1)).max()))
