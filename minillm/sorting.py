"""The ∞-former's sorting task, scaled to a CPU: how much of a long stream does a memory keep?

Martins, Marinho & Martins, "∞-former: Infinite Memory Transformer", ACL 2022, arXiv 2109.00301.
Each example is a stream of `length` symbols drawn from a distribution that drifts from p_initial
to p_final (symbol j ~ (1 - r) p_initial + r p_final with r = (j + 1) / length; each p is V integers
in 1..9, normalised), then a separator, then the V symbols sorted by decreasing count in the stream.
The counts need the whole stream; a model that remembers only its last few hundred tokens sees
mostly p_final. We compare, on one architecture: STM only (Transformer-XL), the ∞-former (LTM) and
the ∞-former with sticky memories, trained for each length, scored by teacher-forced accuracy.

Departures from the reference (`sorting/generate_data.py`, `run_sort_inftyformer.sh`): 10 symbols
and 512-4k tokens instead of 20 and 4k-16k; ties in the counts go to the smaller symbol id (the
reference's Counter.most_common orders them by first occurrence); fresh examples every step
instead of a fixed training set of 8000; the loss is on the sorted part only, so the stream is
read without gradients (the memories are detached anyway) and only the last segment back-propagates.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from . import validate
from .config import ModelConfig
from .infinite_former import InfiniteFormer, MemoryConfig

VARIANTS = ("stm", "ltm", "sticky")  # STM only (Transformer-XL); ∞-former; ∞-former with sticky memories


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---- the rules of this module's arguments, in one place ----


def _check_examples(streams: object, targets: object, vocab: int | None = None) -> None:
    """streams (n, length) and targets (n, V): integer tensors of one batch, symbols in 0..V-1."""
    for name, x in (("streams", streams), ("targets", targets)):
        if not isinstance(x, torch.Tensor) or x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            raise TypeError(f"{name} must be an integer tensor (n, ...), got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() != 2 or 0 in x.shape:
            raise ValueError(f"{name} must be 2-D and non-empty, got shape {tuple(x.shape)}")
    if len(streams) != len(targets):
        raise ValueError(f"targets must have one row per stream: {len(streams)} streams, {len(targets)} targets")
    vocab = targets.shape[1] if vocab is None else vocab
    for name, x in (("streams", streams), ("targets", targets)):
        if x.min() < 0 or x.max() >= vocab:
            raise ValueError(f"{name} must hold symbols in 0..{vocab - 1}, got {int(x.min())}..{int(x.max())}")


def _check_model(model: object) -> None:
    if not isinstance(model, InfiniteFormer):
        raise TypeError(f"model must be an InfiniteFormer (build_model gives one), got {type(model).__name__}")


def _check_cfg(cfg: object) -> None:
    if not isinstance(cfg, SortingConfig):
        raise TypeError(f"cfg must be a SortingConfig, got {type(cfg).__name__}")


def make_sorting_data(
    num_examples: int, length: int, vocab: int = 10, seed: int = 0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(streams (n, length), sorted symbols (n, vocab)), both int64 in 0..vocab-1, from `seed`
    (or from `generator`, which then advances: a training loop draws a new batch each call)."""
    for name, value, low in (("num_examples", num_examples, 1), ("length", length, 1), ("vocab", vocab, 2)):
        validate.check_int(name, value, low)
    validate.check_int("seed", seed, 0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    p_initial, p_final = (torch.randint(1, 10, (num_examples, 1, vocab), generator=gen).double() for _ in range(2))
    p_initial, p_final = p_initial / p_initial.sum(-1, keepdim=True), p_final / p_final.sum(-1, keepdim=True)
    r = (torch.arange(length, dtype=torch.float64) + 1).div(length)[None, :, None]  # (1, length, 1)
    cdf = ((1 - r) * p_initial + r * p_final).cumsum(-1)  # (n, length, V)
    u = torch.rand(num_examples, length, 1, generator=gen, dtype=torch.float64)
    streams = (u > cdf[..., :-1]).sum(-1)  # (n, length): inverse-CDF sampling
    counts = F.one_hot(streams, vocab).sum(1)  # (n, V)
    order = torch.sort(counts, dim=-1, descending=True, stable=True).indices  # ties: smaller id first
    return streams, order


def count_oracle_accuracy(streams: torch.Tensor, targets: torch.Tensor, window: int | None = None) -> float:
    """Teacher-forced accuracy of exact counting over the last `window` tokens (None: all of them).

    At each output position the oracle, given the true prefix, names the most frequent symbol in
    the window among those not yet named. It is the ceiling of a model that remembers only that
    window perfectly: the line an STM-only model cannot cross.
    """
    _check_examples(streams, targets)
    if window is not None:
        validate.check_int("window", window, 1)
    vocab = targets.shape[1]
    seen = streams if window is None else streams[:, -window:]
    counts = F.one_hot(seen, vocab).sum(1).double()  # (n, V)
    counts = counts - torch.arange(vocab) * 1e-6  # ties to the smaller id, as the targets
    correct = 0
    named = torch.zeros_like(counts, dtype=torch.bool)
    for k in range(vocab):
        guess = counts.masked_fill(named, -math.inf).argmax(-1)  # (n,)
        correct += (guess == targets[:, k]).sum().item()
        named[torch.arange(len(targets)), targets[:, k]] = True  # teacher forcing: the true symbol
    return correct / targets.numel()


@dataclass(frozen=True)
class SortingConfig:
    vocab: int = 10  # V symbols; the separator is id V (the reference: 20)
    length: int = 512  # stream length (the reference: 4k, 8k, 16k)
    segment_len: int = 128  # tokens per forward (Transformer-XL's tgt_len; the reference: 1024)
    mem_len: int = 128  # STM length (the reference: 1024)
    d_model: int = 64  # (the reference: 300, 6 heads, 3 layers)
    n_layers: int = 2
    n_heads: int = 4
    num_basis: int = 64  # N (the reference: 512)
    tau: float = 0.75  # the reference's sorting value
    num_samples: int = 256  # M samples of the old signal per update (the reference: 512)
    steps: int = 300
    batch_size: int = 16
    lr: float = 2e-3  # AdamW peak, linear warm-up then cosine decay to lr / 10
    warmup: int = 30
    eval_examples: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("length", "segment_len", "steps", "batch_size", "warmup", "eval_examples"):
            validate.check_int(f"SortingConfig.{name}", getattr(self, name), 1)
        validate.check_int("SortingConfig.vocab", self.vocab, 2)  # one symbol would sort trivially
        validate.check_int("SortingConfig.seed", self.seed, 0)
        validate.check_float("SortingConfig.lr", self.lr, 0.0, above=True)
        self.model_config()  # ModelConfig and MemoryConfig check the rest (d_model, heads, tau, ...)
        self.memory_config("sticky")

    def model_config(self) -> ModelConfig:
        return ModelConfig(self.vocab + 1, self.d_model, self.n_layers, self.n_heads, self.segment_len)

    def memory_config(self, variant: str) -> MemoryConfig:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        return MemoryConfig(
            self.mem_len,
            use_ltm=variant != "stm",
            sticky=variant == "sticky",
            num_basis=self.num_basis,
            tau=self.tau,
            num_samples=self.num_samples,
        )


# A run for a notebook: ~40 s per variant on one shared CPU thread, where the LTM already wins
# (measured: STM only 0.41, LTM 0.58; exact counts of the last 64 tokens would give 0.48).
QUICK = SortingConfig(length=256, segment_len=64, mem_len=64, steps=800)

# Smaller still, for a live cell of chapter 07: 6 symbols, 128 tokens, STM of 32; ~5 s (STM only) and
# ~8 s (LTM) on one idle CPU thread. Measured: STM only 0.48, LTM 0.79; exact counts of the last
# 32 tokens would give 0.61, chance 0.41.
TINY = SortingConfig(
    vocab=6,
    length=128,
    segment_len=32,
    mem_len=32,
    d_model=32,
    num_basis=32,
    num_samples=64,
    steps=600,
    lr=3e-3,
    eval_examples=128,
)


def build_model(cfg: SortingConfig, variant: str) -> InfiniteFormer:
    _check_cfg(cfg)
    torch.manual_seed(cfg.seed)  # every variant starts from the same weights where they share them
    return InfiniteFormer(cfg.model_config(), cfg.memory_config(variant))


def target_logits(
    model: InfiniteFormer,
    streams: torch.Tensor,
    targets: torch.Tensor,
    segment_len: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Read the streams (B, length) segment by segment, then predict the sorted part: (B, V, V + 1).

    The last segment is [separator, t_1 .. t_{V-1}] and its logits predict t_1 .. t_V (teacher
    forcing). Only that segment keeps gradients; the stream shapes the memories without them.
    """
    memories = model.new_memories(generator)
    with torch.no_grad():
        for start in range(0, streams.shape[1], segment_len):
            model(streams[:, start : start + segment_len], memories, return_logits=False)
    separator = torch.full_like(targets[:, :1], targets.shape[1])  # (B, 1): id V
    return model(torch.cat([separator, targets[:, :-1]], dim=1), memories)  # (B, V, V + 1)


@torch.no_grad()
def accuracy(
    model: InfiniteFormer,
    streams: torch.Tensor,
    targets: torch.Tensor,
    segment_len: int,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Teacher-forced accuracy: the share of sorted positions whose most likely symbol is right."""
    _check_model(model)
    _check_examples(streams, targets)
    validate.check_int("segment_len", segment_len, 1)
    validate.check_int("batch_size", batch_size, 1)
    validate.check_int("seed", seed, 0)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    correct = 0
    for i in range(0, len(streams), batch_size):
        s, t = streams[i : i + batch_size].to(device), targets[i : i + batch_size].to(device)
        correct += (target_logits(model, s, t, segment_len, generator).argmax(-1) == t).sum().item()
    model.train(was_training)
    return correct / targets.numel()


def train_sorting(
    cfg: SortingConfig,
    variant: str,
    progress: bool = False,
    device: torch.device | str | None = None,
    model: InfiniteFormer | None = None,
    eval_every: int | None = None,
) -> tuple[InfiniteFormer, dict]:
    """Train one variant on fresh examples; returns (model, record with the test accuracy).

    AdamW with a linear warm-up and a cosine decay to lr / 10; `train_seconds` includes the
    periodic evaluations. `model` continues training a model (e.g. one trained on shorter streams); `eval_every` adds
    the test accuracy every so many steps to the record's "curve".
    """
    _check_cfg(cfg)
    cfg.memory_config(variant)  # validates variant
    if eval_every is not None:
        validate.check_int("eval_every", eval_every, 1)
    if model is not None:
        _check_model(model)
    try:
        device = torch.device(device) if device is not None else default_device()
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    model = (build_model(cfg, variant) if model is None else model).to(device).train()
    test = make_sorting_data(cfg.eval_examples, cfg.length, cfg.vocab, seed=cfg.seed + 1000)
    curve = []
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    data_gen = torch.Generator().manual_seed(cfg.seed)  # training batches (test set: seed + 1000)
    sticky_gen = torch.Generator(device).manual_seed(cfg.seed)  # sticky sampling
    start, losses = time.time(), []
    for step in range(cfg.steps):
        warm = (step + 1) / cfg.warmup
        cosine = 0.1 + 0.45 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * min(warm, cosine)
        streams, targets = make_sorting_data(cfg.batch_size, cfg.length, cfg.vocab, generator=data_gen)
        streams, targets = streams.to(device), targets.to(device)
        logits = target_logits(model, streams, targets, cfg.segment_len, sticky_gen)  # (B, V, V + 1)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < cfg.steps:
            curve.append((step + 1, round(accuracy(model, *test, cfg.segment_len), 4)))
        if progress and (step + 1) % max(1, cfg.steps // 10) == 0:
            acc = f", test accuracy {curve[-1][1]:.3f}" if curve and curve[-1][0] == step + 1 else ""
            print(f"{variant} L={cfg.length} step {step + 1}: loss {sum(losses[-20:]) / len(losses[-20:]):.3f}{acc}")
    train_seconds = time.time() - start
    acc = round(accuracy(model, *test, cfg.segment_len), 4)
    record = {
        "variant": variant,
        "length": cfg.length,
        "accuracy": acc,
        "curve": [*curve, (cfg.steps, acc)],
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "train_seconds": round(train_seconds, 1),
        "config": asdict(cfg),
    }
    return model.eval(), record
