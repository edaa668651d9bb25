import numpy as np
import pytest

from lab.convex_relu_views import decision_boundary_figure
from theory.convex_relu.problem import ReLUNetwork


def test_boundary_contour_is_the_zero_level_of_the_network():
    network = ReLUNetwork(hidden=np.array([[1.0], [0.0], [0.0]]), output=np.array([1.0]), pattern=np.array([0]))
    X = np.array([[-1.0, 0.0], [1.0, 1.0]])
    figure = decision_boundary_figure({"relu(x1)": network}, X, np.array([-1.0, 1.0]), resolution=20)
    contour = figure.data[0]
    assert contour.name == "relu(x1)" and contour.contours.start == contour.contours.end == 0
    np.testing.assert_allclose(np.asarray(contour.z)[0], np.maximum(np.asarray(contour.x), 0.0))
    assert [trace.name for trace in figure.data[1:]] == ["y = +1", "y = -1"]
    with pytest.raises(ValueError, match="X: expected planar"):
        decision_boundary_figure({}, np.ones((3, 3)), np.ones(3))
