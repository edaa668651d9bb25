"""Tabular preference games of Nash learning from human feedback, their generators and reference policies.

Setting (Munos et al. 2023, arXiv 2312.00886; Tiapkin et al. 2025, arXiv 2505.19731 v1): actions y in {0..A-1},
a preference matrix P with P[y, y'] = P(y > y') and P + P^T = 1 1^T (so the diagonal is 1/2), a strictly positive
reference policy mu and a regularisation beta > 0. The game

    J_beta(pi, pi') = pi^T P pi' - beta KL(pi || mu) + beta KL(pi' || mu)

is symmetric and zero-sum around 1/2 (P - 1/2 is antisymmetric, so pi^T P pi = 1/2); its unique Nash equilibrium is
pi* = softmax(log mu + P pi* / beta) (:mod:`theory.games.equilibrium`).

A :class:`PreferenceGame` holds one game or a batch of B games with the same number of actions: P of shape (A, A) or
(B, A, A), mu of shape (A,) or (B, A), beta a scalar or (B,). Solvers update the whole batch with one matrix product.
P may also be a matrix-free :class:`LowRankPreference`, P = 1/2 1 1^T + (U V^T - V U^T) / (2c), whose product with a
policy costs O(A r), for A up to 10^6 and beyond.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
from scipy.special import expit

from theory.backend import array_module

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_ROW_CHUNK_ELEMENTS = 2**24  # rows of P checked / completed at a time, so validation never holds a second A x A array


def _float_dtype(array: np.ndarray, name: str) -> np.dtype:
    """float32 stays float32; other real numbers become float64."""
    if array.dtype in FLOAT_DTYPES:
        return array.dtype
    if array.dtype.kind in "biuf":
        return np.dtype(np.float64)
    raise TypeError(f"{name}: expected real numbers (float32 or float64), got dtype {array.dtype}")


def _tolerance(dtype: np.dtype) -> float:
    """How far P + P^T and sum(mu) may be from 1: 1e-9 in float64, 1e-5 in float32 (rounding of the inputs)."""
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-5


def _generator(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _integer_at_least(value, name: str = "n_actions", minimum: int = 2) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_simplex(reference: np.ndarray, name: str) -> None:
    """A strictly positive probability vector (per row, for a batch)."""
    if not np.all(np.isfinite(reference)):
        raise ValueError(f"{name}: expected finite probabilities, got NaN or inf")
    if np.any(reference <= 0):
        raise ValueError(f"{name}: expected strictly positive probabilities, got min {reference.min():.3g}")
    totals = reference.sum(axis=-1, dtype=np.float64)
    worst = np.max(np.abs(totals - 1.0))
    if worst > _tolerance(reference.dtype):
        total = float(np.ravel(totals)[np.argmax(np.abs(np.ravel(totals) - 1.0))])
        raise ValueError(f"{name}: expected probabilities summing to 1, got a sum of {total!r}")


# --------------------------------------------------------------------------------------------- matrix-free P


@dataclass(frozen=True, eq=False)
class LowRankPreference:
    """Matrix-free P = 1/2 1 1^T + (U V^T - V U^T) / (2c) with U, V of shape (A, r) and c = 2 max_i |u_i| max_j |v_j|.

    By Cauchy-Schwarz |u_i . v_j - v_i . u_j| <= c, so every entry lies in [0, 1] without scanning the A x A matrix,
    and P + P^T = 1 1^T exactly. U and V are stored side by side as ``factors`` W = [U V] (A, 2r), so that
    P pi = 1/2 sum(pi) + W [V^T pi; -U^T pi] / (2c) reads W twice: ``matvec`` costs O(A r).
    """

    U: np.ndarray
    V: np.ndarray
    factors: np.ndarray = field(init=False, repr=False)
    scale: float = field(init=False)

    def __post_init__(self) -> None:
        U, V = np.asarray(self.U), np.asarray(self.V)
        if U.ndim != 2 or U.shape != V.shape or U.shape[0] < 2 or U.shape[1] < 1:
            raise ValueError(f"U: expected U and V of the same shape (A, r) with A >= 2, got {U.shape} and {V.shape}")
        dtype = np.result_type(_float_dtype(U, "U"), _float_dtype(V, "V"))
        if not (np.all(np.isfinite(U)) and np.all(np.isfinite(V))):
            raise ValueError("U: expected finite U and V, got NaN or inf")
        factors = np.concatenate([U, V], axis=1).astype(dtype, copy=False)
        U, V = factors[:, : U.shape[1]], factors[:, U.shape[1] :]
        scale = 2.0 * float(np.sqrt(np.max(np.einsum("ij,ij->i", U, U)) * np.max(np.einsum("ij,ij->i", V, V))))
        if scale == 0:
            raise ValueError("U: U and V are zero; use a dense P = 1/2 (all ties) instead")
        object.__setattr__(self, "U", U)
        object.__setattr__(self, "V", V)
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "scale", scale)

    @property
    def n_actions(self) -> int:
        return self.U.shape[0]

    @property
    def rank(self) -> int:
        return self.U.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.U.dtype

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_actions, self.n_actions)

    def matvec(self, pi):
        """(P pi)[..., y] = 1/2 sum(pi) + (U (V^T pi) - V (U^T pi))[y] / (2c), for pi of shape (..., A)."""
        return _low_rank_matvec(self.factors, self.scale, pi)

    def entries(self, rows, cols):
        """P[rows, cols] (elementwise) without forming P."""
        return _low_rank_entries(self.factors, self.scale, rows, cols)

    def to_dense(self) -> np.ndarray:
        """The A x A matrix (for tests and small A only)."""
        skew = self.U @ self.V.T
        skew -= skew.T
        return (0.5 + skew / (2 * self.scale)).astype(self.dtype, copy=False)

    def astype(self, dtype) -> LowRankPreference:
        return LowRankPreference(self.U.astype(dtype), self.V.astype(dtype))


def _low_rank_matvec(factors, scale, pi):
    xp = array_module(pi)
    rank = factors.shape[1] // 2
    projections = pi @ factors  # [U^T pi, V^T pi]
    coefficients = xp.concatenate([projections[..., rank:], -projections[..., :rank]], axis=-1)
    return 0.5 * pi.sum(axis=-1, keepdims=True) + (coefficients / (2 * scale)) @ factors.T


def _low_rank_entries(factors, scale, rows, cols):
    rank = factors.shape[1] // 2
    left, right = factors[rows], factors[cols]
    cross = (left[..., :rank] * right[..., rank:]).sum(axis=-1) - (left[..., rank:] * right[..., :rank]).sum(axis=-1)
    return 0.5 + cross / (2 * scale)


def _dense_matvec(P, pi):
    if P.ndim == 2:
        return P @ pi if pi.ndim == 1 else pi @ P.T
    return (P @ pi[..., None])[..., 0]  # (B, A, A) @ (B, A, 1): one batched product


class PreferenceOperator:
    """P of a game on an array module (numpy, or cupy on a GPU): products with policies and single entries.

    ``matrix`` is the dense P on ``xp``, or None for a low-rank P.
    """

    def __init__(self, preference, xp: ModuleType = np) -> None:
        self.xp = xp
        if isinstance(preference, LowRankPreference):
            self._low_rank = (xp.asarray(preference.factors), preference.scale)
            self.matrix = None
        else:
            self._low_rank = None
            self.matrix = xp.asarray(preference)

    def matvec(self, pi):
        """result[..., y] = sum_y' P[..., y, y'] pi[..., y']."""
        if self.matrix is not None:
            return _dense_matvec(self.matrix, pi)
        return _low_rank_matvec(*self._low_rank, pi)

    def entries(self, games, rows, cols):
        """P[games, rows, cols] for a batch (``games`` ignored for a single P)."""
        if self._low_rank is not None:
            return _low_rank_entries(*self._low_rank, rows, cols)
        if self.matrix.ndim == 2:
            return self.matrix[rows, cols]
        return self.matrix[games, rows, cols]


# --------------------------------------------------------------------------------------------- the game


def _checked_dense_preference(P: np.ndarray) -> np.ndarray:
    dtype = _float_dtype(P, "preference")
    P = np.ascontiguousarray(P, dtype=dtype)
    if P.ndim not in (2, 3) or P.shape[-1] != P.shape[-2] or P.shape[-1] < 2:
        raise ValueError(f"preference: expected a square (A, A) or batched (B, A, A) matrix with A >= 2, got {P.shape}")
    n = P.shape[-1]
    rows_per_chunk = max(1, _ROW_CHUNK_ELEMENTS // (n * max(1, P.size // (n * n))))
    worst = 0.0
    for start in range(0, n, rows_per_chunk):
        block = P[..., start : start + rows_per_chunk, :]
        if not np.all(np.isfinite(block)):
            raise ValueError("preference: expected finite probabilities, got NaN or inf")
        if np.any(block < 0) or np.any(block > 1):
            raise ValueError(
                f"preference: expected probabilities in [0, 1], got entries in [{block.min():.6g}, {block.max():.6g}]"
            )
        transposed = np.swapaxes(P[..., :, start : start + rows_per_chunk], -1, -2)
        worst = max(worst, float(np.max(np.abs(block.astype(np.float64) + transposed - 1.0))))
    if worst > _tolerance(dtype):
        raise ValueError(
            f"preference: expected P + P^T = 1 (every pair compared once, diagonal 1/2), max deviation {worst:.3g}"
        )
    return P


@dataclass(frozen=True, eq=False)
class PreferenceGame:
    """One beta-regularised preference game, or a batch of games with the same number of actions.

    ``preference``: P of shape (A, A) or (B, A, A) with P[y, y'] = P(y > y') (float32 kept, else float64), or a
    :class:`LowRankPreference`. ``reference``: mu, strictly positive, on the simplex, shape (A,) or (B, A).
    ``beta``: a positive scalar or (B,). A batch is formed when any of them carries the leading B axis.
    """

    preference: np.ndarray | LowRankPreference
    reference: np.ndarray
    beta: float | np.ndarray

    def __post_init__(self) -> None:
        if isinstance(self.preference, LowRankPreference):
            P, dtype, p_batch = self.preference, self.preference.dtype, ()
        else:
            P = _checked_dense_preference(np.asarray(self.preference))
            dtype, p_batch = P.dtype, P.shape[:-2]
        n = P.shape[-1]
        mu = np.asarray(self.reference)
        _float_dtype(mu, "reference")
        if mu.ndim not in (1, 2) or mu.shape[-1] != n:
            raise ValueError(f"reference: expected shape ({n},) or (B, {n}) to match the preference, got {mu.shape}")
        _check_simplex(mu, "reference")
        beta = np.asarray(self.beta)
        if beta.dtype.kind not in "iuf" or beta.ndim > 1:
            raise TypeError(f"beta: expected a positive number or a 1-D array of them, got {self.beta!r}")
        if not (np.all(np.isfinite(beta)) and np.all(beta > 0)):
            raise ValueError(f"beta: expected a positive finite regularisation, got {self.beta!r}")
        for name, shapes in (("reference", (p_batch, mu.shape[:-1])), ("beta", (p_batch, mu.shape[:-1], beta.shape))):
            try:
                batch = np.broadcast_shapes(*shapes)
            except ValueError as exc:
                sizes = f"preference {p_batch}, reference {mu.shape[:-1]}, beta {beta.shape}"
                raise ValueError(f"{name}: its batch size disagrees with the others ({sizes})") from exc
        object.__setattr__(self, "preference", P)
        object.__setattr__(self, "reference", np.ascontiguousarray(mu, dtype=dtype))
        object.__setattr__(self, "beta", float(beta) if beta.ndim == 0 else beta.astype(np.float64))
        object.__setattr__(self, "_batch_shape", batch)

    @property
    def n_actions(self) -> int:
        return self.preference.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """() for one game, (B,) for a batch."""
        return self._batch_shape

    @property
    def batch_size(self) -> int:
        return self.batch_shape[0] if self.batch_shape else 1

    @property
    def dtype(self) -> np.dtype:
        return self.preference.dtype

    @property
    def is_low_rank(self) -> bool:
        return isinstance(self.preference, LowRankPreference)

    def operator(self, xp: ModuleType = np) -> PreferenceOperator:
        return PreferenceOperator(self.preference, xp)

    def matvec(self, pi):
        """P @ pi: result[..., y] = sum_y' P[y, y'] pi[..., y'] for a policy (A,) or a batch (..., A) of policies.

        For a batched P (B, A, A) the policies are (B, A), one per game.
        """
        return self.operator(array_module(pi)).matvec(pi)

    def dense_preference(self) -> np.ndarray:
        """P as an array (forms the matrix of a low-rank game)."""
        return self.preference.to_dense() if self.is_low_rank else self.preference

    def astype(self, dtype) -> PreferenceGame:
        """The same game in another precision (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        P = self.preference.astype(dtype)
        if not self.is_low_rank:  # from float32, P + P^T = 1 holds to 3e-8 only: complete P from its lower triangle
            upper = np.triu(np.ones(P.shape[-2:], dtype=bool), 1)
            P = np.where(upper, 1 - np.swapaxes(P, -1, -2), P)
            P[..., np.arange(self.n_actions), np.arange(self.n_actions)] = 0.5
        reference = self.reference.astype(np.float64)  # renormalised in float64 too (its sum within 1e-9)
        return PreferenceGame(P, reference / reference.sum(axis=-1, keepdims=True), self.beta)

    def __getitem__(self, index: int) -> PreferenceGame:
        """Game ``index`` of a batch."""
        if not self.batch_shape:
            raise IndexError("index: this is a single game, not a batch")
        size = self.batch_shape[0]
        if not -size <= index < size:
            raise IndexError(f"index: expected an integer in [{-size}, {size}), got {index}")

        def member(array, core_ndim: int):
            return array[index] if np.ndim(array) > core_ndim else array

        P = self.preference if self.is_low_rank else member(self.preference, 2)
        return PreferenceGame(P, member(self.reference, 1), member(np.asarray(self.beta), 0))


def stack_games(games) -> PreferenceGame:
    """One batched game (P (B, A, A), mu (B, A), beta (B,)) from single dense games with the same A and dtype."""
    games = list(games)
    if not games or not all(isinstance(g, PreferenceGame) and not g.batch_shape for g in games):
        raise TypeError("games: expected a non-empty sequence of single (unbatched) PreferenceGames")
    if any(g.is_low_rank for g in games):
        raise ValueError("games: low-rank games cannot be stacked into a dense batch; use dense games")
    if len({(g.n_actions, g.dtype) for g in games}) != 1:
        raise ValueError("games: expected the same number of actions and dtype in every game")
    return PreferenceGame(
        np.stack([g.preference for g in games]),
        np.stack([g.reference for g in games]),
        np.array([g.beta for g in games]),
    )


# --------------------------------------------------------------------------------------------- reference policies


def uniform_reference(n_actions: int) -> np.ndarray:
    """mu = 1/A."""
    n = _integer_at_least(n_actions)
    return np.full(n, 1.0 / n)


def dirichlet_reference(n_actions: int, alpha: float = 1.0, *, seed=0) -> np.ndarray:
    """mu ~ Dirichlet(alpha 1), drawn as normalised Gamma(alpha) variables (floored at the smallest normal double)."""
    n = _integer_at_least(n_actions)
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha: expected a positive concentration, got {alpha!r}")
    gammas = np.maximum(_generator(seed).gamma(alpha, size=n), np.finfo(float).tiny)
    return gammas / gammas.sum()


def zipf_reference(n_actions: int, exponent: float = 1.1) -> np.ndarray:
    """mu(y) proportional to (y + 1)^(-exponent): a heavy tail of small but positive probabilities, like an LLM's."""
    n = _integer_at_least(n_actions)
    if not (np.isfinite(exponent) and exponent > 0):
        raise ValueError(f"exponent: expected a positive exponent, got {exponent!r}")
    weights = np.arange(1, n + 1, dtype=np.float64) ** -float(exponent)
    return weights / weights.sum()


def _reference_or_uniform(reference, n: int) -> np.ndarray:
    return uniform_reference(n) if reference is None else np.asarray(reference)


# --------------------------------------------------------------------------------------------- generators


def _complete_from_lower(P: np.ndarray) -> np.ndarray:
    """Fill P's upper triangle with 1 - P^T and its diagonal with 1/2, in place, a block of rows at a time."""
    n = P.shape[0]
    rows_per_chunk = max(1, _ROW_CHUNK_ELEMENTS // n)
    columns = np.arange(n)
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        rows = np.arange(start, stop)[:, None]
        complement = 1 - P[:, start:stop].T  # at (i, j): 1 - P[j, i]; only read for j > i, rows not yet rewritten
        P[start:stop] = np.where(columns > rows, complement, np.where(columns == rows, 0.5, P[start:stop]))
    return P


def random_game(n_actions: int, beta: float, *, reference=None, seed=0, dtype=np.float64) -> PreferenceGame:
    """EGPO-style random game: strict lower triangle U(0, 1), P[j, i] = 1 - P[i, j], diagonal 1/2 (mu uniform by
    default)."""
    n = _integer_at_least(n_actions)
    P = _complete_from_lower(_generator(seed).random((n, n), dtype=np.dtype(dtype)))
    return PreferenceGame(P, _reference_or_uniform(reference, n), beta)


def cyclic_game(n_actions: int, beta: float, *, strength: float = 0.4, reference=None, dtype=np.float64):
    """Generalised rock-paper-scissors: action i beats the next floor((A-1)/2) actions (cyclically) with
    probability 1/2 + strength, loses to the previous ones, and ties the opposite one when A is even."""
    n = _integer_at_least(n_actions, minimum=3)
    if not 0 <= strength <= 0.5:
        raise ValueError(f"strength: expected a number in [0, 1/2], got {strength!r}")
    half = (n - 1) // 2
    gap = (np.arange(n)[None, :] - np.arange(n)[:, None]) % n  # how far ahead j is of i
    P = np.full((n, n), 0.5)
    P[(gap >= 1) & (gap <= half)] += strength
    P[(gap >= n - half)] -= strength
    return PreferenceGame(P.astype(dtype), _reference_or_uniform(reference, n), beta)


def bradley_terry_matrix(rewards: np.ndarray, dtype=np.float64) -> np.ndarray:
    """P[..., i, j] = sigmoid(r_i - r_j), completed from the lower triangle so that P + P^T = 1 exactly."""
    rewards = np.asarray(rewards, dtype=np.float64)
    P = expit(rewards[..., :, None] - rewards[..., None, :])
    upper = np.triu(np.ones(P.shape[-2:], dtype=bool), 1)
    P = np.where(upper, 1 - np.swapaxes(P, -1, -2), P)
    return P.astype(dtype)


def bradley_terry_game(n_actions: int, beta: float, *, scale: float = 1.0, reference=None, seed=0, dtype=np.float64):
    """Transitive game P[i, j] = sigmoid(r_i - r_j), r ~ N(0, scale^2)."""
    n = _integer_at_least(n_actions)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: expected a positive reward scale, got {scale!r}")
    rewards = _generator(seed).normal(0.0, scale, n)
    return PreferenceGame(bradley_terry_matrix(rewards, dtype), _reference_or_uniform(reference, n), beta)


def annotator_population(n_actions: int, n_annotators: int, *, scale: float = 1.0, seed=0, dtype=np.float64):
    """(n, A, A): one Bradley-Terry matrix per annotator type, rewards r^(k) ~ N(0, scale^2) independently.

    Each is transitive; their mean is generally not (a Condorcet cycle), which :func:`annotator_population_game`
    plays.
    """
    return bradley_terry_matrix(_annotator_rewards(n_actions, n_annotators, scale, seed), dtype)


def _annotator_rewards(n_actions: int, n_annotators: int, scale: float, seed) -> np.ndarray:
    """(n_annotators, A) rewards r^(k) ~ N(0, scale^2), the draws of :func:`annotator_population`."""
    n = _integer_at_least(n_actions)
    k = _integer_at_least(n_annotators, "n_annotators", minimum=1)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: expected a positive reward scale, got {scale!r}")
    return _generator(seed).normal(0.0, scale, (k, n))


def annotator_population_game(
    n_actions: int, n_annotators: int, beta: float, *, scale: float = 1.0, reference=None, seed=0, dtype=np.float64
) -> PreferenceGame:
    """The game of the mean preference P = (1/n) sum_k P_k of :func:`annotator_population` (same seed, same P_k),
    summed one annotator at a time: A x A memory, so A = 10^4 needs 0.8 GB rather than the stack's n times that."""
    rewards = _annotator_rewards(n_actions, n_annotators, scale, seed)
    total = np.zeros((rewards.shape[1], rewards.shape[1]))
    for annotator in rewards:
        total += bradley_terry_matrix(annotator)
    return PreferenceGame((total / len(rewards)).astype(dtype), _reference_or_uniform(reference, n_actions), beta)


def low_rank_game(n_actions: int, rank: int, beta: float, *, reference=None, seed=0, dtype=np.float64):
    """Matrix-free game with U, V ~ N(0, 1) of shape (A, rank) (:class:`LowRankPreference`)."""
    n = _integer_at_least(n_actions)
    r = _integer_at_least(rank, "rank", minimum=1)
    rng = _generator(seed)
    U = rng.standard_normal((n, r), dtype=np.dtype(dtype))
    V = rng.standard_normal((n, r), dtype=np.dtype(dtype))
    return PreferenceGame(LowRankPreference(U, V), _reference_or_uniform(reference, n), beta)
