"""The hints of chapters 05-08 are graded and never give the solution away.

Every exercise's checker is run on a wrong answer of its chapter's suite with `hint=2`; both hints
must be printed, and no line of the solution notebook's code (the BEGIN/END SOLUTION regions, lines
of 12 or more characters, whitespace normalised) may appear in them, nor anything that reads like code
(a slice, a torch call, a tensor method call): the old hints were solution code, paraphrased.
"""

from __future__ import annotations

import re

import nbformat
import pytest
import test_wrong_answers_ch05 as w05  # the suites' wrong answers (tests/ is on sys.path under pytest)
import test_wrong_answers_ch06 as w06
import test_wrong_answers_ch07 as w07
import test_wrong_answers_ch08 as w08

import minillm_kernels
from minillm.checks import ch05, ch06, ch07, ch08
from minillm.course import BEGIN, END, ROOT

# What a line of code looks like in a hint: a slice (h[:, :-1]), a torch call, a tensor method call.
CODE = "|".join(
    [r"\[[^\]]*:[^\]]*\]", r"torch\.\w+", r"\.(?:reshape|view|expand|cat|masked_fill|softmax|transpose|mean|sum)\("]
)


def _solution_lines(name: str) -> set[str]:
    nb = nbformat.read(ROOT / "solutions" / name, as_version=4)
    lines = set()
    for cell in nb.cells:
        for body in re.findall(rf"{re.escape(BEGIN)}[^\n]*\n(.*?){re.escape(END)}", cell.source, re.S):
            for line in body.splitlines():
                code = " ".join(line.split("#")[0].split())
                if len(code) >= 12:
                    lines.add(code)
    return lines


def _cases():
    for module, suite, notebook in [
        (ch05, w05.EXERCISES, "05_lookahead_decoding.ipynb"),
        (ch06, w06.EXERCISES, "06_megabyte.ipynb"),
    ]:
        for check, (_, wrongs) in suite.items():
            yield module, check, wrongs[0], notebook
    for check, (_, wrongs) in w07.EXERCISES.items():
        yield ch07, check, wrongs[0], "07_infinite_former.ipynb"
    if minillm_kernels.TRITON_AVAILABLE:
        for check, (_, wrongs) in w08.KERNELS.items():
            yield ch08, check, wrongs[0][0], "08_triton_kernels.ipynb"
    yield ch08, "check_visited_blocks", w08.VISITED_WRONG[0][0], "08_triton_kernels.ipynb"


CASES = list(_cases())


@pytest.mark.parametrize("module, check, wrong, notebook", CASES, ids=[c[1] for c in CASES])
def test_both_hints_are_given_and_neither_holds_solution_code(module, check, wrong, notebook, capsys):
    assert not getattr(module, check)(wrong, hint=2)
    out = capsys.readouterr().out
    hints = [line for line in out.splitlines() if line.lstrip().startswith(("hint:", "hint 2:"))]
    assert len(hints) == 2, out
    text = " ".join(" ".join(hints).split())
    leaked = [line for line in _solution_lines(notebook) if line in text]
    assert not leaked, f"{check}'s hints hold solution code: {leaked}"
    code = re.findall(CODE, text)
    assert not code, f"{check}'s hints read like code: {code}"


def test_the_first_failure_gives_hint_1_only_and_the_second_adds_hint_2(capsys):
    from minillm.checks import reset_hints

    reset_hints()
    ch05.check_verify(w05.verify_no_bonus)
    first = capsys.readouterr().out
    ch05.check_verify(w05.verify_no_bonus)
    second = capsys.readouterr().out
    assert "hint:" in first and "hint 2:" not in first and "hint=2" in first
    assert "hint 2:" in second
