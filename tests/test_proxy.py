"""The proxy fitness: best of K learning-rate multipliers, several tasks in units of noise."""

from __future__ import annotations

import dataclasses
import math

import pytest

from flows import config
from pipeline import seeds
from pipeline.fitness import WORST
from pipeline.numpy_tasks import LogisticRegression, Quadratic
from pipeline.program import Program
from pipeline.proxy import Proxy, calibrate, score, tune

# Real training on NumPy problems (the reference executor), under two registered task names
# (the proxy checks names against pipeline.tasks; what trains here is the NumPy problem).
NUMPY = {"teacher": Quadratic(lr=0.05, steps=60), "digits_mlp": LogisticRegression(lr=0.5)}


def np_evaluate(programs, task, scale, seed):
    problem = dataclasses.replace(NUMPY[task], seed=seed)
    return [problem(p) for p in programs]


def test_a_program_that_only_rescales_the_step_is_scored_like_its_parent():
    parent = seeds.adamw()
    shrunk = parent.with_lr_scale(0.25)  # what a mutation `lr = lr * 0.25` does
    one = Proxy(tasks=("teacher",), lr_multipliers=(1.0,))
    alone = score([parent, shrunk], one, np_evaluate)
    assert alone[1].fitness < alone[0].fitness - 0.1  # at one rate the smaller step loses
    k3 = Proxy(tasks=("teacher",), lr_multipliers=(0.25, 1.0, 4.0))
    [p, s] = score([parent, shrunk], k3, np_evaluate)
    assert s.fitness >= alone[0].fitness
    assert s.lr_multipliers == (4.0,)  # the copy at lr x 4 undoes the built-in x 0.25


def test_the_score_is_the_best_copy_and_records_its_multiplier():
    proxy = Proxy(tasks=("teacher",), lr_multipliers=(0.1, 1.0, 10.0))
    program = seeds.adamw()
    [result] = score([program], proxy, np_evaluate)
    by_mult = {c: np_evaluate([program.with_lr_scale(c)], "teacher", 1.0, 0)[0]
               for c in proxy.lr_multipliers}
    assert result.fitness == max(by_mult.values())
    assert by_mult[result.lr_multipliers[0]] == result.fitness


def test_several_tasks_combine_in_units_of_the_warm_starts_noise():
    proxy = calibrate(Proxy(tasks=("teacher", "digits_mlp")), seeds.adamw(), np_evaluate)
    cal = proxy.calibration
    assert len(cal.per_task) == 2 and all(len(xs) == 5 for xs in cal.per_task)
    assert all(s > 0 for s in cal.stds) and proxy.noise > 0
    panel = [seeds.adamw(), seeds.signsgd(), seeds.sgd_momentum()]
    for result in score(panel, proxy, np_evaluate):
        z = [(f - m) / s for f, m, s in zip(result.per_task, cal.means, cal.stds, strict=True)]
        assert result.fitness == pytest.approx(sorted(z)[0] / 2 + sorted(z)[1] / 2)
    # the warm start at the search's seed is one of the calibration draws: near zero
    assert abs(score([seeds.adamw()], proxy, np_evaluate)[0].fitness) < 3


def test_diverging_on_one_task_scores_worst_whatever_the_others_say():
    proxy = calibrate(Proxy(tasks=("teacher", "digits_mlp")), seeds.adamw(), np_evaluate)
    assert proxy.combined([1.0, math.inf]) == WORST
    assert proxy.combined([-math.inf, 0.0]) == WORST
    exploding = Program.parse("x = g * 1e30\nx = x * lr\nupdate = x * x\n")
    assert score([exploding], proxy, np_evaluate)[0].fitness == WORST


def test_n_seeds_averages_each_multiplier_over_consecutive_init_seeds_before_the_best():
    program = seeds.adamw()
    proxy = Proxy(tasks=("teacher",), lr_multipliers=(0.25, 1.0, 4.0), seed=3, n_seeds=2)
    [result] = score([program], proxy, np_evaluate)
    per_mult = {c: (np_evaluate([program.with_lr_scale(c)], "teacher", 1.0, 3)[0]
                    + np_evaluate([program.with_lr_scale(c)], "teacher", 1.0, 4)[0]) / 2
                for c in proxy.lr_multipliers}
    assert result.fitness == pytest.approx(max(per_mult.values()), rel=1e-12)
    assert per_mult[result.lr_multipliers[0]] == pytest.approx(result.fitness, rel=1e-12)
    one = score([program], dataclasses.replace(proxy, n_seeds=1), np_evaluate)[0]
    assert one.fitness != result.fitness  # seed 4 took part


def test_with_n_seeds_the_calibration_draws_disjoint_blocks_of_seeds():
    calls = []

    def spy(programs, task, scale, seed):
        calls.append(seed)
        return np_evaluate(programs, task, scale, seed)

    proxy = calibrate(Proxy(tasks=("teacher",), n_seeds=3), seeds.adamw(), spy, seeds=(0, 1))
    assert calls == [0, 1, 2, 3, 4, 5]
    averaged = proxy.noise
    single = calibrate(Proxy(tasks=("teacher",)), seeds.adamw(), np_evaluate, seeds=(0, 1))
    assert averaged != single.noise
    assert Proxy.from_json(proxy.to_json()) == proxy
    assert "n_seeds" not in single.to_json()  # a default proxy is written as before the field


def test_several_tasks_need_a_calibration():
    with pytest.raises(ValueError, match="calibration"):
        Proxy(tasks=("teacher", "digits_mlp")).combined([0.0, 0.0])


def test_the_calibration_round_trips_through_json():
    proxy = calibrate(Proxy(tasks=("teacher",)), seeds.adamw(), np_evaluate, seeds=(0, 1, 2))
    again = Proxy.from_json(proxy.to_json())
    assert again == proxy and again.noise == proxy.noise


@pytest.mark.parametrize("kwargs,binding", [
    ({"lr_multipliers": ()}, "Proxy.lr_multipliers"),
    ({"lr_multipliers": (1.0, 0.0)}, "Proxy.lr_multipliers"),
    ({"lr_multipliers": (-4.0,)}, "Proxy.lr_multipliers"),
    ({"tasks": ("teacher", "mnist_mlpp")}, "Proxy.tasks"),
    ({"tasks": ()}, "Proxy.tasks"),
    ({"combine": "max"}, "Proxy.combine"),
    ({"scale": 0.0}, "Proxy.scale"),
    ({"n_seeds": 0}, "Proxy.n_seeds"),
    ({"n_seeds": 1.5}, "Proxy.n_seeds"),
])
def test_bad_settings_are_refused_naming_the_binding(kwargs, binding):
    with pytest.raises(ValueError, match=binding):
        Proxy(**kwargs)


@pytest.mark.parametrize("param,binding", [
    ("Proxy.lr_multipliers = ()", "Proxy.lr_multipliers"),
    ("Proxy.tasks = ('teacher', 'nope')", "Proxy.tasks"),
    ("SimplifySettings.noise_fraction = -0.1", "SimplifySettings.noise_fraction"),
])
def test_a_bad_gin_binding_is_an_error_before_anything_starts(param, binding):
    config.parse(["smoke.gin"], [param])
    name = binding.split(".")[0]
    with pytest.raises(ValueError, match=binding):
        config.configured("EvolveSettings" if name == "Proxy" else name)


def test_the_search_records_the_winning_multiplier_of_each_candidate(tmp_path):
    from pipeline.evolve import Search
    from pipeline.screen import Verdict
    from pipeline.search_config import EvolutionConfig

    proxy = Proxy(tasks=("teacher",), lr_multipliers=(0.25, 1.0, 4.0))

    def evaluate(programs):
        return [Verdict(s.fitness, "", s.lr_multipliers)
                for s in score(programs, proxy, np_evaluate)]

    search = Search(EvolutionConfig(population_size=8, batch_size=8), seeds.adamw(), rng_seed=0,
                    checkpoint=tmp_path / "search.json")
    search.run(evaluate, 40)
    trained = [r for r in search.records if r.evaluated]
    assert trained and all(len(r.lr_multipliers) == 1 for r in trained)
    assert {r.lr_multipliers[0] for r in trained} <= set(proxy.lr_multipliers)
    assert all(r.lr_multipliers == () for r in search.records if r.rejection)
    assert Search.resume(tmp_path / "search.json").records == search.records  # checkpointed


def test_a_best_rate_at_the_grids_edge_grows_the_grid_past_it():
    sgd = Program.parse("update = g * lr\n")
    programs = [sgd, sgd.with_lr_scale(0.25)]
    plain = tune(programs, "teacher", np_evaluate, [0.16, 0.32], [0, 1])
    assert all(r.at_edge and r.multiplier == 0.32 for r in plain)
    grown = tune(programs, "teacher", np_evaluate, [0.16, 0.32], [0, 1], max_extend=2)
    # SGD's best was the edge: both steps past it (x0.64, x1.28) did worse, so it is inside now
    assert grown[0] == dataclasses.replace(plain[0], at_edge=False)
    # at a quarter of the step the same rule finds that best two steps up, still at the edge
    assert grown[1].multiplier == 1.28 and grown[1].at_edge
    assert grown[1].mean == pytest.approx(grown[0].mean) and grown[1].mean > plain[1].mean
