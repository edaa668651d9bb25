"""The games of the SGN paper's experiments, with their closed forms, and the random ensembles.

* ``asymmetric_toy``: f1 = mu1 x1^2 / 2 + a x1 x2, f2 = mu2 x2^2 / 2 + b x1 x2 (a = 10, b = 0.05):
  not monotone in the Euclidean metric (1 - (a + b)/2 < 0), certified by SGN (1 - sqrt(ab) > 0).
* ``lq_game``: the 64-D LQ game H(lam) = [[I, lam a R], [lam b R^T, I]] with R random orthogonal,
  whose SGN quantities have closed forms (``lq_closed_form``) and where the certificate is tight.
* ``random_lq_game``: an ensemble H_ii = I + R_i^T R_i / d, off-diagonal blocks lam a G / ||G|| and
  lam b G' / ||G'|| (Gaussian G, G'), for certification rates against lam.
* ``random_quadratic_game``: N players with random curvatures and couplings, for the small-gain test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.sgn.certificate import certify
from theory.sgn.games import QuadraticGame


def asymmetric_toy(a: float = 10.0, b: float = 0.05, mu: tuple[float, float] = (1.0, 1.0)) -> QuadraticGame:
    """The paper's 2-D toy: F(x) = (mu1 x1 + a x2, mu2 x2 + b x1)."""
    return QuadraticGame(np.array([[mu[0], a], [b, mu[1]]]), [1, 1])


def _orthogonal(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))  # Haar-distributed


def lq_game(coupling: float, *, dim: int = 64, a: float = 10.0, b: float = 0.05, seed: int = 12345) -> QuadraticGame:
    """H = [[I, coupling a R], [coupling b R^T, I]], R a seeded random orthogonal (dim/2)-matrix."""
    if dim % 2 or dim < 2:
        raise ValueError(f"dim: expected an even positive integer, got {dim}")
    half = dim // 2
    R = _orthogonal(half, np.random.default_rng(seed))
    eye = np.eye(half)
    return QuadraticGame(np.block([[eye, coupling * a * R], [coupling * b * R.T, eye]]), [half, half])


@dataclass(frozen=True)
class LQClosedForm:
    """SGN quantities of :func:`lq_game`, s = coupling sqrt(ab)."""

    margin: float  # 1 - s
    lipschitz: float  # 1 + s (at the optimal weights w2/w1 = a/b)
    euler_step_bound: float  # 2 (1 - s) / (1 + s)^2
    euler_threshold: float  # 2 / (1 + s): where Euler on this game really stops contracting
    euclidean_margin: float  # 1 - coupling (a + b) / 2


def lq_closed_form(coupling: float, a: float = 10.0, b: float = 0.05) -> LQClosedForm:
    s = coupling * np.sqrt(a * b)
    return LQClosedForm(1 - s, 1 + s, 2 * (1 - s) / (1 + s) ** 2, 2 / (1 + s), 1 - coupling * (a + b) / 2)


def random_lq_game(
    coupling: float, *, seed: int, dim: int = 16, a: float = 10.0, b: float = 0.05
) -> QuadraticGame:
    """One member of the random LQ ensemble (two players of dimension dim/2)."""
    if dim % 2 or dim < 2:
        raise ValueError(f"dim: expected an even positive integer, got {dim}")
    half = dim // 2
    rng = np.random.default_rng(seed)
    blocks = [rng.standard_normal((half, half)) for _ in range(4)]
    q1 = np.eye(half) + blocks[0].T @ blocks[0] / half
    q2 = np.eye(half) + blocks[1].T @ blocks[1] / half
    g12 = blocks[2] / np.linalg.norm(blocks[2], 2)
    g21 = blocks[3] / np.linalg.norm(blocks[3], 2)
    return QuadraticGame(np.block([[q1, coupling * a * g12], [coupling * b * g21, q2]]), [half, half])


def random_quadratic_game(n_players: int, dim: int, coupling: float, *, seed: int) -> QuadraticGame:
    """N players of dimension ``dim``: H_ii = I + A_i^T A_i / dim, H_ij = coupling * u_ij * G_ij / ||G_ij||.

    The factors u_ij ~ U(0, 2) make the couplings asymmetric, so weights matter.
    """
    if n_players < 2 or dim < 1:
        raise ValueError(f"n_players, dim: expected n_players >= 2 and dim >= 1, got {n_players}, {dim}")
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_players):
        row = []
        for j in range(n_players):
            g = rng.standard_normal((dim, dim))
            if i == j:
                row.append(np.eye(dim) + g.T @ g / dim)
            else:
                row.append(coupling * rng.uniform(0, 2) * g / np.linalg.norm(g, 2))
        rows.append(row)
    return QuadraticGame(np.block(rows), [dim] * n_players)


def certification_rates(couplings, *, n_seeds: int = 30, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of the random LQ ensemble certified by the Euclidean test and by SGN, per coupling."""
    euclidean, sgn = [], []
    for coupling in couplings:
        certificates = [certify(random_lq_game(coupling, seed=seed, dim=dim)) for seed in range(n_seeds)]
        euclidean.append(np.mean([c.euclidean_certified for c in certificates]))
        sgn.append(np.mean([c.certified for c in certificates]))
    return np.array(euclidean), np.array(sgn)
