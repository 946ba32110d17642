"""Predictions answer back: a held one says so, a wrong one says it did not hold, an unrecorded one asks."""

from minillm.checks import predictions


def test_a_number_within_the_tolerance_holds_and_one_outside_does_not(capsys):
    assert predictions.number("p", 0.15, 0.135, 0.05, "cell 16") is True
    assert predictions.number("p", 0.5, 0.135, 0.05, "cell 16") is False
    assert predictions.number("p", None, 0.135, 0.05, "cell 16") is None
    out = capsys.readouterr().out
    assert "✔ HELD" in out and "✘ DID NOT HOLD" in out and "nothing recorded" in out and "cell 16" in out


def test_a_choice_holds_only_when_it_is_the_measured_one(capsys):
    assert predictions.choice("c", "b", "b", "abc", "the plot") is True
    assert predictions.choice("c", "a", "b", "abc", "the plot") is False
    assert predictions.choice("c", "z", "b", "abc", "the plot") is None
    assert "not one of" in capsys.readouterr().out
