"""The behavioural classifier: known rules, however they are written, land in their class."""

from __future__ import annotations

import pytest

from pipeline import seeds
from pipeline.classify import RuleClass, classify
from pipeline.program import Program

# Lion written the way a search might write it: the classifier must see through the text.
LION_SPELLINGS = {
    "keras": seeds.lion(),
    "with weight decay": seeds.lion(weight_decay=0.3),
    "sign as x / sqrt(x^2)": Program.parse(
        "c = interp(g, m, 0.9)\ns = square(c)\nr = sqrt(s)\nu = c / r\nupdate = u * lr\n"
        "m = interp(g, m, 0.99)\n"),
    "step scaled, lr read twice": Program.parse(
        "c = interp(g, m, 0.8)\nu = sign(c)\nk = lr * 0.3\nupdate = u * k\n"
        "m = interp(g, m, 0.95)\n"),
}


@pytest.mark.parametrize("name", sorted(LION_SPELLINGS))
def test_every_spelling_of_lion_is_sign_momentum(name):
    assert classify(LION_SPELLINGS[name]) is RuleClass.SIGN_MOMENTUM


@pytest.mark.parametrize("program,expected", [
    (seeds.signsgd(), RuleClass.SIGN),
    (seeds.adamw(), RuleClass.ADAM_LIKE),
    (seeds.adamw(weight_decay=0.0), RuleClass.ADAM_LIKE),
    (seeds.paper_adamw(), RuleClass.ADAM_LIKE),
    (seeds.rmsprop(), RuleClass.ADAM_LIKE),
    (seeds.sgd_momentum(), RuleClass.SGD_MOMENTUM),
    (Program.parse("update = g * lr\n"), RuleClass.SGD),
    (Program.parse("x = square(g)\nupdate = x * lr\n"), RuleClass.OTHER),
])
def test_known_rules_land_in_their_class(program, expected):
    assert classify(program) is expected


def test_a_same_size_step_that_ignores_lr_is_not_sign_momentum():
    fixed = Program.parse("c = interp(g, m, 0.9)\nu = sign(c)\nupdate = u * 0.001\n"
                          "m = interp(g, m, 0.99)\n")
    assert classify(fixed) is not RuleClass.SIGN_MOMENTUM


def test_a_diverging_or_silent_rule_is_other():
    assert classify(Program.parse("x = g * 1e30\ny = x * x\nupdate = y * lr\n")) is RuleClass.OTHER
    assert classify(Program.parse("x = g * 0.0\nupdate = x * lr\n")) is RuleClass.OTHER
