"""``sgn-lq``: Small-Gain Nash certificates of the LQ game family against coupling strength.

Paper: V. Sharma, "Small-Gain Nash: Certified Contraction to Nash Equilibria in Differentiable
Games" (arXiv 2512.06791). For each coupling lam on a grid:

1. Certify the d-dimensional LQ game H = [[I, lam a R], [lam b R^T, I]] and log the SGN margin
   next to its closed form 1 - lam sqrt(ab) and the Euclidean monotonicity margin 1 - lam (a+b)/2.
2. Run projected Euler at the certified step alpha / beta^2 from two seeded starts and log the
   worst measured contraction factor next to the certified sqrt(1 - alpha^2 / beta^2).
3. Certify ``n_seeds`` games of the random LQ ensemble and log the fractions certified by the
   Euclidean test and by SGN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.config import ConfigError, param
from lab.registry import Series, register
from lab.runs import RunLogger
from theory.sgn import Box, certify
from theory.sgn.dynamics import contraction_factors
from theory.sgn.examples import lq_closed_form, lq_game, random_lq_game


@dataclass(frozen=True)
class SGNLQConfig:
    a: float = param(10.0, help="coupling of player 2's strategy into player 1's gradient", gt=0.0)
    b: float = param(0.05, help="coupling of player 1's strategy into player 2's gradient", gt=0.0)
    dim: int = param(64, help="joint dimension of the LQ game (even)", ge=2, le=512)
    max_coupling: float = param(2.5, help="largest coupling strength lam", gt=0.0, le=100.0)
    n_couplings: int = param(26, help="points on the coupling grid", ge=2, le=500)
    n_seeds: int = param(30, help="random LQ games per coupling for the certification rate", ge=0, le=1000)
    euler_steps: int = param(200, help="Euler steps simulated at the certified step", ge=1, le=100_000)
    seed: int = param(12345, help="seed of R, the ensemble and the simulation starts", ge=0)

    def check(self) -> None:
        if self.dim % 2:
            raise ConfigError("dim", f"expected an even number, got {self.dim}")


def run_sgn_lq(cfg: SGNLQConfig, run: RunLogger, progress) -> None:
    """Steps 1-3 of the module docstring for every coupling; already logged couplings are skipped."""
    couplings = np.linspace(0.0, cfg.max_coupling, cfg.n_couplings)
    done_steps = run.logged_steps("lq.margin_sgn")
    for step, coupling in enumerate(couplings):
        if step not in done_steps:
            game = lq_game(coupling, dim=cfg.dim, a=cfg.a, b=cfg.b, seed=cfg.seed)
            certificate = certify(game)
            closed = lq_closed_form(coupling, cfg.a, cfg.b)
            metrics = {
                "lq.coupling": coupling,
                "lq.margin_sgn": certificate.margin,
                "lq.margin_closed_form": closed.margin,
                "lq.margin_euclidean": certificate.euclidean_margin,
                "lq.euler_step_bound": certificate.euler_step_bound,
                "lq.euler_threshold": closed.euler_threshold,
            }
            if certificate.certified:
                starts = np.random.default_rng([cfg.seed, step]).uniform(-1, 1, (2, game.dim))
                ratios = contraction_factors(
                    game, *starts, certificate.weights, step=certificate.euler_step, n_steps=cfg.euler_steps,
                    region=Box.around(np.zeros(game.dim), 1.0),
                )  # fmt: skip
                metrics["lq.measured_factor"] = np.nanmax(ratios)
                metrics["lq.certified_factor"] = certificate.euler_factor(certificate.euler_step)
            if cfg.n_seeds:
                seeds = range(cfg.seed, cfg.seed + cfg.n_seeds)
                ensemble = [certify(random_lq_game(coupling, seed=s, a=cfg.a, b=cfg.b)) for s in seeds]
                metrics["ensemble.rate_sgn"] = np.mean([c.certified for c in ensemble])
                metrics["ensemble.rate_euclidean"] = np.mean([c.euclidean_certified for c in ensemble])
            run.log(step, **metrics)
        progress(step + 1, len(couplings))


register(
    "sgn-lq",
    kind="theory",
    config=SGNLQConfig,
    description="Small-Gain Nash margins of the LQ game vs coupling, Euclidean vs SGN, certification rates",
    series=(
        Series("lq.coupling", "lq.margin_sgn", "SGN margin α*"),
        Series("lq.coupling", "lq.margin_closed_form", "closed form 1 − λ√(ab)", mode="markers"),
        Series("lq.coupling", "lq.margin_euclidean", "Euclidean margin"),
        Series("lq.coupling", "ensemble.rate_sgn", "random ensemble: SGN-certified fraction"),
        Series("lq.coupling", "ensemble.rate_euclidean", "random ensemble: Euclidean-certified fraction"),
    ),
    axis_titles=("coupling strength λ", "margin / certified fraction"),
    resumable=True,
)(run_sgn_lq)
