"""One set-up for every notebook of the course: seeds, threads, warnings and plot style.

Every lecture, exercise and solution notebook starts with

    from minillm.notebook import setup
    setup()

so that all of them draw the same random numbers, run at the speed their header states on a busy
laptop, hide only the warnings the course expects, and draw figures alike. The set-up is also what
makes the committed outputs reproducible: nbval re-executes the notebooks and compares their text.
"""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

THREADS_ENV = "MINILLM_THREADS"  # set it to override the thread count (CI checks 1 and 2 threads)

# Threads per kind of model. The course's own models are tiny (0.8M parameters, forwards of a few
# hundred tokens): a second thread gains nothing on matrices this small, and torch's default, one
# thread per core, oversubscribes a laptop whose cores are also busy with other work (the same
# greedy call took 0.30 s with one thread and 6.0 s with two on a loaded 2-core machine).
# SmolLM2-135M is another matter: a forward over 1,024 tokens is ~280 GFLOP of large matrix products,
# which two threads run in 2.4 s instead of 4.2 s on an idle 2-core machine.
THREADS = {"toy": 1, "smollm2": 2}

# Warnings the course knows about and explains in the text; everything else still shows.
EXPECTED_WARNINGS = (
    "flex_attention called without torch.compile",  # chapter 08 runs FlexAttention eagerly, as an oracle
    "IProgress not found",  # tqdm without a widget front-end (nbval, a plain console)
)

PLOT_STYLE = {
    "figure.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 9,
    "legend.framealpha": 0.9,
    "image.interpolation": "nearest",  # attention maps: one cell per weight, never blurred
}


def thread_count(model: str = "toy") -> int:
    """How many threads `setup(model)` uses: the course's choice, unless MINILLM_THREADS says otherwise."""
    if model not in THREADS:
        raise ValueError(f"model must be one of {sorted(THREADS)}, got {model!r}")
    override = os.environ.get(THREADS_ENV, "").strip()
    if not override:
        return THREADS[model]
    if not override.isdigit() or int(override) < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {override!r}")
    return int(override)


def setup(model: str = "toy", seed: int = 0) -> None:
    """Seed every generator, pick the thread count for `model`, filter expected warnings, style plots."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    torch.set_num_threads(thread_count(model))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    for message in EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{message}")

    import matplotlib.pyplot as plt  # imported here: the model code itself never needs matplotlib

    plt.style.use("default")  # a learner's matplotlibrc must not change the course's figures
    plt.rcParams.update(PLOT_STYLE)
