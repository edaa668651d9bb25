"""Preference games (theory.games): Nash mirror prox against its baselines, the memory roofline, pygambit and an LP.

All four parts of issue 5 print in one run (numpy backend, BLAS threads pinned, see the end):

1. Iterations, preference queries and seconds to KL(pi* || pi_k) <= 1e-8 for each method (Nash-MP at the certified
   step eta' = 2; Nash-MP at eta' = 8 with ``unsafe_step``; Nash-MD with the constant eta' = 0.5 and with
   eta'_t = 1 / (beta (t + 2)); MMD; extragradient; optimistic mirror descent, each at its default step otherwise)
   on five families (random EGPO-style, cyclic RPS with strength 0.4, Bradley-Terry, a population of 10
   Bradley-Terry annotators, matrix-free low rank with rank 32), all from mu ~ Dirichlet(1) (seeded), float64,
   A in {100, 1000, 10000}, beta in {0.1, 0.01}. pi* is the float64 :func:`solve_equilibrium` answer (certified
   KL <= 1e-13; Newton-polished to the rounding floor for dense A <= 4000) and is passed as ``target``.
   How the clock is kept clean: a counting pass runs ``solve_nash`` with ``target`` (KL and span of the logits
   each iteration, O(A) work) and ``check_every`` beyond the budget, so the certificate (a logsumexp for every
   method and one more product P pi_k for Nash-MD and the optimistic method) is never evaluated; a callback stops
   it at the first KL <= 1e-8. The seconds are then a replay of exactly that many iterations by the method's
   stepped class with no target and no metrics, median of ``--repeats`` replays (one replay when it lasts over
   1 s); the counting pass is the warm-up. Budget per cell: 20,000 queries or 60 s of counting pass, whichever
   comes first; a cell that hits it shows the KL at the budget instead of a count.
   Skipped in full mode to keep the run near 15 minutes on 2 cores (one A = 10^4 dense product is ~40 ms here):
   at A = 10^4 the dense families run beta = 0.1 only (ground truth plus runs at beta = 0.01 cost minutes per
   family) and without Nash-MD (at ~40 ms a query the 60 s budget buys ~1,500 queries, fewer than Nash-MD needs
   at A <= 1000: 1,500-17,000 with the decaying step, and the constant step stalls at its biased fixed point); the
   matrix-free low-rank family runs everything. ``--complete`` skips nothing (about an hour more).
   Wall times exclude game generation and the ground truth.
2. Seconds per Nash-MP iteration (2 dense mat-vecs and 2 logsumexps) against the memory bound of its two mat-vecs,
   2 A^2 itemsize bytes / bandwidth, float32 and float64, A in {1000, 4000, 10000}. The bandwidth is measured in
   this run, as the better of a 256 MB array copy (read + write bytes) and a gemv of a 256 MB matrix (bytes read);
   below ~2000 (float64) the matrix fits in the 32 MB L3 cache and can beat the DRAM bound.
3. Our exact equilibrium against independent solvers of the same object:
   - uniform mu: pi* is the logit QRE at lambda = 1 / beta of the zero-sum game with payoff P - 1/2, which pygambit
     computes by path following (``pygambit.qre.logit_solve_lambda(Game.from_arrays(M, -M), lam=[1 / beta])``);
     random games at beta = 0.1, A = 10, 30, 100, 300, stopping before a size whose time, extrapolated as A^3 from
     the last one, exceeds 60 s. Reported: max |pi_ours - pi_gambit| over both players, at lambda = 1 / beta and
     at the lambda pygambit returns (its path stops a hair away from the requested value); times exclude building
     the games.
   - beta -> 0: the von Neumann winner of the unregularised game by scipy's HiGHS LP, A in {100, 1000}, against
     :func:`solve_equilibrium` at beta = 1e-3; both answers' unregularised exploitability max_y (P pi)(y) - 1/2.
4. Targets (notes/games.md, "Benchmark protocol"), measured as in part 1 (counting pass against the float64 pi*,
   replayed seconds): random game A = 10^4 float32, beta = 0.1 within 60 iterations and 2 s; a batch of 1024
   random games x 64 actions, float32, beta = 0.1 (worst game's KL) within 0.2 s; the low-rank game A = 10^6,
   rank 32, beta = 0.1, float32, within 10 s. That last one uses the LLM-like Zipf(1.1) reference: with a diffuse
   Dirichlet mu the factors' means V^T mu, U^T mu average out over 10^6 actions and pi* is within KL 5e-8 of mu,
   a test of nothing. The table shows each instance's KL(pi* || mu), the distance the solver has to cover.

Threads: OMP/OPENBLAS/MKL/NUMBA/RAYON_NUM_THREADS are set to ``--threads`` (default 1) before numpy is imported; on
this shared 2-core machine two OpenBLAS threads made the A = 10^4 mat-vec slower, not faster. Timings are medians
of ``--repeats`` calls (a call over 1 s runs once; shorter ones have their first call in the median's sample, so
no separate warm-up is needed). ``--quick``: A = 100 with a 2,000-query / 5 s budget, smaller roofline, pygambit,
LP and target sizes (targets are then not judged); under a minute.

Run: .venv/bin/python benchmarks/games.py [--quick] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "RAYON_NUM_THREADS",
)
THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else "1"
for _variable in THREAD_VARIABLES:
    os.environ[_variable] = THREADS

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from theory.games import (
    METHODS,
    PreferenceGame,
    annotator_population_game,
    bradley_terry_game,
    cyclic_game,
    dirichlet_reference,
    kl,
    low_rank_game,
    random_game,
    solve_equilibrium,
    solve_nash,
    stack_games,
    unregularised_exploitability,
    zipf_reference,
)

BACKEND = "numpy"
KL_TARGET = 1e-8
LONG_CALL = 1.0
"""Seconds above which a timed call runs once instead of ``--repeats`` times."""
LARGE = 10_000
"""Actions from which the full-mode cell plan skips cells (:func:`skip_reason`)."""
N_ANNOTATORS = 10
RANK = 32
GAMBIT_LIMIT = 60.0
LP_BETA = 1e-3


# --------------------------------------------------------------------------------------------- games and methods


@dataclass(frozen=True)
class Method:
    label: str
    name: str
    options: dict = field(default_factory=dict)


METHOD_ROWS = (
    Method("Nash-MP eta'=2 (certified)", "nash_mp"),
    Method("Nash-MP eta'=8 (unsafe)", "nash_mp", {"step": 8.0, "unsafe_step": True}),
    Method("Nash-MD eta'=0.5 constant", "nash_md", {"step": 0.5}),
    Method("Nash-MD eta'_t=1/(beta(t+2))", "nash_md", {"step": "decaying"}),
    Method("MMD eta'=min(2, 4 beta)", "mmd"),
    Method("extragradient eta'=1/(1+beta)", "extragradient"),
    Method("optimistic eta'=1", "optimistic"),
)
NASH_MP = METHOD_ROWS[0]

FAMILIES: dict[str, Callable] = {
    "random": lambda n, beta, mu, rng: random_game(n, beta, reference=mu, seed=rng),
    "cyclic": lambda n, beta, mu, rng: cyclic_game(n, beta, reference=mu),
    "Bradley-Terry": lambda n, beta, mu, rng: bradley_terry_game(n, beta, reference=mu, seed=rng),
    "annotators": lambda n, beta, mu, rng: annotator_population_game(n, N_ANNOTATORS, beta, reference=mu, seed=rng),
    "low-rank": lambda n, beta, mu, rng: low_rank_game(n, RANK, beta, reference=mu, seed=rng),
}


def make_game(family: str, n: int, beta: float, seed: int = 0, reference=None) -> PreferenceGame:
    """A float64 game of ``family``; ``seed`` fixes the game and mu (default mu ~ Dirichlet(1))."""
    rng = np.random.default_rng(seed)
    reference = dirichlet_reference(n, seed=rng) if reference is None else reference
    return FAMILIES[family](n, beta, reference, rng)


def skip_reason(family: str, n: int, beta: float, method: Method, complete: bool = False) -> str | None:
    """Why a cell is not run (None: it runs); see the module docstring, part 1. ``complete``: no cell is skipped."""
    if complete or n < LARGE or family == "low-rank":
        return None
    if beta < 0.1:
        return f"dense A = {n} at beta = {beta}: ground truth and runs take minutes per family"
    if method.name == "nash_md":
        return f"Nash-MD at dense A = {n}: 60 s buys ~1,500 queries, fewer than it needs at A <= 1000"
    return None


# --------------------------------------------------------------------------------------------- timing


def median_time(measure: Callable[[], float], repeats: int) -> float:
    """Median of ``repeats`` measurements (seconds); one when it is longer than LONG_CALL."""
    times = []
    for _ in range(repeats):
        times.append(measure())
        if times[-1] > LONG_CALL:
            break
    return statistics.median(times)


def timed(fn, repeats: int) -> tuple[float, object]:
    """(median wall seconds of ``fn()``, its last result)."""
    results = []

    def measure() -> float:
        start = time.perf_counter()
        results.append(fn())
        return time.perf_counter() - start

    return median_time(measure, repeats), results[-1]


def replay_seconds(game: PreferenceGame, method: Method, n_iter: int, repeats: int) -> float:
    """Seconds for ``n_iter`` iterations of ``method`` from mu with no target and no metrics (check_every > n)."""

    def measure() -> float:
        solver = METHODS[method.name](game, tol=0.0, check_every=n_iter + 1, backend=BACKEND, **method.options)
        start = time.perf_counter()  # construction (log mu, the start) is not an iteration
        for _ in range(n_iter):
            solver.step()
        return time.perf_counter() - start

    return median_time(measure, repeats)


def duration(seconds: float) -> str:
    return f"{1e3 * seconds:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


# --------------------------------------------------------------------------------------------- part 1


@dataclass(frozen=True)
class Budget:
    queries: int
    seconds: float


@dataclass(frozen=True)
class Run:
    """A method on a game until KL(pi* || pi_k) <= KL_TARGET or the budget: ``seconds`` is the replay (None if the
    target was not reached), ``kl`` the KL where the counting pass stopped, ``spent`` what stopped it."""

    reached: bool
    n_iter: int
    queries: int
    kl: float
    seconds: float | None
    spent: str

    def cell(self) -> str:
        if self.reached:
            return f"{self.n_iter} it · {self.queries} q · {duration(self.seconds)}"
        return f"KL {self.kl:.1e} at {self.spent}"


def run_to_target(game: PreferenceGame, method: Method, log_star, budget: Budget, repeats: int) -> Run:
    """Counting pass with ``target`` = log pi* (stops at the first KL <= KL_TARGET or the budget), then the replay."""
    start = time.perf_counter()

    def stop(state) -> bool:
        out_of_budget = state.metrics["queries"] >= budget.queries or time.perf_counter() - start > budget.seconds
        return state.metrics["kl"] <= KL_TARGET or out_of_budget

    count = solve_nash(
        game,
        method.name,
        tol=0.0,
        max_iter=budget.queries,
        target=log_star,
        check_every=budget.queries + 1,
        callback=stop,
        backend=BACKEND,
        **method.options,
    )
    final_kl = float(count.history["kl"][-1])
    reached = final_kl <= KL_TARGET
    if count.queries >= budget.queries:
        spent = f"{count.queries} q"
    else:
        spent = f"{budget.seconds:.0f} s ({count.queries} q)"
    seconds = replay_seconds(game, method, count.n_iter, repeats) if reached else None
    return Run(reached, count.n_iter, count.queries, final_kl, seconds, spent)


@dataclass(frozen=True)
class GroundTruth:
    log_policy: np.ndarray
    seconds: float
    certificate: float
    kl_from_reference: float


def ground_truth(game: PreferenceGame) -> GroundTruth:
    """pi* in float64 by :func:`solve_equilibrium` (certified KL <= 1e-13), timed once."""
    start = time.perf_counter()
    result = solve_equilibrium(game, max_iter=100_000, backend=BACKEND)
    seconds = time.perf_counter() - start
    if not result.converged:
        raise RuntimeError(f"ground truth did not converge: {result.message}")
    log_reference = np.log(game.reference)
    return GroundTruth(
        result.log_policy,
        seconds,
        float(np.max(result.certificate)),
        float(np.max(kl(result.log_policy, log_reference))),
    )


def print_markdown(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def convergence_table(n: int, beta: float, budget: Budget, repeats: int, complete: bool = False) -> None:
    """Part 1 for one (A, beta): a row per method, a column per family."""
    columns: dict[str, list[str]] = {}
    truths, reasons = {}, []
    for family in FAMILIES:
        skips = [skip_reason(family, n, beta, method, complete) for method in METHOD_ROWS]
        reasons += [reason for reason in dict.fromkeys(skips) if reason and reason not in reasons]
        if all(skips):
            columns[family] = ["skipped"] * len(METHOD_ROWS)
            continue
        game = make_game(family, n, beta)
        truths[family] = truth = ground_truth(game)
        columns[family] = [
            "skipped" if skip else run_to_target(game, method, truth.log_policy, budget, repeats).cell()
            for method, skip in zip(METHOD_ROWS, skips, strict=True)
        ]
        del game  # free the A x A matrix before the next one is built
    print(f"\n### A = {n}, beta = {beta}: iterations · queries · seconds to KL(pi* || pi) <= {KL_TARGET:g}\n")
    rows = [[method.label] + [columns[f][i] for f in FAMILIES] for i, method in enumerate(METHOD_ROWS)]
    print_markdown(["method"] + list(FAMILIES), rows)
    print()
    for family, truth in truths.items():
        print(
            f"- pi* ({family}): {duration(truth.seconds)}, certified KL <= {truth.certificate:.1e}, "
            f"KL(pi* || mu) = {truth.kl_from_reference:.2e}"
        )
    for reason in reasons:
        print(f"- skipped: {reason}")


# --------------------------------------------------------------------------------------------- part 2


def bandwidths(repeats: int) -> dict[str, float]:
    """Bytes/s of a 256 MB array copy (read + write) and of a gemv of a 256 MB matrix (read)."""
    source = np.random.default_rng(0).random(2**25)
    target = np.empty_like(source)
    matrix, vector = source.reshape(4096, 8192), np.ones(8192)
    copy_seconds, _ = timed(lambda: np.copyto(target, source), max(repeats, 5))
    gemv_seconds, _ = timed(lambda: matrix @ vector, max(repeats, 5))
    return {"copy": 2 * source.nbytes / copy_seconds, "gemv": source.nbytes / gemv_seconds}


def seconds_per_iteration(game: PreferenceGame, repeats: int, min_seconds: float = 0.2) -> float:
    """Nash-MP seconds per iteration, replaying enough iterations for a repeat to last ``min_seconds``."""
    once = replay_seconds(game, NASH_MP, 2, 1) / 2  # also the warm-up
    steps = max(2, math.ceil(min_seconds / once))
    return replay_seconds(game, NASH_MP, steps, repeats) / steps


def roofline_table(sizes: tuple[int, ...], repeats: int) -> None:
    rates = bandwidths(repeats)
    bandwidth = max(rates.values())
    print(
        f"\nBandwidth: copy {rates['copy'] / 1e9:.1f} GB/s (read + write), gemv {rates['gemv'] / 1e9:.1f} GB/s "
        f"(read); the bound uses {bandwidth / 1e9:.1f} GB/s\n"
    )
    rows = []
    for dtype in (np.float32, np.float64):
        for n in sizes:
            game = random_game(n, 0.1, seed=0, dtype=dtype)
            n_bytes = 2 * n * n * np.dtype(dtype).itemsize
            measured, bound = seconds_per_iteration(game, repeats), n_bytes / bandwidth
            rows.append(
                [
                    np.dtype(dtype).name,
                    str(n),
                    f"{n_bytes / 1e6:.1f}",
                    f"{1e3 * bound:.3f}",
                    f"{1e3 * measured:.3f}",
                    f"{measured / bound:.2f}",
                ]
            )
            del game
    print_markdown(["dtype", "A", "MB per iteration", "bound ms", "measured ms", "measured / bound"], rows)


# --------------------------------------------------------------------------------------------- part 3


def gambit_qre(preference: np.ndarray, beta: float) -> tuple[float, np.ndarray, float]:
    """(seconds, both players' strategies (2, A), lambda reached) of pygambit's logit QRE at lambda = 1 / beta of
    the zero-sum game with payoff P - 1/2."""
    import pygambit
    from pygambit import qre

    payoff = preference - 0.5
    game = pygambit.Game.from_arrays(payoff, -payoff)
    start = time.perf_counter()
    (answer,) = qre.logit_solve_lambda(game, lam=[1 / beta])
    seconds = time.perf_counter() - start
    profile = answer.profile
    strategies = np.array([[profile[player][s] for s in player.strategies] for player in game.players], dtype=float)
    return seconds, strategies, float(answer.lam)


def equilibrium_seconds(game: PreferenceGame, repeats: int) -> tuple[float, np.ndarray]:
    seconds, result = timed(lambda: solve_equilibrium(game, max_iter=100_000, backend=BACKEND), repeats)
    return seconds, result.policy


def gambit_table(sizes: tuple[int, ...], beta: float, repeats: int) -> None:
    try:
        import pygambit  # noqa: F401
    except ImportError:
        print("\npygambit is not installed (pip install -e .[bench]): QRE comparison skipped")
        return
    rows, last, stopped = [], None, ""
    for n in sizes:
        if last is not None and last[1] * (n / last[0]) ** 3 > GAMBIT_LIMIT:
            stopped = (
                f"A = {n} not run: pygambit took {last[1]:.1f} s at A = {last[0]}, A^3 predicts > {GAMBIT_LIMIT:.0f} s"
            )
            break
        game = random_game(n, beta, seed=0)
        gambit_seconds, strategies, reached_lambda = gambit_qre(game.preference, beta)
        ours_seconds, ours = equilibrium_seconds(game, repeats)
        _, at_reached = equilibrium_seconds(PreferenceGame(game.preference, game.reference, 1 / reached_lambda), 1)
        rows.append(
            [
                str(n),
                f"{gambit_seconds:.3g}",
                f"{ours_seconds:.3g}",
                f"{gambit_seconds / ours_seconds:.0f}x",
                f"{reached_lambda:.12g}",
                f"{np.abs(strategies - ours).max():.1e}",
                f"{np.abs(strategies - at_reached).max():.1e}",
            ]
        )
        last = (n, gambit_seconds)
        if gambit_seconds > GAMBIT_LIMIT:
            break
    print()
    header = ["A", "pygambit s", "ours s", "speed-up", "lambda reached", "max diff at 1/beta", "at lambda reached"]
    print_markdown(header, rows)
    if stopped:
        print(f"\n- {stopped}")


def von_neumann_lp(preference: np.ndarray) -> tuple[float, np.ndarray]:
    """(seconds, pi) of max_pi min_y (pi^T (P - 1/2))_y by HiGHS: the value is 0, pi is a von Neumann winner."""
    n = preference.shape[0]
    payoff = preference - 0.5
    start = time.perf_counter()
    lp = linprog(
        np.r_[np.zeros(n), -1.0],
        A_ub=np.c_[-payoff.T, np.ones(n)],
        b_ub=np.zeros(n),
        A_eq=np.r_[np.ones(n), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * n + [(None, None)],
        method="highs",
    )
    seconds = time.perf_counter() - start
    if lp.status != 0:
        raise RuntimeError(f"HiGHS failed: {lp.message}")
    winner = np.maximum(lp.x[:n], 0)
    return seconds, winner / winner.sum()


def lp_table(sizes: tuple[int, ...], repeats: int) -> None:
    rows = []
    for n in sizes:
        game = random_game(n, LP_BETA, seed=0)
        lp_seconds, winner = von_neumann_lp(game.preference)
        ours_seconds, ours = equilibrium_seconds(game, repeats)
        rows.append(
            [
                str(n),
                f"{lp_seconds:.3g}",
                f"{ours_seconds:.3g}",
                f"{unregularised_exploitability(game, winner):.1e}",
                f"{unregularised_exploitability(game, ours):.1e}",
                f"{LP_BETA * np.log(n):.1e}",
                str(int(np.sum(winner > 1e-9))),
                f"{np.abs(ours - winner).sum():.3f}",
            ]
        )
    print()
    header = ["A", "HiGHS LP s", f"ours beta={LP_BETA:g} s", "LP exploit.", "ours exploit.", "beta log A"]
    print_markdown(header + ["LP support", "L1 distance ours - LP"], rows)


# --------------------------------------------------------------------------------------------- part 4


@dataclass(frozen=True)
class Target:
    label: str
    game: Callable[[], PreferenceGame]
    max_iter: int | None
    max_seconds: float


def targets(quick: bool) -> list[Target]:
    n_dense, n_games, n_low_rank = (2000, 128, 100_000) if quick else (10_000, 1024, 1_000_000)
    return [
        Target(
            f"random A = {n_dense}, float32, beta = 0.1: <= 60 iterations and <= 2 s",
            lambda: make_game("random", n_dense, 0.1),
            60,
            2.0,
        ),
        Target(
            f"{n_games} random games x 64 actions, float32, beta = 0.1: <= 0.2 s",
            lambda: stack_games([make_game("random", 64, 0.1, seed=s) for s in range(n_games)]),
            None,
            0.2,
        ),
        Target(
            f"low-rank A = {n_low_rank}, rank {RANK}, Zipf mu, float32, beta = 0.1: <= 10 s",
            lambda: make_game("low-rank", n_low_rank, 0.1, reference=zipf_reference(n_low_rank)),
            None,
            10.0,
        ),
    ]


def target_table(quick: bool, repeats: int) -> None:
    rows = []
    for target in targets(quick):
        game = target.game()
        truth = ground_truth(game)
        run = run_to_target(game.astype(np.float32), NASH_MP, truth.log_policy, Budget(20_000, 60.0), repeats)
        met = run.reached and run.seconds <= target.max_seconds
        met = met and (target.max_iter is None or run.n_iter <= target.max_iter)
        verdict = "n/a (quick sizes)" if quick else ("met" if met else "NOT met")
        rows.append([target.label, f"{truth.kl_from_reference:.1e}", run.cell(), verdict])
        del game
    print()
    header = ["target (Nash-MP eta'=2 to KL <= 1e-8 from the float64 pi*)", "KL(pi*‖mu)", "measured", "verdict"]
    print_markdown(header, rows)


# --------------------------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and budgets: a smoke run under a minute")
    parser.add_argument("--threads", default="1", help="BLAS threads, set before numpy is imported (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of calls shorter than 1 s (default 3)")
    parser.add_argument(
        "--complete", action="store_true", help="part 1 skips no cell at A = 10^4 (about an hour more on 2 cores)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    load = os.getloadavg()
    print(
        f"# theory.games benchmark ({'quick' if args.quick else 'full'}; {', '.join(THREAD_VARIABLES)} = {THREADS}; "
        f"numpy {np.__version__}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start)"
    )
    budget = Budget(2_000, 5.0) if args.quick else Budget(20_000, 60.0)
    sizes = (100,) if args.quick else (100, 1000, LARGE)
    print(
        f"\n## 1. Methods x families to KL <= {KL_TARGET:g} (float64, mu ~ Dirichlet(1); budget {budget.queries} "
        f"queries or {budget.seconds:.0f} s per cell; it = iterations, q = preference queries, seconds replayed)"
    )
    for n in sizes:
        for beta in (0.1, 0.01):
            convergence_table(n, beta, budget, args.repeats, args.complete)
    print("\n## 2. Nash-MP iteration against the memory bound of its two mat-vecs (2 A^2 itemsize bytes)")
    roofline_table((250, 1000) if args.quick else (1000, 4000, LARGE), args.repeats)
    print("\n## 3a. Uniform mu: our pi* against pygambit's logit QRE (lambda = 1/beta, beta = 0.1, random games)")
    gambit_table((10, 30) if args.quick else (10, 30, 100, 300), 0.1, args.repeats)
    print(f"\n## 3b. beta -> 0: HiGHS LP (von Neumann winner) against our pi* at beta = {LP_BETA:g} (random games)")
    lp_table((100,) if args.quick else (100, 1000), args.repeats)
    print("\n## 4. Targets")
    target_table(args.quick, args.repeats)
    load = os.getloadavg()
    print(f"\nTotal {time.perf_counter() - start:.0f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end")


if __name__ == "__main__":
    main()
