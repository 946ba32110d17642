"""The ∞-former: attention over a short-term memory plus a read of an unbounded continuous memory.

Martins, Marinho & Martins, "∞-former: Infinite Memory Transformer", ACL 2022, arXiv 2109.00301.
`ContinuousMemory` holds any number of past vectors as N basis coefficients, the long-term memory
(LTM): `fit` regresses L vectors onto Gaussian bumps, `update` squeezes the old signal into
[0, tau] and appends new vectors in (tau, 1] (resampling where attention looked, with sticky
memories). `InfiniteFormer` is a Transformer-XL-style segment-recurrent model whose blocks add a
continuous read of their LTM to ordinary attention over the last `mem_len` states (the STM).

Departures from the reference code (deep-spin/infinite-former): RoPE instead of Transformer-XL's
relative encodings; the LTM stores the normalised states the STM keys are made from; no KL
regulariser and no learned gate over memory vectors; G is computed (and cached) for whatever
lengths occur instead of being precomputed per multiple of `target_len`; an `update` on an empty
memory is a `fit`, as the reference's first call is. See continuous_attention.py for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import AttentionStep, rope_attention
from .config import ModelConfig
from .continuous_attention import (
    GaussianBasis,
    bin_masses,
    cell_centres,
    continuous_softmax,
    contraction_positions,
    ridge_regression_matrix,
    sample_sticky_positions,
)
from .guard import all_or_nothing, remember
from .model import Block, MiniLLM
from .validate import check_bool, check_device


class ContinuousMemory:
    """A signal X(t) = B^T psi(t) on [0, 1], stored as its coefficients B (N, e) (or (batch, N, e)).

    num_basis N and sigmas define the Gaussian basis; ridge is lambda of the ridge fit; tau is the
    share of [0, 1] the old signal keeps at each update; num_samples M is how many points of the
    old signal an update re-fits; pad picks the fit: True (default) the reference code's, with
    zero padding outside [0, 1], False the paper's equation (see `ridge_regression_matrix`: the
    padded fit reads ~0 outside [0, 1] but dips near the ends where the signal is not 0, up to
    0.46 on a signal of 1); jitter draws sticky samples inside their bins (see
    `sample_sticky_positions`).
    Vectors may carry a leading batch dim: x (L, e) or (batch, L, e).
    """

    def __init__(
        self,
        num_basis: int = 64,
        sigmas: Sequence[float] = (0.01, 0.05),
        ridge: float = 1.0,
        tau: float = 0.75,
        *,
        num_samples: int = 512,
        pad: bool = True,
        jitter: bool = True,
    ) -> None:
        self.basis = GaussianBasis(num_basis, sigmas)  # validates num_basis and sigmas
        # ridge 0 leaves F F^T singular for narrow bumps: coefficients ~1e37 and NaN
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not 0 < ridge < float("inf"):
            raise ValueError(f"ridge must be a number >= 0, finite and not 0 (the fit is singular), got {ridge!r}")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < 1:
            raise ValueError(f"tau must lie strictly between 0 and 1, got {tau!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if not isinstance(pad, bool) or not isinstance(jitter, bool):
            raise TypeError(f"pad and jitter must be bools, got pad={pad!r}, jitter={jitter!r}")
        self.num_basis, self.sigmas = num_basis, tuple(sigmas)
        self.ridge, self.tau, self.num_samples = float(ridge), float(tau), num_samples
        self.pad, self.jitter = pad, jitter
        self._coef: torch.Tensor | None = None
        self._G: dict[tuple, torch.Tensor] = {}  # ridge matrices per (kind, lengths, device, dtype)
        self.sampled_positions: torch.Tensor | None = None  # where the last update read the old signal

    @property
    def is_empty(self) -> bool:
        return self._coef is None

    @property
    def coefficients(self) -> torch.Tensor:
        """B: (N, e), or (batch, N, e); the same size however many vectors went in."""
        if self._coef is None:
            raise RuntimeError("the memory is empty: call fit() first")
        return self._coef

    def _check_vectors(self, x: torch.Tensor, name: str, appending: bool) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor (L, e), got {getattr(x, 'dtype', type(x))}")
        if x.dim() not in (2, 3) or x.shape[-2] == 0:
            raise ValueError(f"{name} must have shape (L, e) or (batch, L, e) with L >= 1, got {tuple(x.shape)}")
        if appending and self._coef is not None:
            check_device(name, x, self._coef.device)
        if x.is_meta:  # a shape without values: nothing to regress
            raise ValueError(f"{name} is a meta tensor (a shape without values): pass the vectors themselves")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} must be finite (it holds NaN or inf)")
        if appending and self._coef is not None:
            old, new = (self._coef.shape[:-2], self._coef.shape[-1]), (x.shape[:-2], x.shape[-1])
            if old != new:
                raise ValueError(f"{name} has batch/width {new}, but the memory holds {old}")

    def _ridge(self, key: tuple, positions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        key = (*key, like.device, like.dtype)
        if key not in self._G:
            self._G[key] = ridge_regression_matrix(self.basis, positions, self.ridge, self.pad).to(like)
        return self._G[key]  # (L, N)

    def fit(self, x: torch.Tensor) -> ContinuousMemory:
        """Forget everything; regress the L vectors x (L, e), placed at (i + 1/2) / L, onto the basis."""
        self._check_vectors(x, "x", appending=False)
        L = x.shape[-2]
        G = self._ridge(("fit", L), cell_centres(L), x)  # (L, N)
        self._coef = G.T @ x  # (N, L) @ (..., L, e) -> (..., N, e)
        return self

    def read(self, t: torch.Tensor, extrapolate: bool = False) -> torch.Tensor:
        """X(t) = B^T psi(t) at the points t (Q,): (Q, e), or (batch, Q, e).

        The memory holds its signal on [0, 1]; outside, X(t) is only the tails of the basis
        functions. A read there is refused unless `extrapolate=True` says it is meant (chapter 07
        reads outside to show what the padding does)."""
        coef = self.coefficients
        if not isinstance(t, torch.Tensor) or t.dim() != 1:
            raise ValueError(f"t must be a 1-D tensor of positions, got {getattr(t, 'shape', type(t))}")
        check_bool("extrapolate", extrapolate)
        check_device("t", t, coef.device)
        if not torch.isfinite(t).all():
            raise ValueError("t must be finite (it holds NaN or inf)")
        if not extrapolate and len(t) and (t.min() < 0 or t.max() > 1):
            raise ValueError(
                f"t must lie in [0, 1], where the memory holds its signal (got {t.min().item():.3g} to "
                f"{t.max().item():.3g}); pass extrapolate=True to read the basis functions' tails outside it"
            )
        psi = self.basis.to(coef.device, coef.dtype)(t.to(coef))  # (Q, N)
        return psi @ coef  # (Q, N) @ (..., N, e) -> (..., Q, e)

    def update(
        self, x_new: torch.Tensor, sticky_density: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> ContinuousMemory:
        """Append L vectors x_new (L, e): the old signal moves to (0, tau], x_new fills (tau, 1].

        The old signal is read at M points and re-fitted together with x_new. Without a density the
        points are the cell centres of [0, 1] (a plain contraction: X_new(tau s) ~ X_old(s)); with
        `sticky_density`, a histogram of attention mass over bins of [0, 1] (bins,) or (batch,
        bins), they are drawn from it with `generator`, so attended regions keep more of the M
        slots. Either way the samples are placed, in order, at tau (j + 1/2) / M.
        """
        self._check_vectors(x_new, "x_new", appending=True)
        if self._coef is None:
            return self.fit(x_new)
        coef, M, L, tau = self._coef, self.num_samples, x_new.shape[-2], self.tau
        if sticky_density is None:
            t_old = cell_centres(M, coef.device, coef.dtype)  # (M,)
        else:
            batch = coef.shape[:-2]
            if not isinstance(sticky_density, torch.Tensor) or not sticky_density.is_floating_point():
                raise TypeError(f"sticky_density must be a floating tensor, got {type(sticky_density).__name__}")
            if sticky_density.shape[:-1] != batch or sticky_density.dim() == 0 or sticky_density.shape[-1] == 0:
                raise ValueError(
                    f"sticky_density must have shape (*{tuple(batch)}, bins) with bins >= 1, got "
                    f"{tuple(sticky_density.shape)}"
                )
            check_device("sticky_density", sticky_density, coef.device)
            if not (torch.isfinite(sticky_density).all() and (sticky_density >= 0).all()):
                raise ValueError("sticky_density must be finite and >= 0 (a histogram of attention mass)")
            t_old = sample_sticky_positions(sticky_density, M, generator, self.jitter).to(coef)  # (..., M)
        old = self.basis.to(coef.device, coef.dtype)(t_old) @ coef  # (..., M, N) @ (..., N, e) -> (..., M, e)
        positions = contraction_positions(M, L, tau)  # (M + L,)
        G = self._ridge(("update", M, L), positions, x_new)  # (M + L, N)
        self._coef, self.sampled_positions = G.T @ torch.cat([old, x_new], dim=-2), t_old  # (..., N, e): both at once
        return self


@dataclass(frozen=True)
class MemoryConfig:
    """The memories of an InfiniteFormer; the defaults are the reference's sorting set-up, scaled down."""

    mem_len: int = 128  # STM: states kept for ordinary attention (Transformer-XL's mem_len)
    use_ltm: bool = True  # False: STM only, i.e. Transformer-XL
    sticky: bool = False  # sample the old signal where attention looked (sticky memories)
    num_basis: int = 64  # N basis functions (the reference uses 512 for sequences of 4k-16k)
    sigmas: tuple[float, ...] = (0.01, 0.05)  # basis widths (sorting; GPT-2 used 0.005, 0.01)
    ridge: float = 1.0  # lambda of the ridge fit (sorting; GPT-2 used 0.5)
    tau: float = 0.75  # share of [0, 1] the old signal keeps at each update (sorting; GPT-2 0.5)
    num_samples: int = 256  # M points of the old signal re-fitted per update (reference 512)
    num_bins: int = 128  # histogram bins of sticky memories
    min_sigma_sq: float = 1e-4  # floor of the density's variance (reference: 1e-4 GPT-2, 1e-6 sorting)
    # The fit: True, the reference's zero-padded one (the default: the model's densities are
    # integrated over the whole line, and padding makes their mass outside [0, 1] read ~0); False,
    # the paper's equation (exact near the ends, but it extrapolates beyond them).
    pad: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.mem_len, bool) or not isinstance(self.mem_len, int) or self.mem_len < 0:
            raise ValueError(f"MemoryConfig.mem_len must be an int >= 0, got {self.mem_len!r}")
        if not self.min_sigma_sq > 0:
            raise ValueError(f"MemoryConfig.min_sigma_sq must be > 0, got {self.min_sigma_sq}")
        if self.sticky and not self.use_ltm:
            raise ValueError("MemoryConfig.sticky needs use_ltm=True")
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or self.num_bins <= 0:
            raise ValueError(f"MemoryConfig.num_bins must be a positive int, got {self.num_bins!r}")
        if not isinstance(self.pad, bool):
            raise TypeError(f"MemoryConfig.pad must be a bool, got {self.pad!r}")
        self.new_ltm()  # validates num_basis, sigmas, ridge, tau, num_samples

    def new_ltm(self) -> ContinuousMemory:
        return ContinuousMemory(
            self.num_basis, self.sigmas, self.ridge, self.tau, num_samples=self.num_samples, pad=self.pad
        )


class LayerMemory:
    """One layer's memories for one batch of streams: the STM (batch, S, C) and the LTM."""

    def __init__(self, config: MemoryConfig, generator: torch.Generator | None = None) -> None:
        self.config, self.generator = config, generator
        self.stm: torch.Tensor | None = None  # (B, S <= mem_len, C), detached
        self.ltm = config.new_ltm() if config.use_ltm else None
        self.density: tuple[torch.Tensor, torch.Tensor] | None = None  # (mu, sigma_sq) of the last LTM read

    def push(self, h: torch.Tensor) -> None:
        """Append the states h (B, T, C); those beyond mem_len leave the STM for the LTM.

        Detached: no gradient flows into the past (Transformer-XL's stop-gradient; the reference
        detaches B_past too).
        """
        h = h.detach()
        stm = h if self.stm is None else torch.cat([self.stm, h], dim=1)  # (B, S + T, C)
        overflow = stm.shape[1] - self.config.mem_len
        if overflow > 0:
            old, stm = stm[:, :overflow], stm[:, overflow:]
            if self.ltm is not None:
                density = None
                if self.config.sticky and self.density is not None:
                    mu, sigma_sq = self.density  # (B, H, T) each: every head's and query's density
                    density = bin_masses(mu.flatten(1), sigma_sq.flatten(1), self.config.num_bins)  # (B, bins)
                self.ltm.update(old, density, self.generator)
        self.stm = stm


class LongTermAttention(nn.Module):
    """Continuous attention of queries (B, H, T, D) over an LTM's coefficients (B, N, C)."""

    def __init__(self, config: ModelConfig, memory: MemoryConfig) -> None:
        super().__init__()
        C, N = config.d_model, memory.num_basis
        self.n_heads, self.min_sigma_sq = config.n_heads, memory.min_sigma_sq
        self.key = nn.Linear(C, C, bias=False)  # K = B W_K: one key per basis function
        self.value = nn.Linear(C, C, bias=False)  # V = B W_V
        self.to_mu = nn.Linear(N, 1, bias=False)  # mu = sigmoid(w_mu . scores), as the reference (no bias)
        self.to_sigma_sq = nn.Linear(N, 1, bias=False)  # sigma^2 = softplus(w_sigma . scores)
        self.proj = nn.Linear(C, C, bias=False)
        basis = GaussianBasis(memory.num_basis, memory.sigmas, dtype=torch.float32)
        self.register_buffer("basis_mu", basis.mu, persistent=False)  # buffers follow .to(device)
        self.register_buffer("basis_sigma", basis.sigma, persistent=False)

    def density(self, q: torch.Tensor, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu, sigma^2 (B, H, T) of each query's Gaussian over [0, 1], from its scores against the
        N keys K = B W_K."""
        B, H, T, D = q.shape
        k = self.key(coef).view(B, -1, H, D).transpose(1, 2)  # (B, H, N, D)
        scores = q @ k.transpose(-2, -1) / D**0.5  # (B, H, T, N)
        mu = torch.sigmoid(self.to_mu(scores)).squeeze(-1)  # (B, H, T), inside (0, 1)
        sigma_sq = F.softplus(self.to_sigma_sq(scores)).squeeze(-1).clamp(min=self.min_sigma_sq)  # (B, H, T)
        return mu, sigma_sq

    def forward(self, q: torch.Tensor, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (out (B, T, C), mu (B, H, T), sigma_sq (B, H, T))."""
        B, H, T, D = q.shape
        mu, sigma_sq = self.density(q, coef)
        basis = GaussianBasis.from_tensors(self.basis_mu.to(q.dtype), self.basis_sigma.to(q.dtype))
        r = continuous_softmax(mu, sigma_sq, basis)  # (B, H, T, N): E_p[psi(t)]
        v = self.value(coef).view(B, -1, H, D).transpose(1, 2)  # (B, H, N, D): V = B W_V
        context = r @ v  # (B, H, T, D) = E_p[V(t)], the expected value signal under the density
        return self.proj(context.transpose(1, 2).reshape(B, T, H * D)), mu, sigma_sq


class InfiniteFormerBlock(Block):
    """Block whose attention sees the STM and the current segment, plus (if any) a read of the LTM."""

    def __init__(self, config: ModelConfig, memory: MemoryConfig) -> None:
        super().__init__(config)
        self.ltm_attn = LongTermAttention(config, memory) if memory.use_ltm else None

    def forward(self, x: torch.Tensor, memory: LayerMemory) -> torch.Tensor:  # type: ignore[override]
        B, T, C = x.shape
        h = self.norm1(x)  # (B, T, C)
        context = h if memory.stm is None else torch.cat([memory.stm, h], dim=1)  # (B, S, C)
        S = context.shape[1]
        q = self._query(h)  # (B, H, T, D)
        k, v = (self._heads(t) for t in F.linear(context, self.attn.qkv.weight[C:]).split(C, -1))  # (B, H, S, D)
        # Transformer-XL's mask: every STM entry, then causal inside the segment. Explicit, since
        # SDPA's is_causal aligns the triangle top-left when T != S.
        mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)  # (T, S)
        step = AttentionStep(torch.arange(S - T, S, device=x.device), torch.arange(S, device=x.device), mask)
        y, _ = rope_attention(q, k, v, step, self.attn.rope_base, check_inputs=False)  # (B, H, T, D)
        a = self.attn.proj(y.transpose(1, 2).reshape(B, T, C))  # Z_T
        if self.ltm_attn is not None and not memory.ltm.is_empty:
            a_ltm, mu, sigma_sq = self.ltm_attn(q, memory.ltm.coefficients)  # same queries, un-rotated (as ref.)
            a = a + a_ltm  # Z = Z_T + Z_LTM, as the reference's attn_out += a_long_term
            memory.density = (mu.detach(), sigma_sq.detach())
        memory.push(h)  # after the reads: this segment enters the STM, the oldest states the LTM
        x = x + a
        return x + self.mlp(self.norm2(x))

    def remember(self, x: torch.Tensor, memory: LayerMemory) -> None:
        """What `forward` does to the memories, without its output: for the last layer on segments
        whose logits nobody needs. Only sticky memories need this segment's densities (cheap)."""
        h = self.norm1(x)  # (B, T, C)
        if self.ltm_attn is not None and memory.config.sticky and not memory.ltm.is_empty:
            memory.density = self.ltm_attn.density(self._query(h), memory.ltm.coefficients)
        memory.push(h)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, C = t.shape
        return t.view(B, T, self.attn.n_heads, C // self.attn.n_heads).transpose(1, 2)  # (B, H, T, D)

    def _query(self, h: torch.Tensor) -> torch.Tensor:
        return self._heads(F.linear(h, self.attn.qkv.weight[: h.shape[-1]]))  # (B, H, T, D): the course's W_q


class InfiniteFormer(nn.Module):
    """embed -> InfiniteFormerBlocks -> norm -> head, fed one segment at a time.

    memories = model.new_memories(); then model(ids (B, T), memories) -> logits (B, T, V) for each
    segment in turn; the memories carry the past between calls (and must not be shared by streams).
    """

    def __init__(self, config: ModelConfig, memory: MemoryConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig) or not isinstance(memory, MemoryConfig):
            raise TypeError("InfiniteFormer needs a ModelConfig and a MemoryConfig")
        self.config, self.memory = config, memory
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(InfiniteFormerBlock(config, memory) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=False)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied, as MiniLLM
        self.apply(MiniLLM._init_weights)

    def new_memories(self, generator: torch.Generator | None = None) -> list[LayerMemory]:
        """Empty memories for a new batch of streams; `generator` seeds sticky sampling."""
        return [LayerMemory(self.memory, generator) for _ in self.blocks]

    def forward(
        self, ids: torch.Tensor, memories: list[LayerMemory], return_logits: bool = True
    ) -> torch.Tensor | None:
        """Logits (B, T, V) of the segment ids (B, T) after everything the memories hold.

        return_logits=False only updates the memories (and returns None): the last layer's output
        is then never computed, which halves the cost of reading a stream with a 2-layer model.
        """
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"ids must be a LongTensor (B, T), got {getattr(ids, 'shape', type(ids))}")
        if len(memories) != len(self.blocks):
            raise ValueError(f"need one LayerMemory per layer ({len(self.blocks)}), got {len(memories)}")
        # every layer's memory changes in its layer: an interrupted forward puts them all back,
        # and the sticky samples' generators too (a re-run draws what the first run would have)
        changing = [*memories, *(m.ltm for m in memories if m.ltm is not None)]
        undo_attrs = remember(*changing)
        generators = [(g, g.get_state()) for g in {m.generator for m in memories if m.generator is not None}]

        def undo() -> None:
            undo_attrs()
            for generator, state in generators:
                generator.set_state(state)

        with all_or_nothing("a forward", *changing, undo=undo):
            x = self.embed(ids)  # (B, T, C)
            for block, memory in zip(self.blocks[:-1], memories, strict=False):
                x = block(x, memory)
            if not return_logits:
                return self.blocks[-1].remember(x, memories[-1])
            x = self.blocks[-1](x, memories[-1])
            return self.head(self.norm(x))  # (B, T, V)
