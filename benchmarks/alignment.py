"""Exact reward-KL curves (theory.alignment) against cvxpy solving the same optima point by point.

For M outputs and B values of beta, the reference solves B exponential-cone programs
max_q q.r - beta * KL(q || p) with cvxpy + Clarabel; the closed form computes all B tilted
distributions at once. The table reports median wall times, their ratio, and the largest
difference in expected reward over the points cvxpy solved (the answers must agree, or the
speed means nothing), and how many points Clarabel failed on (small beta makes the cone
program badly scaled; the closed form works in log space and has no such failure).

Run: .venv/bin/python benchmarks/alignment.py [--repeats 5]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # thin products: threading costs more than it gives

import argparse
import statistics
import time

import cvxpy as cp
import numpy as np

from theory import alignment


def cvxpy_tilted_rewards(p: np.ndarray, r: np.ndarray, betas: np.ndarray) -> np.ndarray:
    q = cp.Variable(p.size, nonneg=True)
    beta = cp.Parameter(nonneg=True)
    problem = cp.Problem(cp.Maximize(q @ r - beta * cp.sum(cp.rel_entr(q, p))), [cp.sum(q) == 1])
    rewards = []
    for value in betas:
        beta.value = value
        try:
            problem.solve(solver=cp.CLARABEL)
            rewards.append(float(q.value @ r))
        except cp.error.SolverError:
            rewards.append(np.nan)  # counted in the table's "cvxpy failed" column
    return np.array(rewards)


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up (imports, caches, cvxpy canonicalisation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    header = f"{'M outputs':>10} {'betas':>6} {'closed form [ms]':>17} {'cvxpy [ms]':>11} {'speed-up':>9}"
    print(header + f" {'max |dR|':>9} {'cvxpy failed':>13}")
    for m, n_betas in [(50, 20), (500, 20), (5000, 20)]:
        p = rng.dirichlet(np.ones(m))
        r = rng.standard_normal(m)
        betas = np.geomspace(0.05, 20.0, n_betas)
        ours, curve = median_seconds(lambda p=p, r=r, b=betas: alignment.tilted_curve(p, r, b), args.repeats)
        ref, rewards = median_seconds(lambda p=p, r=r, b=betas: cvxpy_tilted_rewards(p, r, b), args.repeats)
        solved = np.isfinite(rewards)
        error = np.abs(curve.reward - rewards)[solved].max() if solved.any() else np.nan
        failed = f"{(~solved).sum()}/{n_betas}"
        timing = f"{1e3 * ours:>17.3f} {1e3 * ref:>11.1f} {ref / ours:>8.0f}x"
        print(f"{m:>10} {n_betas:>6} {timing} {error:>9.1e} {failed:>13}")


if __name__ == "__main__":
    main()
