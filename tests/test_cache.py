"""Fingerprints and the two fitness caches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline import seeds
from pipeline.cache import FECCache, Probe, StructuralCache, _round_bits, fingerprint
from pipeline.program import Program

P = Program.parse

SAME_BEHAVIOUR = [
    ("operand order", "update = g * lr", "update = lr * g"),
    ("dead code", "update = g * lr", "x = w + 1.0\nm = interp(g, m, 0.9)\nupdate = lr * g"),
    ("associativity of +", "a = g + w\nb = a + g\nupdate = b * lr",
     "a = g + g\nb = a + w\nupdate = lr * b"),
    ("x + x is 2 * x", "a = g + g\nupdate = a * lr", "a = g * 2.0\nupdate = lr * a"),
    ("renamed state slot", "m = interp(g, m, 0.9)\nupdate = m * lr",
     "v = interp(g, v, 0.9)\nupdate = v * lr"),
    ("m / sqrt(m*m) is sign(m)",
     "m = interp(g, m, 0.9)\nq = m * m\ns = sqrt(q)\nu = m / s\nupdate = u * lr",
     "m = interp(g, m, 0.9)\nu = sign(m)\nupdate = u * lr"),
]


@pytest.mark.parametrize("name,a,b", SAME_BEHAVIOUR, ids=[c[0] for c in SAME_BEHAVIOUR])
def test_equivalent_programs_share_a_fingerprint(name, a, b):
    assert fingerprint(P(a)) == fingerprint(P(b))


DIFFERENT = [
    ("scale", "update = g * lr", "u = g * lr\nupdate = u * 2.0"),
    ("state vs none", "update = g * lr", "m = interp(g, m, 0.9)\nupdate = m * lr"),
    ("momentum coefficient", "m = interp(g, m, 0.9)\nupdate = m * lr",
     "m = interp(g, m, 0.8)\nupdate = m * lr"),
    ("uses t", "update = g * lr", "u = g * lr\nupdate = u / t"),
    ("reduction over the tensor", "update = g * lr",
     "n = global_norm(g)\nu = g / n\nupdate = u * lr"),
]


@pytest.mark.parametrize("name,a,b", DIFFERENT, ids=[c[0] for c in DIFFERENT])
def test_different_behaviour_gives_different_fingerprints(name, a, b):
    assert fingerprint(P(a)) != fingerprint(P(b))


def test_fingerprint_is_deterministic_across_probe_instances():
    p = seeds.paper_adamw(lr_scale=1e-3)
    assert fingerprint(p, Probe()) == fingerprint(p, Probe()) == fingerprint(p)
    assert fingerprint(p, Probe(seed=1)) != fingerprint(p)


def test_fingerprint_of_a_non_finite_program_is_a_value_not_an_error():
    nan_prog = P("a = exp(g)\nb = a * 1e30\nc = b - b\nu = c * g\nupdate = u + g")
    fp = fingerprint(nan_prog)
    assert isinstance(fp, str) and len(fp) == 32
    assert fp != fingerprint(P("update = g + g"))


def test_rounding_merges_tiny_differences_and_separates_real_ones():
    x = np.array([1.0, -3.5e-7, 123.0, 0.0], np.float32)
    assert np.array_equal(_round_bits(x, 12), _round_bits(x * (1 + 1e-6), 12))
    assert not np.array_equal(_round_bits(x, 12), _round_bits(x * 1.01, 12))
    # a mantissa that rounds up carries into the exponent: 0.99999 ~ 1.0
    assert np.array_equal(_round_bits(np.array([0.999999]), 12), _round_bits(np.array([1.0]), 12))
    codes = _round_bits(np.array([np.nan, np.inf, -np.inf, 0.0]), 12)
    assert len({tuple(c) for c in codes.T}) == 4


def test_fec_cache_evicts_the_least_recently_used():
    cache = FECCache(max_size=2)
    cache.put("a", 1.0)
    cache.put("b", 2.0)
    assert cache.get("a") == 1.0  # a is now the most recent
    cache.put("c", 3.0)
    assert cache.get("b") is None
    assert cache.get("a") == 1.0 and cache.get("c") == 3.0
    assert (cache.lookups, cache.hits, len(cache)) == (4, 3, 2)


def test_structural_cache_counts_hits_and_keeps_a_worst_fitness():
    cache = StructuralCache()
    assert cache.get("h") is None
    cache.put("h", "fp", -math.inf)
    assert cache.get("h") == ("fp", -math.inf)
    assert (cache.lookups, cache.hits) == (2, 1)


def test_fec_cache_size_must_be_positive():
    with pytest.raises(ValueError, match="max_size"):
        FECCache(max_size=0)
