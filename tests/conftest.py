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
