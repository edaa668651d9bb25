import numpy as np
import pandas as pd

from lab.plots import series_figure, series_xy
from lab.registry import Series


def _metrics(rows):
    return pd.DataFrame(rows, columns=["run_id", "step", "name", "value"]).assign(time=0.0)


def test_series_xy_matches_steps_and_drops_missing_points():
    metrics = _metrics(
        [(1, 0, "x", 0.0), (1, 0, "y", 10.0), (1, 1, "x", 1.0), (1, 2, "x", 2.0), (1, 2, "y", 12.0), (1, 3, "y", 13.0)]
    )
    x, y = series_xy(metrics, Series("x", "y", "y vs x"))
    np.testing.assert_array_equal(x, [0.0, 2.0])
    np.testing.assert_array_equal(y, [10.0, 12.0])
    empty = series_xy(metrics, Series("x", "missing", ""))
    assert empty[0].size == empty[1].size == 0


def test_one_line_per_run_and_series_with_labels_and_log_axis():
    metrics = _metrics([(run, step, name, float(step + run)) for run in (1, 2) for step in range(3) for name in "xy"])
    figure = series_figure(metrics, [Series("x", "y", "curve")], run_labels={1: "base"}, log_y=True)
    assert [trace.name for trace in figure.data] == ["base: curve", "run 2: curve"]
    np.testing.assert_array_equal(figure.data[1].y, [2.0, 3.0, 4.0])
    assert figure.layout.yaxis.type == "log"
    assert len(series_figure(None, [Series("x", "y", "curve")]).data) == 1
