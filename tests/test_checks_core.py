"""The shared checker machinery: verdicts, graded hints, the learner's crash line, differences shown."""

import torch
from IPython.core.formatters import DisplayFormatter

from minillm.checks import CheckResult, reset_hints, run_check


def test_a_result_is_truthy_only_when_passed_and_displays_nothing(capsys):
    passed = run_check("t", lambda x: x, lambda x: x, [(1,)])
    failed = run_check("t", lambda x: x + 1, lambda x: x, [(1,)])
    assert passed and not failed and isinstance(passed, CheckResult)
    assert passed == True and failed == False  # noqa: E712 - old callers compared with booleans
    # What IPython shows as `Out:` for a cell ending in a check: nothing at all.
    assert DisplayFormatter().format(failed) == ({}, {})
    capsys.readouterr()


def test_hints_are_graded_by_repeated_failures_or_on_request_and_reset_by_a_pass(capsys):
    reset_hints()
    args = ("graded", lambda x: x + 1, lambda x: x, [(1,)])
    run_check(*args, hints=("first", "second"))
    out = capsys.readouterr().out
    assert "hint: first" in out and "second" not in out and "hint=2" in out
    run_check(*args, hints=("first", "second"))
    assert "hint 2: second" in capsys.readouterr().out
    run_check("graded", lambda x: x, lambda x: x, [(1,)], hints=("first", "second"))  # a pass resets
    run_check(*args, hints=("first", "second"))
    assert "second" not in capsys.readouterr().out
    run_check(*args, hints=("first", "second"), level=2)
    assert "hint 2: second" in capsys.readouterr().out
    run_check(*args, hint="the old single hint")
    assert "hint: the old single hint" in capsys.readouterr().out


def test_a_crash_names_the_learners_own_line_and_the_exception(capsys):
    def learner(x):
        y = x * 2
        return y / 0  # the line to show

    run_check("crash", learner, lambda x: x, [(1.0,)])
    out = capsys.readouterr().out
    assert "raised ZeroDivisionError: float division by zero" in out
    assert "in test_checks_core.py, line" in out and "return y / 0  # the line to show" in out


def test_a_crash_inside_torch_is_located_in_the_learners_call(capsys):
    def learner(a):
        return a @ a  # (2, 3) @ (2, 3): torch raises, the learner's line is shown

    run_check("crash", learner, lambda a: a, [(torch.zeros(2, 3),)])
    out = capsys.readouterr().out
    assert "raised RuntimeError" in out and "in test_checks_core.py, line" in out and "return a @ a" in out


def test_expected_and_got_are_cut_where_they_differ(capsys):
    expected = "x" * 100 + "A" + "y" * 10
    run_check("long", lambda s: s.replace("A", "B"), lambda s: s, [(expected,)])
    out = capsys.readouterr().out
    assert "index 100 is 'B' instead of 'A'" in out
    lines = [line for line in out.splitlines() if line.strip().startswith(("expected:", "got:"))]
    assert "A" in lines[0] and "B" in lines[1]  # the cut shows the differing character, not a shared prefix
    e = torch.arange(64, dtype=torch.float64) / 64
    run_check("tensor", lambda t: t + (torch.arange(64) == 40) * 0.5, lambda t: t, [(e,)])
    out = capsys.readouterr().out
    assert "1 of 64 entries differ, first at index (40,): 1.125 instead of 0.625" in out
    assert "mean" not in out and "from index 39" in out
