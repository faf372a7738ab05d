"""The one home of the worst fitness and of a fitness's JSON form."""

from __future__ import annotations

import json
import math

import pytest

from pipeline import fitness


@pytest.mark.parametrize("x", [1.5, -2.0, 0.0, 1e-30])
def test_finite_values_pass_through_and_round_trip_json(x):
    assert fitness.finite_or_worst(x) == x
    assert fitness.from_json(json.loads(json.dumps(fitness.to_json(x)))) == x


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf])
def test_a_non_finite_fitness_is_the_worst_and_is_written_as_strict_json_null(x):
    assert fitness.finite_or_worst(x) == fitness.WORST == -math.inf
    text = json.dumps(fitness.to_json(x), allow_nan=False)  # strict JSON: no Infinity/NaN
    assert text == "null"
    assert fitness.from_json(json.loads(text)) == fitness.WORST


@pytest.mark.parametrize("old", ["-inf", "nan", "inf"])
def test_older_checkpoints_strings_read_back_as_the_worst(old):
    assert fitness.from_json(old) == fitness.WORST


def test_mean_or_worst_lets_no_diverged_value_hide_in_a_mean():
    assert fitness.mean_or_worst([1.0, 2.0]) == 1.5
    assert fitness.mean_or_worst([1.0, math.nan]) == fitness.WORST
    assert fitness.mean_or_worst(iter([3.0, -math.inf])) == fitness.WORST


def test_spread_is_the_seed_std_and_zero_beside_a_worst_mean():
    assert fitness.spread([1.0, 3.0]) == pytest.approx(1.0)  # population std
    assert fitness.spread(iter([2.0])) == 0.0
    assert fitness.spread([1.0, math.inf]) == 0.0 and fitness.spread([math.nan, 1.0]) == 0.0
