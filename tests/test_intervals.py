"""jaxsoc.analysis.intervals: the t interval of a mean that every table uses, worked by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from jaxsoc.analysis import intervals


def test_quantiles_match_the_printed_t_table():
    # Two-sided 95 %: t_{0.975, dof} from any printed table; 90 % for 4 dof: t_{0.95, 4}.
    for dof, t in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (11, 2.2010), (24, 2.0639), (1000, 1.9623)):
        assert intervals.t_quantile(dof) == pytest.approx(t, abs=1e-4)
    assert intervals.t_quantile(4, level=0.90) == pytest.approx(2.1318, abs=1e-4)
    assert math.isnan(intervals.t_quantile(0))
    with pytest.raises(ValueError, match="between 0 and 1"):
        intervals.t_quantile(3, level=1.5)


def test_interval_by_hand():
    # 1, 2, 3: mean 2, sample sd 1, t_{0.975, 2} = 4.3027 -> half width 4.3027 / sqrt(3) = 2.4841
    ci = intervals.mean_interval([1.0, 2.0, 3.0])
    assert ci["n"] == 3 and ci["mean"] == pytest.approx(2.0)
    assert (ci["low"], ci["high"]) == (pytest.approx(2.0 - 2.48414, abs=1e-4), pytest.approx(2.0 + 2.48414, abs=1e-4))
    assert intervals.mean_half_width([1.0, 2.0, 3.0]) == pytest.approx(2.48414, abs=1e-4)
    with pytest.raises(ValueError, match="between 0 and 1"):
        intervals.mean_interval([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        intervals.mean_half_width([1.0], level=0.0)


def test_half_width_over_an_axis_and_too_few_values():
    x = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 6.0]])  # columns: sd 1 and sd sqrt(12)
    half = intervals.mean_half_width(x, axis=0)
    assert half.shape == (2,)
    np.testing.assert_allclose(half, 4.3027 * np.array([1.0, math.sqrt(12.0)]) / math.sqrt(3), atol=1e-3)
    assert math.isnan(intervals.mean_half_width([5.0])) and math.isnan(intervals.mean_half_width([]))
    assert np.isnan(intervals.mean_half_width(np.ones((1, 3)), axis=0)).all()
    one = intervals.mean_interval([4.0])
    assert one["mean"] == 4.0 and math.isnan(one["low"]) and math.isnan(one["high"])


def test_finite_mean_leaves_out_nan_and_inf_without_a_warning():
    import warnings

    from jaxsoc.analysis.intervals import finite_mean

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would fail here
        assert finite_mean([1.0, 2.0, np.nan, np.inf]) == 1.5
        assert np.isnan(finite_mean([np.nan, np.nan]))
        assert np.isnan(finite_mean([]))
        cols = finite_mean([[np.nan, 1.0], [np.nan, 3.0], [np.nan, -np.inf]], axis=0)  # [3, 2] -> [2]
        np.testing.assert_array_equal(cols, [np.nan, 2.0])
        np.testing.assert_array_equal(finite_mean([[1.0, 5.0], [np.nan, 3.0]], axis=1), [3.0, 3.0])
    assert isinstance(finite_mean([4.0]), float)


def test_finite_std_is_the_population_sd_of_the_values_finite_mean_counts():
    import warnings

    from jaxsoc.analysis.intervals import finite_std

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # [1, 3] by hand: mean 2, deviations +-1, population sd 1 (the inf and NaN left out)
        assert finite_std([1.0, 3.0, np.inf, np.nan]) == 1.0
        assert np.isnan(finite_std([np.nan, -np.inf]))
        cols = finite_std([[1.0, 2.0, np.nan], [3.0, np.inf, np.nan], [5.0, 6.0, np.nan]], axis=0)  # [3, 3] -> [3]
        np.testing.assert_allclose(cols, [np.sqrt(8 / 3), 2.0, np.nan])
