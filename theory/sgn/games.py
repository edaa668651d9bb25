"""N-player differentiable games given by their pseudo-gradient, and the regions where bounds hold.

A game has players i = 1..N with strategy blocks x_i of sizes ``blocks``; player i descends
its own cost f_i, so the joint dynamics are the flow x' = -F(x) with the pseudo-gradient
F(x) = (grad_{x_i} f_i(x))_i and its Jacobian J(x) = dF/dx (blocks J_ij = d^2 f_i / dx_i dx_j).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def _vector(value, name: str, size: int | None = None) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.ndim != 1 or (size is not None and array.size != size):
        expected = f"shape ({size},)" if size is not None else "a 1-D array"
        raise ValueError(f"{name}: expected {expected}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values")
    return array


@dataclass(frozen=True)
class Box:
    """The region lower <= x <= upper (componentwise)."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lower, upper = _vector(self.lower, "lower"), _vector(self.upper, "upper", np.size(self.lower))
        if np.any(lower > upper):
            raise ValueError("upper: expected upper >= lower in every coordinate")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)

    @classmethod
    def around(cls, center, radius: float) -> Box:
        """The cube ||x - center||_inf <= radius."""
        center = _vector(center, "center")
        if not radius >= 0:
            raise ValueError(f"radius: expected a non-negative number, got {radius!r}")
        return cls(center - radius, center + radius)

    @property
    def dim(self) -> int:
        return self.lower.size

    def project(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lower, self.upper)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniform points, plus up to 2^dim corners (all of them when dim <= 10)."""
        points = rng.uniform(self.lower, self.upper, size=(n, self.dim))
        if self.dim <= 10:
            corners = np.array(np.meshgrid(*zip(self.lower, self.upper, strict=True), indexing="ij"))
            points = np.vstack([points, corners.reshape(self.dim, -1).T])
        return points


@dataclass(frozen=True)
class Ball:
    """The region ||x - center||_2 <= radius."""

    center: np.ndarray
    radius: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _vector(self.center, "center"))
        if not (np.isfinite(self.radius) and self.radius >= 0):
            raise ValueError(f"radius: expected a non-negative number, got {self.radius!r}")

    @property
    def dim(self) -> int:
        return self.center.size

    def project(self, x: np.ndarray) -> np.ndarray:
        offset = x - self.center
        norm = np.linalg.norm(offset)
        return x if norm <= self.radius else self.center + offset * (self.radius / norm)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniform points in the ball (and its centre)."""
        directions = rng.standard_normal((n, self.dim))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        radii = self.radius * rng.uniform(size=(n, 1)) ** (1.0 / self.dim)
        return np.vstack([self.center, self.center + radii * directions])


Region = Box | Ball


class DifferentiableGame:
    """A game given by ``pseudo_gradient(x) -> F(x)`` over blocks of sizes ``blocks``.

    ``jacobian(x) -> J(x)`` is used when given; otherwise J is estimated by central finite
    differences with step ``fd_step`` (error O(fd_step^2) for smooth F).
    """

    def __init__(
        self,
        pseudo_gradient: Callable[[np.ndarray], np.ndarray],
        blocks: Sequence[int],
        *,
        jacobian: Callable[[np.ndarray], np.ndarray] | None = None,
        fd_step: float = 1e-5,
    ) -> None:
        if not callable(pseudo_gradient):
            raise TypeError(f"pseudo_gradient: expected a callable x -> F(x), got {pseudo_gradient!r}")
        if jacobian is not None and not callable(jacobian):
            raise TypeError(f"jacobian: expected a callable x -> J(x) or None, got {jacobian!r}")
        blocks = [int(b) for b in blocks]
        if len(blocks) < 2 or min(blocks) < 1:
            raise ValueError(f"blocks: expected at least two positive block sizes, got {blocks}")
        if not fd_step > 0:
            raise ValueError(f"fd_step: expected a positive number, got {fd_step!r}")
        self._pseudo_gradient, self._jacobian, self.fd_step = pseudo_gradient, jacobian, float(fd_step)
        self.blocks = tuple(blocks)
        ends = np.cumsum(blocks)
        self.slices = tuple(slice(int(end - size), int(end)) for end, size in zip(ends, blocks, strict=True))
        self.dim = int(ends[-1])

    @property
    def n_players(self) -> int:
        return len(self.blocks)

    def _point(self, x) -> np.ndarray:
        return _vector(x, "x", self.dim)

    def pseudo_gradient(self, x) -> np.ndarray:
        value = np.asarray(self._pseudo_gradient(self._point(x)), dtype=float)
        if value.shape != (self.dim,):
            raise ValueError(f"pseudo_gradient: returned shape {value.shape}, expected ({self.dim},)")
        return value

    def jacobian(self, x) -> np.ndarray:
        x = self._point(x)
        if self._jacobian is not None:
            value = np.asarray(self._jacobian(x), dtype=float)
            if value.shape != (self.dim, self.dim):
                raise ValueError(f"jacobian: returned shape {value.shape}, expected ({self.dim}, {self.dim})")
            return value
        columns = []
        for k in range(self.dim):
            step = np.zeros(self.dim)
            step[k] = self.fd_step
            columns.append((self.pseudo_gradient(x + step) - self.pseudo_gradient(x - step)) / (2 * self.fd_step))
        return np.column_stack(columns)

    @property
    def is_quadratic(self) -> bool:
        return False


class QuadraticGame(DifferentiableGame):
    """F(x) = H x + c: costs quadratic in the joint strategy (LQ games); the Jacobian is H everywhere.

    Bounds computed from H are exact on any region; the unique equilibrium solves H x = -c when H is invertible.
    """

    def __init__(self, H, blocks: Sequence[int], c=None) -> None:
        H = np.asarray(H, dtype=float)
        if H.ndim != 2 or H.shape[0] != H.shape[1] or not np.all(np.isfinite(H)):
            raise ValueError(f"H: expected a finite square matrix, got shape {H.shape}")
        c = np.zeros(H.shape[0]) if c is None else _vector(c, "c", H.shape[0])
        if sum(int(b) for b in blocks) != H.shape[0]:
            raise ValueError(f"blocks: sizes {list(blocks)} must add up to H's size {H.shape[0]}")
        self.H, self.c = H, c
        super().__init__(lambda x: H @ x + c, blocks, jacobian=lambda x: H)

    @property
    def is_quadratic(self) -> bool:
        return True

    def equilibrium(self) -> np.ndarray:
        return np.linalg.solve(self.H, -self.c)

    def block(self, i: int, j: int) -> np.ndarray:
        return self.H[self.slices[i], self.slices[j]]
