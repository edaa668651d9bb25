"""A tiny decoder-only transformer (GPT-2 shape, after nanoGPT) with group sampling and masked scoring.

1. :class:`GPT`: token + learned position embeddings, ``n_layer`` pre-LayerNorm blocks (causal self-attention
   through ``torch.nn.functional.scaled_dot_product_attention``, a 4x GELU MLP), a final LayerNorm and an output
   layer tied to the token embedding. Initialisation N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer))
   (GPT-2), drawn from a ``torch.Generator`` seeded by ``seed``.
2. The policy. PAD is never an action: pi(. | q, o_<t) = softmax over every other token of the vocabulary
   (:func:`log_policy` gives PAD log-probability -inf). Pretraining, sampling and scoring all use it.
3. :func:`sample`: the P prompts are prefilled once (P rows), their K/V written into a preallocated
   :class:`KVCache` of P*G rows (each prompt's K/V broadcast to its G consecutive rows); then one token per step for
   the live rows. A row that samples EOS is finished: its mask ends there and it leaves the cache (the cache is
   compacted in place); the loop ends when every row is finished or after ``max_new_tokens``.
   Tokens are drawn from softmax(top_k(log pi / temperature)) (``temperature=0``: argmax), but the recorded
   ``logp`` is log pi(o_t | q, o_<t) of the *untempered* policy (temperature 1, no top-k): the pi_old of
   the objectives, equal to :func:`score` of the same tokens.
4. :func:`score`: log pi(o_t | q, o_<t) of given completions in one batched pass, with the prompt computed once
   per group (:class:`SharedPrefix`), masked to 0 outside ``mask``; optionally the mean over the actions of
   log pi(a | q, o_<t) (ROVER's uniform-policy value: mean(z) - logsumexp(z) over the non-PAD logits z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from lab.rlvr.tasks import VOCAB, _check_int


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    """Number of token ids (the embedding's rows and the output layer's columns)."""
    block_size: int
    """Longest sequence (prompt + completion) the position embedding covers."""
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    """Width; a multiple of ``n_head``."""
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _check_int(getattr(self, name), name)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd: expected a multiple of n_head={self.n_head}, got {self.n_embd}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {self.dropout!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class AttentionMemory(Protocol):
    """Keys/values of earlier positions: ``length`` positions are stored; ``attend`` stores this chunk's k, v for
    ``layer`` and returns the attention output; ``advance`` is called once all layers have seen the chunk."""

    length: int

    def attend(self, layer: int, q, k, v, dropout_p: float) -> torch.Tensor: ...

    def advance(self, steps: int) -> None: ...


def _attend_past(q, keys, values, past: int, dropout_p: float) -> torch.Tensor:
    """Queries at positions past..past+T-1 attend to keys 0..past+T-1, causally."""
    steps = q.shape[2]
    if past == 0:
        return F.scaled_dot_product_attention(q, keys, values, dropout_p=dropout_p, is_causal=True)
    if steps == 1:
        return F.scaled_dot_product_attention(q, keys, values, dropout_p=dropout_p)
    allowed = torch.ones(steps, past + steps, dtype=torch.bool, device=q.device).tril(diagonal=past)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, dropout_p=dropout_p)


class KVCache:
    """Preallocated keys and values, each (batch_size, n_layer, n_head, capacity, head_dim), written in place.

    The first ``n_rows`` rows are live. A chunk of fewer rows r (r dividing n_rows) writes its K/V to the
    n_rows / r consecutive rows of each input row: the group prefill. :meth:`keep` compacts the live rows.
    """

    def __init__(self, config: GPTConfig, batch_size: int, *, capacity: int | None = None, device=None, dtype=None):
        capacity = config.block_size if capacity is None else _check_int(capacity, "capacity")
        shape = (_check_int(batch_size, "batch_size"), config.n_layer, config.n_head, capacity, config.head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.n_rows = batch_size
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def attend(self, layer: int, q, k, v, dropout_p: float = 0.0) -> torch.Tensor:
        rows, start, end = q.shape[0], self.length, self.length + q.shape[2]
        if end > self.capacity:
            raise ValueError(f"ids: {end} positions exceed the cache capacity {self.capacity}")
        if self.n_rows % rows:
            raise ValueError(f"ids: expected a number of rows dividing {self.n_rows}, got {rows}")
        group = self.n_rows // rows
        shape = (rows, group, *self.keys.shape[1:])
        self.keys[: self.n_rows].view(shape)[:, :, layer, :, start:end] = k[:, None]
        self.values[: self.n_rows].view(shape)[:, :, layer, :, start:end] = v[:, None]
        if start == 0:
            return _attend_past(q, k, v, 0, dropout_p)
        if group != 1:
            raise ValueError(f"ids: expected {self.n_rows} rows after the prefill, got {rows}")
        keys = self.keys[:rows, layer, :, :end]
        values = self.values[:rows, layer, :, :end]
        return _attend_past(q, keys, values, start, dropout_p)

    def advance(self, steps: int) -> None:
        self.length += steps

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the live rows ``rows`` (indices, increasing), moved to the front in that order."""
        count = rows.numel()
        self.keys[:count, :, :, : self.length] = self.keys[rows, :, :, : self.length]
        self.values[:count, :, :, : self.length] = self.values[rows, :, :, : self.length]
        self.n_rows = count


class SharedPrefix:
    """Scoring memory: the first chunk (P prompts) attends causally and its K/V are kept per layer; later chunks
    (P*G rows, G consecutive rows per prompt) attend to their prompt's K/V, repeated G times, then causally to
    themselves. Gradients flow through both, so a prompt's forward and backward are computed once per group."""

    def __init__(self, group_size: int) -> None:
        self.group_size = _check_int(group_size, "group_size")
        self.length = 0
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []

    def attend(self, layer: int, q, k, v, dropout_p: float = 0.0) -> torch.Tensor:
        if self.length == 0:
            self._keys.append(k)
            self._values.append(v)
            return _attend_past(q, k, v, 0, dropout_p)
        keys = torch.cat([self._keys[layer].repeat_interleave(self.group_size, dim=0), k], dim=2)
        values = torch.cat([self._values[layer].repeat_interleave(self.group_size, dim=0), v], dim=2)
        return _attend_past(q, keys, values, self.length, dropout_p)

    def advance(self, steps: int) -> None:
        self.length += steps


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, layer: int, memory: AttentionMemory | None) -> torch.Tensor:
        batch, steps, width = x.shape
        q, k, v = (
            part.view(batch, steps, self.n_head, width // self.n_head).transpose(1, 2)
            for part in self.qkv(x).split(width, dim=2)
        )
        dropout_p = self.dropout if self.training else 0.0
        if memory is None:
            y = _attend_past(q, k, v, 0, dropout_p)
        else:
            y = memory.attend(layer, q, k, v, dropout_p)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(batch, steps, width)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, layer: int, memory: AttentionMemory | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), layer, memory)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """logits = GPT(ids): (B, T) token ids -> (B, T, vocab_size), position t predicting token t + 1."""

    def __init__(self, config: GPTConfig, *, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config: expected a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self._initialise(_check_int(seed, "seed", minimum=0))

    def _initialise(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, parameter in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(parameter)
            elif ".ln_" in name or name.startswith("ln_"):
                nn.init.ones_(parameter)
            else:
                residual = name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight")
                with torch.no_grad():
                    parameter.copy_(
                        torch.randn(parameter.shape, generator=generator) * (residual_std if residual else 0.02)
                    )

    @property
    def device(self) -> torch.device:
        return self.wte.weight.device

    def hidden(self, ids: torch.Tensor, memory: AttentionMemory | None = None) -> torch.Tensor:
        """Final-LayerNorm states (B, T, n_embd) of ``ids`` at positions memory.length .. memory.length + T - 1."""
        if ids.ndim != 2:
            raise ValueError(f"ids: expected a (B, T) tensor of token ids, got shape {tuple(ids.shape)}")
        start = 0 if memory is None else memory.length
        end = start + ids.shape[1]
        if end > self.config.block_size:
            raise ValueError(f"ids: positions up to {end} exceed block_size={self.config.block_size}")
        positions = torch.arange(start, end, device=ids.device)
        x = self.drop(self.wte(ids) + self.wpe(positions))
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, memory)
        if memory is not None:
            memory.advance(ids.shape[1])
        return self.ln_f(x)

    def forward(self, ids: torch.Tensor, memory: AttentionMemory | None = None) -> torch.Tensor:
        return self.lm_head(self.hidden(ids, memory))


def log_policy(logits: torch.Tensor) -> torch.Tensor:
    """log pi(a | context) = log_softmax over the non-PAD tokens; PAD gets -inf."""
    is_pad = torch.arange(logits.shape[-1], device=logits.device) == VOCAB.pad_id
    return torch.log_softmax(logits.masked_fill(is_pad, -math.inf), dim=-1)


def mean_action_log_prob(log_probs: torch.Tensor) -> torch.Tensor:
    """(1/|A|) sum_{a in A} log pi(a | context) over the actions A (every token but PAD)."""
    is_pad = torch.arange(log_probs.shape[-1], device=log_probs.device) == VOCAB.pad_id
    return log_probs.masked_fill(is_pad, 0.0).sum(-1) / (log_probs.shape[-1] - 1)


def _prompt_tensor(model: GPT, prompts) -> torch.Tensor:
    if not isinstance(model, GPT):
        raise TypeError(f"model: expected a GPT, got {type(model).__name__}")
    if model.config.vocab_size != VOCAB.size:
        raise ValueError(
            f"model: expected vocab_size {VOCAB.size} (lab.rlvr.tasks.VOCAB), got {model.config.vocab_size}"
        )
    prompts = torch.as_tensor(prompts, device=model.device)
    if prompts.ndim != 2 or prompts.shape[0] == 0 or prompts.shape[1] == 0 or prompts.dtype != torch.int64:
        raise ValueError(
            f"prompts: expected a non-empty (P, Lp) int64 tensor, got {prompts.dtype} {tuple(prompts.shape)}"
        )
    return prompts


def prefill(model: GPT, prompts, group_size: int, *, capacity: int | None = None) -> tuple[KVCache, torch.Tensor]:
    """Run the P prompts once; return a KVCache of P * group_size rows (row i holds prompt i // G) and the logits
    (P * G, vocab_size) of the first completion token. Call under ``torch.no_grad()``."""
    prompts = _prompt_tensor(model, prompts)
    group_size = _check_int(group_size, "group_size")
    weight = model.wte.weight
    cache = KVCache(
        model.config, prompts.shape[0] * group_size, capacity=capacity, device=weight.device, dtype=weight.dtype
    )
    last = model.lm_head(model.hidden(prompts, cache)[:, -1])
    return cache, last.repeat_interleave(group_size, dim=0)


@dataclass(frozen=True)
class Samples:
    """G completions per prompt, rows p*G .. p*G + G - 1 for prompt p; T = the longest completion.

    ``tokens`` (P*G, T) int64, PAD after EOS; ``mask`` (P*G, T) float, 1 on the completion's tokens including its
    EOS; ``logp`` (P*G, T) float, log pi(o_t | q, o_<t) of the untempered policy (temperature 1, no top-k), 0 off the
    mask; ``lengths`` (P*G,) int64, tokens per completion (= mask.sum(1)).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    logp: torch.Tensor
    lengths: torch.Tensor


def _draw(log_probs: torch.Tensor, temperature: float, top_k: int | None, generator) -> torch.Tensor:
    if temperature == 0:
        return log_probs.argmax(dim=-1)
    scaled = log_probs / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    return torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator).squeeze(1)


def _torch_generator(generator, device: torch.device) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int) or generator < 0:
        raise TypeError(f"generator: expected a torch.Generator or a non-negative int seed, got {generator!r}")
    return torch.Generator(device=device).manual_seed(generator)


@torch.no_grad()
def sample(
    model: GPT,
    prompts,
    group_size: int,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | int,
) -> Samples:
    """``group_size`` completions of at most ``max_new_tokens`` tokens for each row of ``prompts`` (P, Lp)
    (module docstring, item 3). ``generator``: a torch.Generator on the model's device, or an int seed."""
    prompts = _prompt_tensor(model, prompts)
    group_size = _check_int(group_size, "group_size")
    max_new_tokens = _check_int(max_new_tokens, "max_new_tokens")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature < math.inf:
        raise ValueError(f"temperature: expected a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None:
        _check_int(top_k, "top_k")
    capacity = prompts.shape[1] + max_new_tokens - 1  # the last sampled token is never fed back
    if capacity > model.config.block_size:
        raise ValueError(
            f"max_new_tokens: prompt length {prompts.shape[1]} + {max_new_tokens} - 1 exceeds block_size "
            f"{model.config.block_size}"
        )
    generator = _torch_generator(generator, model.device)
    cache, logits = prefill(model, prompts, group_size, capacity=capacity)
    n_rows = cache.n_rows
    tokens = torch.full((n_rows, max_new_tokens), VOCAB.pad_id, dtype=torch.int64, device=model.device)
    logp = torch.zeros((n_rows, max_new_tokens), device=model.device)
    lengths = torch.zeros(n_rows, dtype=torch.int64, device=model.device)
    live = torch.arange(n_rows, device=model.device)  # the original row of each live cache row
    for t in range(max_new_tokens):
        log_probs = log_policy(logits.float())
        chosen = _draw(log_probs, temperature, top_k, generator)
        tokens[live, t] = chosen
        logp[live, t] = log_probs.gather(1, chosen[:, None]).squeeze(1)
        lengths[live] += 1
        running = chosen != VOCAB.eos_id
        if t == max_new_tokens - 1 or not running.any():
            break
        if not running.all():
            kept = running.nonzero().squeeze(1)
            cache.keep(kept)
            live, chosen = live[kept], chosen[kept]
        logits = model(chosen[:, None], cache)[:, -1]
    width = int(lengths.max())
    mask = (torch.arange(width, device=model.device) < lengths[:, None]).float()
    return Samples(tokens=tokens[:, :width].contiguous(), mask=mask, logp=logp[:, :width].contiguous(), lengths=lengths)


def score(
    model: GPT, prompts, completions: torch.Tensor, mask: torch.Tensor, *, with_mean_logp: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) (B, T) of ``completions`` (B, T) after ``prompts`` (P, Lp), B = P * G with G
    consecutive rows per prompt, zero where ``mask`` (B, T) is 0; and, with ``with_mean_logp``, the mean over the
    actions of log pi(. | q, o_<t) (B, T), also zero off the mask. Differentiable (call under no_grad to skip the
    graph); tokens off the mask are never read."""
    prompts = _prompt_tensor(model, prompts)
    completions = torch.as_tensor(completions, device=model.device)
    mask = torch.as_tensor(mask, device=model.device)
    if completions.ndim != 2 or completions.shape[1] == 0 or completions.shape[0] % prompts.shape[0]:
        raise ValueError(
            f"completions: expected a (P*G, T) tensor for P={prompts.shape[0]} prompts, got {tuple(completions.shape)}"
        )
    if mask.shape != completions.shape:
        raise ValueError(f"mask: expected shape {tuple(completions.shape)}, got {tuple(mask.shape)}")
    group_size = completions.shape[0] // prompts.shape[0]
    targets = completions.masked_fill(mask == 0, VOCAB.eos_id)
    memory = SharedPrefix(group_size)
    first = model.lm_head(model.hidden(prompts, memory)[:, -1:]).repeat_interleave(group_size, dim=0)
    logits = torch.cat([first, model(targets[:, :-1], memory)], dim=1) if targets.shape[1] > 1 else first
    log_probs = log_policy(logits)
    weights = mask.to(log_probs.dtype)
    logp = log_probs.gather(2, targets[..., None]).squeeze(2) * weights
    mean_logp = mean_action_log_prob(log_probs) * weights if with_mean_logp else None
    return logp, mean_logp
