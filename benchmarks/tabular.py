"""Tabular MDP core (theory.tabular): backward induction, batched planning and rollouts against references.

Rows, each timed in this run (ratio = reference time / our time):

1. backward induction on one MDP (S=25, A=4, H=20 and S=100, A=4, H=50), both paths (numba, the default, and
   numpy's matmul), against a pure-Python reference looping over nested lists; target >= 50x;
2. a batch of 1000 MDPs (S=10, A=3, H=10) with ``backward_induction_batch``: numba (target <= 5 ms absolute)
   against the numpy path (one batched matmul per step) and against the pure-Python reference run 1000 times;
3. 20,000 rollouts of H=50 steps (S=50, A=4, the optimal policy): numba against the vectorised numpy sampler;
   target >= 5x. Both draw the same episodes from the same seed (checked), so they do the same work.

Every result is checked against its reference (max |difference| in the table). Times are medians over
``--repeats`` repeats after a warm-up (numba's compilation included in the warm-up); sub-millisecond calls are
looped so that one repeat lasts at least ~20 ms. OMP/OPENBLAS/MKL/NUMBA/RAYON_NUM_THREADS are set to 1 before
numpy is imported: the batched numba kernel is serial (``parallel=True`` was slower on 2 cores) and one BLAS
thread keeps the comparison single-core on both sides.

Run: .venv/bin/python benchmarks/tabular.py [--quick] [--repeats 7]
"""

from __future__ import annotations

import os

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "RAYON_NUM_THREADS",
)
for _variable in THREAD_VARIABLES:
    os.environ[_variable] = "1"

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np

from theory.tabular import TabularMDP, backward_induction, backward_induction_batch, rollouts

MIN_REPEAT_SECONDS = 0.02


@dataclass(frozen=True)
class Row:
    task: str
    ours: str
    ours_ms: float
    reference: str
    reference_ms: float
    target: str
    met: bool
    max_difference: float


def median_ms(fn, repeats: int) -> float:
    """Median milliseconds per call of ``fn`` over ``repeats`` repeats, each looping to >= MIN_REPEAT_SECONDS."""
    fn()  # warm-up (numba compiles or loads its cache here)
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    number = max(1, int(np.ceil(MIN_REPEAT_SECONDS / max(once, 1e-9))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return 1e3 * statistics.median(times)


def random_mdp_arrays(rng, n_states: int, n_actions: int, batch: tuple[int, ...] = ()):
    transitions = rng.dirichlet(np.ones(n_states), size=(*batch, n_states, n_actions))
    return transitions, rng.random((*batch, n_states, n_actions))


def python_backward_induction(transitions: list, rewards: list, horizon: int) -> tuple[list, list]:
    """Reference: V_H = 0, Q_h(s, a) = r(s, a) + sum_s' P(s'|s, a) V_{h+1}(s') on nested lists; returns V_0, pi."""
    n_states, n_actions = len(rewards), len(rewards[0])
    values = [0.0] * n_states
    policy = []
    for _ in range(horizon):
        new_values, step_policy = [0.0] * n_states, [0] * n_states
        for s in range(n_states):
            best, best_action = -float("inf"), 0
            for a in range(n_actions):
                row = transitions[s][a]
                q = rewards[s][a]
                for s_next in range(n_states):
                    q += row[s_next] * values[s_next]
                if q > best:
                    best, best_action = q, a
            new_values[s], step_policy[s] = best, best_action
        values = new_values
        policy.append(step_policy)
    return values, policy[::-1]


def single_mdp_rows(n_states: int, n_actions: int, horizon: int, repeats: int, reference_repeats: int) -> list[Row]:
    rng = np.random.default_rng(0)
    transitions, rewards = random_mdp_arrays(rng, n_states, n_actions)
    mdp = TabularMDP(transitions, rewards, np.full(n_states, 1 / n_states), horizon=horizon)
    nested = transitions.tolist(), rewards.tolist()
    reference_ms = median_ms(lambda: python_backward_induction(*nested, horizon), reference_repeats)
    reference_values, _ = python_backward_induction(*nested, horizon)
    rows = []
    for method in ("numba", "numpy"):
        ours_ms = median_ms(lambda method=method: backward_induction(mdp, method=method), repeats)
        difference = float(np.max(np.abs(backward_induction(mdp, method=method).values[0] - reference_values)))
        rows.append(
            Row(
                f"backward induction S={n_states}, A={n_actions}, H={horizon}",
                "numba (auto)" if method == "numba" else "numpy (matmul)",
                ours_ms,
                "pure Python",
                reference_ms,
                ">= 50x",
                reference_ms / ours_ms >= 50,
                difference,
            )
        )
    return rows


def batch_rows(n_batch: int, repeats: int, reference_repeats: int) -> list[Row]:
    n_states, n_actions, horizon = 10, 3, 10
    rng = np.random.default_rng(1)
    transitions, rewards = random_mdp_arrays(rng, n_states, n_actions, (n_batch,))
    task = f"batch of {n_batch} MDPs, S={n_states}, A={n_actions}, H={horizon}"
    solutions = {
        method: backward_induction_batch(transitions, rewards, horizon, method=method) for method in ("numba", "numpy")
    }
    times = {
        method: median_ms(
            lambda method=method: backward_induction_batch(transitions, rewards, horizon, method=method), repeats
        )
        for method in ("numba", "numpy")
    }
    nested = [(t.tolist(), r.tolist()) for t, r in zip(transitions, rewards, strict=True)]
    python_ms = median_ms(lambda: [python_backward_induction(t, r, horizon) for t, r in nested], reference_repeats)
    python_values = np.array([python_backward_induction(t, r, horizon)[0] for t, r in nested])
    numba_ms = times["numba"]
    return [
        Row(
            task,
            "numba",
            numba_ms,
            "numpy (batched matmul)",
            times["numpy"],
            "numba <= 5 ms",
            numba_ms <= 5.0,
            float(np.max(np.abs(solutions["numba"].values - solutions["numpy"].values))),
        ),
        Row(
            task,
            "numba",
            numba_ms,
            "pure Python",
            python_ms,
            "numba <= 5 ms",
            numba_ms <= 5.0,
            float(np.max(np.abs(solutions["numba"].values[:, 0] - python_values))),
        ),
    ]


def rollout_row(n_episodes: int, repeats: int) -> Row:
    n_states, n_actions, horizon = 50, 4, 50
    rng = np.random.default_rng(2)
    transitions, rewards = random_mdp_arrays(rng, n_states, n_actions)
    mdp = TabularMDP(transitions, rewards, np.full(n_states, 1 / n_states), horizon=horizon)
    policy = backward_induction(mdp).policy
    episodes = {method: rollouts(mdp, policy, n_episodes, seed=3, method=method) for method in ("numba", "numpy")}
    identical = all(np.array_equal(a, b) for a, b in zip(episodes["numba"], episodes["numpy"], strict=True))
    times = {
        method: median_ms(lambda method=method: rollouts(mdp, policy, n_episodes, seed=3, method=method), repeats)
        for method in ("numba", "numpy")
    }
    return Row(
        f"{n_episodes:,} rollouts, S={n_states}, A={n_actions}, H={horizon}",
        "numba",
        times["numba"],
        "numpy (vectorised)",
        times["numpy"],
        ">= 5x",
        times["numpy"] / times["numba"] >= 5,
        0.0 if identical else float("nan"),
    )


def print_table(rows: list[Row]) -> None:
    print("| task | ours | ours ms | reference | reference ms | ratio | target | met | max abs diff |")
    print("|---|---|---:|---|---:|---:|---|---|---:|")
    for r in rows:
        print(
            f"| {r.task} | {r.ours} | {r.ours_ms:.4g} | {r.reference} | {r.reference_ms:.4g} | "
            f"{r.reference_ms / r.ours_ms:.1f}x | {r.target} | {'yes' if r.met else 'NO'} | {r.max_difference:.1e} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and one repeat: runs in seconds")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 7; quick 1)")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 7)
    reference_repeats = 1 if args.quick else 3
    rows = single_mdp_rows(25, 4, 20, repeats, reference_repeats)
    if not args.quick:
        rows += single_mdp_rows(100, 4, 50, repeats, reference_repeats)
    rows += batch_rows(100 if args.quick else 1000, repeats, reference_repeats)
    rows.append(rollout_row(2_000 if args.quick else 20_000, repeats))
    print(f"theory.tabular benchmark ({', '.join(THREAD_VARIABLES)} = 1; medians of {repeats} repeats)\n")
    print_table(rows)


if __name__ == "__main__":
    main()
