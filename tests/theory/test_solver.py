"""The solver conventions, exercised on Newton's method for sqrt(2) (iterates known in closed form)."""

import dataclasses

import numpy as np
import pytest

from theory.solver import IterationState, SolverResult, iterate


class NewtonSqrt:
    """x_{k+1} = (x_k + a / x_k) / 2, converging quadratically to sqrt(a)."""

    def __init__(self, a: float, x0: float, tol: float) -> None:
        self.a, self.x, self.tol = a, x0, tol

    def step(self):
        self.x = 0.5 * (self.x + self.a / self.x)
        return {"x": self.x, "residual": abs(self.x * self.x - self.a)}

    @property
    def converged(self):
        return abs(self.x * self.x - self.a) <= self.tol


@dataclasses.dataclass(frozen=True, kw_only=True)
class SqrtResult(SolverResult):
    x: float


def test_history_matches_hand_computed_newton_iterates():
    outcome = iterate(NewtonSqrt(2.0, 1.0, 1e-14), max_iter=50)
    assert outcome.converged and "converged" in outcome.message
    np.testing.assert_allclose(outcome.history["x"][:3], [1.5, 17 / 12, 577 / 408], rtol=0, atol=1e-15)
    assert outcome.n_iter == 5
    assert all(len(v) == outcome.n_iter for v in outcome.history.values())
    assert np.all(np.diff(outcome.history["seconds"]) >= 0)
    result = SqrtResult(x=outcome.history["x"][-1], **outcome.fields())
    assert result.x == pytest.approx(np.sqrt(2), abs=1e-15)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.converged = False


def test_not_converging_is_data_not_an_exception():
    outcome = iterate(NewtonSqrt(2.0, 1.0, 0.0), max_iter=3)
    assert not outcome.converged and outcome.n_iter == 3
    assert "max_iter=3" in outcome.message


def test_callback_returning_true_stops_cleanly():
    seen = []

    def callback(state: IterationState):
        seen.append(state.n_iter)
        assert state.metrics["x"] == state.solver.x
        return state.n_iter == 2

    outcome = iterate(NewtonSqrt(2.0, 1.0, 1e-14), max_iter=50, callback=callback)
    assert seen == [1, 2]
    assert not outcome.converged and outcome.n_iter == 2
    assert "stopped by callback" in outcome.message
    assert len(outcome.history["x"]) == 2


def test_callback_every_and_stop_iteration():
    seen = []

    def callback(state):
        seen.append(state.n_iter)
        if state.n_iter >= 4:
            raise StopIteration

    outcome = iterate(NewtonSqrt(2.0, 1.0, 0.0), max_iter=10, callback=callback, callback_every=2)
    assert seen == [2, 4] and outcome.n_iter == 4 and "stopped" in outcome.message


def test_convergence_wins_over_a_stop_on_the_same_iteration():
    outcome = iterate(NewtonSqrt(4.0, 2.0, 0.0), max_iter=5, callback=lambda state: True)
    assert outcome.converged and outcome.n_iter == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"max_iter": 2.5}, TypeError, "max_iter"),
        ({"max_iter": 5, "callback_every": 0}, ValueError, "callback_every"),
        ({"max_iter": 5, "callback": 3}, TypeError, "callback"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        iterate(NewtonSqrt(2.0, 1.0, 0.0), **kwargs)
