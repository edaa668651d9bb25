"""Convex ReLU training: our ADMM (theory.convex_relu.admm) against cvxpy + Clarabel on the same program.

Both solve the exact program of theory.convex_relu.problem (same patterns, same scaling: 1/2 squared loss,
beta = 1% of max_i ||X^T D_i y||) in one run. "Same accuracy" (notes/convex_relu.md, section 4.3) means all of:
relative objective gap to Clarabel's optimum <= 1e-4, relative constraint violation <= 1e-5, and the recovered
network's objective within 1e-4 of the optimum. ADMM's time is the full solve_admm call (setup, iterations,
polish and certificate), median of ``--repeats`` runs after a warm-up; Clarabel's is the cvxpy solve() call
(canonicalisation included), after a warm-up on a tiny problem.

Per iteration, ADMM's time (polish off, fixed rho, metrics off) is compared with a roofline bound:
max(flops / peak, bytes / bandwidth), with the peak of a 2000 x 2000 DGEMM and the copy bandwidth of an array
as large as the iteration's working set, both measured here at the same thread count. Flops: 12 n d P
(Woodbury) or 8 n d P + 2 (dP)^2 (structured) plus 10 d^2 P of small products; bytes: X read four times,
the n x 2P arrays (X u, a, E o |a|) written and read, the signs, and the inverse streamed per iteration.

Threads: each thread count runs in a fresh process with OMP/OPENBLAS/MKL/NUMBA/RAYON_NUM_THREADS set before
numpy is imported. ADMM is timed twice there: with blas_threads = the count under test ("ADMM s", and the
per-iteration time), which gives numpy's BLAS that many threads and scipy's own OpenBLAS one (two threaded OpenBLAS
libraries alternating calls made an iteration ~20x slower on 2 cores: theory.backend.blas_thread_limits),
and as users call it (blas_threads=1, "default s"; the same run when the count is 1).
A last row solves a size cvxpy cannot (n = 50,000): cvxpy is tried in a subprocess under a time and memory
limit, and ADMM's accuracy is its own certificate (duality gap, violation, network objective).
The SCP table reports the sampled convex program (theory.convex_relu.scp) next to the exact optimum.

Run: .venv/bin/python benchmarks/convex_relu.py [--quick] [--threads 1 2] [--repeats 5] [--patterns 50 100 200]
     [--large-n 50000]
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
if "--worker" in sys.argv:  # pinned by the parent before numpy is imported
    _threads = sys.argv[sys.argv.index("--threads") + 1]
    for _variable in THREAD_VARIABLES:
        os.environ[_variable] = _threads

import argparse
import json
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.datasets import load_breast_cancer

from theory.backend import blas_thread_limits
from theory.convex_relu.admm import ConvexReLUADMM, solve_admm
from theory.convex_relu.problem import ConvexReLUProblem, make_problem
from theory.convex_relu.scp import solve_scp

GAP, VIOLATION = 1e-4, 1e-5
"""Same accuracy: relative objective gap (and network objective) <= 1e-4, relative violation <= 1e-5."""


# --------------------------------------------------------------------------------------------- problems


def _with_beta(X, y, n_gates: int, fraction: float, seed: int) -> ConvexReLUProblem:
    """The program over ``n_gates`` sampled patterns with beta = fraction * max_i ||X^T D_i y||."""
    first = make_problem(X, y, 1.0, n_gates, seed=seed)
    beta = fraction * np.linalg.norm(first.X.T @ (first.patterns * first.y[:, None]), axis=0).max()
    return ConvexReLUProblem(first.X, first.y, beta, first.patterns, first.gates)


def breast_cancer(n_gates: int, fraction: float = 0.01, seed: int = 0) -> ConvexReLUProblem:
    """sklearn's bundled breast_cancer: 569 x 30 standardised, labels +-1, bias column appended."""
    data = load_breast_cancer()
    X = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    return _with_beta(X, 2.0 * data.target - 1.0, n_gates, fraction, seed)


def planted(n: int, d: int, n_gates: int, fraction: float = 0.01, seed: int = 0) -> ConvexReLUProblem:
    """A planted ReLU teacher: X ~ N(0, I_d), y = sum_{j<5} (x^T w_j)_+ a_j + 0.1 noise, standardised."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.maximum(X @ rng.standard_normal((d, 5)), 0) @ rng.standard_normal(5) + 0.1 * rng.standard_normal(n)
    return _with_beta(X, (y - y.mean()) / y.std(), n_gates, fraction, seed)


def problem_from(spec: dict) -> ConvexReLUProblem:
    if spec["dataset"] == "breast_cancer":
        return breast_cancer(spec["P"])
    return planted(spec["n"], spec["d"], spec["P"])


# --------------------------------------------------------------------------------------------- machine


def median_seconds(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_flops() -> float:
    """FLOP/s of a 2000 x 2000 DGEMM (median of 3)."""
    a = np.random.default_rng(0).standard_normal((2000, 2000))
    a @ a
    seconds, _ = median_seconds(lambda: a @ a, 3)
    return 2 * 2000**3 / seconds


def copy_bandwidth(n_bytes: float) -> float:
    """Bytes/s (read + write) copying an array of ``n_bytes`` (min 1 MB), median of several passes."""
    size = max(int(n_bytes / 8), 2**17)
    source, target = np.ones(size), np.empty(size)
    passes = max(3, int(2e9 / (16 * size)))
    np.copyto(target, source)
    seconds, _ = median_seconds(lambda: np.copyto(target, source), passes)
    return 16 * size / seconds


def iteration_cost(n: int, d: int, p: int, linear_solver: str) -> tuple[float, float]:
    """(flops, bytes) of one ADMM iteration as implemented (module docstring of theory.convex_relu.admm).

    The dense inverse (C^{-1}, n x n, or the structured dP x dP one) is applied by symv: one triangle read.
    """
    small = 10 * d * d * p
    arrays = 8 * (4 * n * d + 6 * 2 * n * p + n * p)  # X four times; X u, a, E o |a| out and in; the signs
    if linear_solver == "woodbury":
        return 12 * n * d * p + 2 * n * n + small, arrays + 8 * (2 * n * p + n * n / 2)  # D twice, C^{-1}
    return 8 * n * d * p + 2 * (d * p) ** 2 + small, arrays + 8 * (d * p) ** 2 / 2


# --------------------------------------------------------------------------------------------- measurements


@dataclass
class Row:
    dataset: str
    n: int
    d: int
    P: int
    clarabel_s: float
    admm_s: float
    default_s: float
    default_same: bool
    iterations: int
    ms_per_iter: float
    bound_ms: float
    flop_ms: float
    memory_ms: float
    rel_gap: float
    rel_violation: float
    net_gap: float
    polished: bool
    linear_solver: str
    p_star: float
    reference: str


def ms_per_iteration(problem: ConvexReLUProblem, steps: int, threads: int) -> float:
    """Median over 3 runs of ``steps`` plain iterations (polish off, fixed rho, metrics off), after 10 warm-up,
    with the threads solve_admm(blas_threads=threads) uses."""
    with blas_thread_limits(threads):
        solver = ConvexReLUADMM(problem, polish=False, adaptive_rho=False, metrics_every=10**9)
        for _ in range(10):
            solver.step()

        def run():
            for _ in range(steps):
                solver.step()

        seconds, _ = median_seconds(run, 3)
    return 1e3 * seconds / steps


def same_accuracy(result, p_star: float) -> bool:
    """The three conditions of the module docstring, for an ADMM result against the reference optimum."""
    cert = result.certificate
    return (
        abs(result.objective - p_star) <= GAP * abs(p_star)
        and cert.relative_violation <= VIOLATION
        and abs(cert.network_objective - p_star) <= GAP * abs(p_star)
    )


def compare(spec: dict, repeats: int, flops_per_s: float, threads: str) -> Row:
    from theory.convex_relu.reference import solve_cvxpy

    problem = problem_from(spec)
    reference = solve_cvxpy(problem)
    p_star = reference.objective
    # blas_threads = the count under test: numpy's BLAS gets them, scipy's one (theory.backend.blas_thread_limits).
    solve_admm(problem, blas_threads=int(threads))  # warm-up: numba compilation, caches
    admm_s, result = median_seconds(lambda: solve_admm(problem, blas_threads=int(threads)), repeats)
    # and solve_admm as users call it (one BLAS thread inside the run), in the same environment
    default_s, default = (admm_s, result) if threads == "1" else median_seconds(lambda: solve_admm(problem), repeats)
    cert = result.certificate
    n, d, p = problem.n, problem.d, problem.n_patterns
    flops, n_bytes = iteration_cost(n, d, p, result.linear_solver)
    flop_ms, memory_ms = 1e3 * flops / flops_per_s, 1e3 * n_bytes / copy_bandwidth(n_bytes)
    return Row(
        dataset=spec["dataset"],
        n=n,
        d=d,
        P=p,
        clarabel_s=reference.seconds,
        admm_s=admm_s,
        default_s=default_s,
        default_same=same_accuracy(default, p_star),
        iterations=result.n_iter,
        ms_per_iter=ms_per_iteration(problem, 200 if n * p < 10**6 else 20, int(threads)),
        bound_ms=max(flop_ms, memory_ms),
        flop_ms=flop_ms,
        memory_ms=memory_ms,
        rel_gap=abs(result.objective - p_star) / abs(p_star),
        rel_violation=cert.relative_violation,
        net_gap=abs(cert.network_objective - p_star) / abs(p_star),
        polished=result.polished,
        linear_solver=result.linear_solver,
        p_star=p_star,
        reference=reference.status,
    )


def cvxpy_attempt(spec: dict, timeout: float, memory_gb: float) -> str:
    """Try cvxpy + Clarabel on ``spec`` in a child process limited in time and address space."""
    code = (
        "import resource, sys, json, time;"
        f"resource.setrlimit(resource.RLIMIT_AS, ({int(memory_gb * 2**30)}, {int(memory_gb * 2**30)}));"
        "sys.path.insert(0, 'benchmarks');"
        "from convex_relu import problem_from;"
        "from theory.convex_relu.reference import solve_cvxpy;"
        f"r = solve_cvxpy(problem_from(json.loads({json.dumps(json.dumps(spec))})));"
        "print(r.status, r.seconds)"
    )
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"not done in {timeout:.0f} s"
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed after {elapsed:.0f} s ({last[:80]})"
    return f"solved in {elapsed:.0f} s: {done.stdout.strip()}"


def large(spec: dict, flops_per_s: float, cvxpy_timeout: float, memory_gb: float, threads: int) -> dict:
    problem = problem_from(spec)
    seconds, result = median_seconds(lambda: solve_admm(problem, max_iter=5000, blas_threads=threads), 1)
    cert = result.certificate
    n, d, p = problem.n, problem.d, problem.n_patterns
    flops, n_bytes = iteration_cost(n, d, p, result.linear_solver)
    bound = max(1e3 * flops / flops_per_s, 1e3 * n_bytes / copy_bandwidth(n_bytes))
    return {
        "n": n,
        "d": d,
        "P": p,
        "admm_s": seconds,
        "iterations": result.n_iter,
        "ms_per_iter": ms_per_iteration(problem, 10, threads),
        "bound_ms": bound,
        "certified_gap": cert.relative_gap,
        "rel_violation": cert.relative_violation,
        "net_vs_convex": abs(cert.network_objective - cert.objective) / abs(cert.objective),
        "polished": result.polished,
        "linear_solver": result.linear_solver,
        "message": result.message,
        "cvxpy": cvxpy_attempt(spec, cvxpy_timeout, memory_gb) if cvxpy_timeout > 0 else "not tried",
    }


def scp_rows(spec: dict, p_star: float) -> list[dict]:
    problem = problem_from(spec)
    rows = []
    for label, kwargs in (
        ("gates (N = P)", {"directions": problem.gates}),
        ("random N = 10P", {"n_samples": 10 * problem.n_patterns}),
    ):
        seconds, result = median_seconds(lambda kwargs=kwargs: solve_scp(problem, **kwargs, tol=1e-6), 1)
        rows.append(
            {
                "dataset": spec["dataset"],
                "P": problem.n_patterns,
                "directions": label,
                "objective": result.objective,
                "vs_exact": result.objective / p_star - 1,
                "width": result.network.width,
                "seconds": seconds,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------- driver


def configurations(quick: bool, patterns: list[int]) -> list[dict]:
    if quick:
        return [{"dataset": "planted", "n": 200, "d": 5, "P": 20}, {"dataset": "breast_cancer", "P": 8}]
    specs = [{"dataset": "breast_cancer", "P": p} for p in patterns]
    return specs + [{"dataset": "planted", "n": 2000, "d": 20, "P": p} for p in patterns]


def worker(args) -> None:
    """One thread count: every measurement, printed as one JSON line per result for the parent."""
    import cvxpy as cp

    x = cp.Variable(2)
    cp.Problem(cp.Minimize(cp.sum_squares(x - 1)), [x >= 0]).solve(solver=cp.CLARABEL)  # warm-up
    flops_per_s = peak_flops()
    print(json.dumps({"kind": "machine", "threads": args.threads, "gflops": flops_per_s / 1e9}), flush=True)
    for spec in configurations(args.quick, args.patterns):
        row = compare(spec, args.repeats, flops_per_s, args.threads)
        print(json.dumps({"kind": "row", **asdict(row)}), flush=True)
        if args.scp:
            for scp in scp_rows(spec, row.p_star):
                print(json.dumps({"kind": "scp", **scp}), flush=True)
    if args.large_n and not args.quick:
        spec = {"dataset": "planted", "n": args.large_n, "d": 20, "P": 100}
        record = large(spec, flops_per_s, args.cvxpy_timeout, args.cvxpy_memory_gb, int(args.threads))
        print(json.dumps({"kind": "large", **record}))


def print_tables(threads: str, records: list[dict]) -> None:
    machine = next((r for r in records if r["kind"] == "machine"), None)
    if machine is None:
        return
    print(
        f"\n== {threads} thread(s) (OMP/OPENBLAS/MKL/NUMBA/RAYON_NUM_THREADS={threads}); "
        f"DGEMM peak {machine['gflops']:.1f} GFLOP/s"
    )
    print(
        "ADMM s: solve_admm(blas_threads=the count above: numpy's BLAS gets them, other BLAS libraries one); "
        "default s: solve_admm as users call it (blas_threads=1)"
    )
    header = (
        f"{'dataset':<14}{'n':>7}{'d':>4}{'P':>5}{'Clarabel s':>11}{'ADMM s':>9}{'speed-up':>9}"
        f"{'default s':>10}{'speed-up':>9}{'iters':>7}{'ms/iter':>9}{'bound ms':>9}{'ratio':>7}  {'rel gap':>8}"
        f"{'rel viol':>9}{'net gap':>9}  same acc."
    )
    print(header)
    for r in (r for r in records if r["kind"] == "row"):
        same = r["rel_gap"] <= GAP and r["rel_violation"] <= VIOLATION and r["net_gap"] <= GAP
        print(
            f"{r['dataset']:<14}{r['n']:>7}{r['d']:>4}{r['P']:>5}{r['clarabel_s']:>11.2f}{r['admm_s']:>9.3f}"
            f"{r['clarabel_s'] / r['admm_s']:>8.0f}x{r['default_s']:>10.3f}{r['clarabel_s'] / r['default_s']:>8.0f}x"
            f"{r['iterations']:>7}{r['ms_per_iter']:>9.3f}{r['bound_ms']:>9.3f}{r['ms_per_iter'] / r['bound_ms']:>7.2f}"
            f"  {r['rel_gap']:>8.1e}{r['rel_violation']:>9.1e}{r['net_gap']:>9.1e}  {'yes' if same else 'NO'}"
            f"{'' if r['default_same'] else ' (default: NO)'} ({r['linear_solver']})"
        )
    for r in (r for r in records if r["kind"] == "large"):
        print(
            f"\nn = {r['n']}, d = {r['d']}, P = {r['P']} ({r['linear_solver']}): ADMM {r['admm_s']:.1f} s, "
            f"{r['iterations']} iterations, {r['ms_per_iter']:.1f} ms/iter (bound {r['bound_ms']:.1f}); certified "
            f"relative gap {r['certified_gap']:.1e}, violation {r['rel_violation']:.1e}, network vs convex "
            f"{r['net_vs_convex']:.1e}; cvxpy + Clarabel: {r['cvxpy']}"
        )
    scp = [r for r in records if r["kind"] == "scp"]
    if scp:
        print(
            "\nSCP vs the exact program over the same P patterns (gates: one ray per pattern, an upper bound; random"
            "\ndirections bring patterns the P-pattern program lacks, so they may go below it)"
        )
        print(f"{'dataset':<14}{'P':>5}  {'SCP directions':<16}{'objective':>12}{'vs exact':>10}{'width':>7}{'s':>8}")
        for r in scp:
            print(
                f"{r['dataset']:<14}{r['P']:>5}  {r['directions']:<16}{r['objective']:>12.5f}"
                f"{r['vs_exact']:>+10.2%}{r['width']:>7}{r['seconds']:>8.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration that runs in seconds")
    parser.add_argument("--threads", nargs="+", default=None, help="BLAS thread counts (default: 1 2; quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed ADMM runs per row (default 5; quick 1)")
    parser.add_argument("--patterns", type=int, nargs="+", default=[50, 100, 200], help="gates P of the rows")
    parser.add_argument("--large-n", type=int, default=50_000, help="rows of the size cvxpy cannot do (0: skip)")
    parser.add_argument("--cvxpy-timeout", type=float, default=600.0, help="seconds cvxpy gets on it (0: skip)")
    parser.add_argument("--cvxpy-memory-gb", type=float, default=12.0, help="address-space limit for that try")
    parser.add_argument("--no-scp", dest="scp", action="store_false", help="skip the SCP table")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.threads = args.threads or (["1"] if args.quick else ["1", "2"])
    args.repeats = args.repeats or (1 if args.quick else 5)
    if args.worker:
        args.threads = args.threads[0]
        worker(args)
        return
    for index, threads in enumerate(args.threads):
        # The SCP table and the cvxpy try at the large size do not depend on BLAS threads: first count only.
        first = index == 0
        command = [sys.executable, __file__, "--worker", "--threads", threads, "--repeats", str(args.repeats)]
        command += ["--large-n", str(args.large_n), "--cvxpy-timeout", str(args.cvxpy_timeout if first else 0)]
        command += ["--cvxpy-memory-gb", str(args.cvxpy_memory_gb), "--patterns", *map(str, args.patterns)]
        command += ["--quick"] * args.quick + ["--no-scp"] * (not (args.scp and first))
        env = os.environ | {variable: threads for variable in THREAD_VARIABLES}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        print_tables(threads, records)  # what the worker finished, even if it then failed
        if done.returncode != 0:
            sys.exit(f"worker with {threads} thread(s) failed:\n{done.stderr}")


if __name__ == "__main__":
    main()
