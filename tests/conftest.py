import pytest
import torch

from minillm.config import ModelConfig
from minillm.model import MiniLLM

# The tests run tiny models: one thread is as fast, and far faster when other jobs share the cores.
torch.set_num_threads(1)


@pytest.fixture
def small_config() -> ModelConfig:
    return ModelConfig(d_model=32, n_layers=2, n_heads=4, max_seq_len=32)


@pytest.fixture
def small_model(small_config) -> MiniLLM:
    """A random model in float64, so equalities hold to ~1e-12."""
    torch.manual_seed(0)
    return MiniLLM(small_config).double().eval()


class CheckerContract:
    """What every exercise checker owes a learner: ✅ for the package's function, ❌ with a hint for
    a classic mistake, ⏳ for an untouched stub, and never an exception escaping into the notebook."""

    def __init__(self, capsys: pytest.CaptureFixture) -> None:
        self.capsys = capsys

    def accepts(self, check, answer, *extra) -> None:
        """The checker passes `answer` (called as check(answer, *extra)) and says so."""
        assert check(answer, *extra)
        assert "✅" in self.capsys.readouterr().out

    def rejects(self, check, answer, *extra, says: str = "") -> None:
        """The checker fails `answer` with ❌ and a hint (that mentions `says`), and does not mistake
        it for an untouched stub (⏳)."""
        assert not check(answer, *extra), f"{getattr(check, '__name__', check)} accepted a wrong answer"
        out = self.capsys.readouterr().out
        assert "❌" in out and "hint" in out and says in out and "⏳" not in out, out

    def passes_right_fails_wrong(self, check, right, wrong) -> None:
        assert check(right)
        assert not check(wrong)
        out = self.capsys.readouterr().out
        assert out.count("✅") == 1 and "❌" in out and "hint:" in out

    def reports_stubs_and_errors(self, check, wrong_value, wrong_type_message: str) -> None:
        def stub(*args):
            raise NotImplementedError

        assert not check(stub)
        assert not check(lambda *args: 1 / 0)
        assert not check(lambda *args: wrong_value)
        out = self.capsys.readouterr().out
        assert "⏳" in out and "not implemented yet" in out
        assert "raised ZeroDivisionError" in out
        assert wrong_type_message in out


@pytest.fixture
def checker_contract(capsys) -> CheckerContract:
    return CheckerContract(capsys)
