"""benchmarks/megabyte_fair.py: the sweep picks the best rate, the best run goes on, runs resume, and
the report holds only what was measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import megabyte_fair as fair  # noqa: E402


def write_log(runs: Path, model: str, lr: float, bpb_by_step: dict[int, float]) -> None:
    out = fair.run_dir(runs, model, lr)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        {"step": s, "train_tflops": s / 10, "val_bpb_prose": b - 0.1, "val_bpb_code": b + 0.1}
        for s, b in bpb_by_step.items()
    ]
    (out / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_the_best_rate_is_the_lowest_mean_bpb_at_the_sweep_step_and_unknown_until_all_got_there(tmp_path):
    write_log(tmp_path, "flat", 1e-3, {10: 3.0, 20: 2.9})
    write_log(tmp_path, "flat", 2e-3, {10: 3.2, 20: 2.5})  # best at step 20, not at step 10
    assert fair.best_lr(tmp_path, "flat", (1e-3, 2e-3), 10) == 1e-3
    assert fair.best_lr(tmp_path, "flat", (1e-3, 2e-3), 20) == 2e-3
    assert fair.best_lr(tmp_path, "flat", (1e-3, 2e-3, 4e-3), 10) is None  # 4e-3 never ran


def test_the_sweep_trains_to_the_first_budget_then_only_the_best_goes_on(tmp_path, monkeypatch):
    calls, done = [], {1e-3: 10, 2e-3: 0, 4e-3: 0}  # 1e-3 is already at the first budget

    def fake_train(run, out, progress, stop_at=None):
        lr = run.train.lr
        calls.append((lr, run.train.steps, stop_at))
        assert run.train.min_lr == lr  # a constant rate: every budget on equal terms
        write_log(tmp_path, "flat", lr, {10: {1e-3: 3.0, 2e-3: 2.8, 4e-3: 3.1}[lr]})
        return object()

    monkeypatch.setattr(fair, "train", fake_train)
    monkeypatch.setattr(fair, "steps_done", lambda out: done[float(out.name.split("lr")[1])])
    monkeypatch.setattr(fair, "test_report", lambda model, run: {"test_bpb_prose": 1.0})
    write_log(tmp_path, "flat", 1e-3, {10: 3.0})
    fair.train_model("flat", tmp_path, (1e-3, 2e-3, 4e-3), [10, 20, 30], sweep_only=True)
    assert calls == [(2e-3, 30, 10), (4e-3, 30, 10)]  # 1e-3 left alone, each scheduled for the last budget
    calls.clear()
    done.update({2e-3: 10, 4e-3: 10})
    fair.train_model("flat", tmp_path, (1e-3, 2e-3, 4e-3), [10, 20, 30], sweep_only=False)
    assert calls == [(2e-3, 30, None)]  # only the best rate, on to the end
    assert json.loads((fair.run_dir(tmp_path, "flat", 2e-3) / "test.json").read_text()) == {"test_bpb_prose": 1.0}


def test_the_report_lists_only_the_budgets_a_run_reached(tmp_path, monkeypatch):
    monkeypatch.setattr(fair, "LEARNING_RATES", {"flat": (1e-3, 2e-3, 4e-3), "megabyte": (1e-3, 2e-3, 4e-3)})
    for lr, b in ((1e-3, 3.0), (2e-3, 2.8), (4e-3, 3.3)):
        write_log(tmp_path, "flat", lr, {10: b})
    write_log(tmp_path, "flat", 2e-3, {10: 2.8, 20: 2.4})  # the best run, stopped before step 30
    write_log(tmp_path, "megabyte", 1e-3, {10: 3.5})  # a sweep not finished
    out = fair.report(tmp_path, [10, 20, 30])
    flat, mega = out["models"]["flat"], out["models"]["megabyte"]
    assert flat["best_lr"] == 2e-3
    assert flat["budgets"] == [
        {"step": 10, "train_tflops": 1.0, "val_bpb": 2.8},
        {"step": 20, "train_tflops": 2.0, "val_bpb": 2.4},
    ]
    assert mega["best_lr"] is None and "budgets" not in mega
    assert out["flat_attention_share_by_length"]["512"] < out["flat_attention_share_by_length"]["2048"] < 1


@pytest.mark.parametrize(
    "argv",
    [["--model", "flat", "--lrs", "1e-3", "2e-3"], ["--report", "--budget-steps", "20", "10"], ["--lrs", "0"], []],
)
def test_bad_command_lines_are_refused(argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["megabyte_fair.py", *argv])
    with pytest.raises(SystemExit) as e:
        fair.main()
    assert e.value.code == 2 and "error:" in capsys.readouterr().err
