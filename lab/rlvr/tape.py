"""The policy gradient through the sampler's own forward: no second forward of the completions.

An on-policy RL step (one update per batch, no dropout) scores its samples under the very parameters that drew
them, so the scoring forward recomputes what the sampler's decode steps already computed. :class:`DecodeTape`
keeps those activations while :func:`lab.rlvr.model.sample` runs (the LayerNorm inputs and the qkv and first-MLP
outputs of each decode step, its live rows and its log-probabilities); :func:`backward_through_tape` then
takes the loss's gradient with respect to the sampled log-probabilities, g_t = dL / d log pi(o_t | q, o_<t), and
carries it down the network by hand, all the completions' positions of a layer in one packed matrix (N, width):

* output: d z = g (e_{o_t} - pi) (+ g_mean (1_A / |A| - pi) for the vocabulary mean of log pi, ROVER), with
  z the logits and pi = softmax over the actions A (PAD excluded); d W_out = dz^T s, d s = dz W_out;
* linear y = x W^T + b: dW = dy^T x, db = sum dy, dx = dy W; GELU and LayerNorm through ATen's own backward
  kernels. Only the matmul outputs and the LayerNorm inputs are kept: each LayerNorm's output and statistics and
  each GELU's output are recomputed (elementwise work);
* attention: the packed q, k, v placed on a (rows, heads, T, head_dim) grid behind the prompt's keys and values,
  p = softmax(q k^T / sqrt(D)) recomputed (causal), y = p v; backward dv = p^T dy, dp = dy v^T,
  ds = p (dp - rowsum(dy y)), dq = ds k / sqrt(D), dk = ds^T q / sqrt(D);
* the prompt's part (the first token's state and each layer's prompt keys/values) is handed to the autograd
  graph of :func:`lab.rlvr.model.prompt_prefix`, which holds the prompt forward.

The result equals the gradient of the same loss through :func:`lab.rlvr.model.score` (to float rounding: the
sampler's one-token steps sum in another order; ``tests/lab/test_rlvr_model.py``) and costs the backward alone: on
the T = 32 GRPO step of ``benchmarks/rlvr_throughput.py`` (one CPU thread) the step takes 15% less time than
scoring again. Valid only while the parameters are the sampler's (the first and only update of a batch: a tape
whose parameters have changed is refused) and without dropout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lab.rlvr.model import GPT, SharedPrefix, length_chunks, mean_action_log_prob
from lab.rlvr.tasks import VOCAB


class DecodeTape:
    """Activations of the sampler's decode steps, filled by ``sample(..., tape=DecodeTape())``.

    Per step t of the sampler: ``live[t]`` the original rows whose next token was drawn and ``log_probs[t]`` their
    log pi (n_t, vocab). Per forward k (the tokens of step k fed back, at prompt length + k; the sampler's
    :func:`lab.rlvr.model._decode_step` calls :meth:`record_layer` and :meth:`record_final`): each layer's two
    LayerNorm inputs and its qkv and first MLP outputs, and the final LayerNorm's input, each (n_{k+1}, features)
    for the rows live at step k + 1 (:meth:`packed` joins the forwards).
    """

    def __init__(self) -> None:
        self.live: list[torch.Tensor] = []
        self.log_probs: list[torch.Tensor] = []
        self.saved: dict[str, list[torch.Tensor]] = {}
        self.model: GPT | None = None
        self.prefix: SharedPrefix | None = None
        self.tokens: torch.Tensor | None = None
        self._versions: list[int] = []
        self._spent = False

    def record_step(self, live: torch.Tensor, log_probs: torch.Tensor) -> None:
        self.live.append(live.clone())  # the sampler reorders its live tensor in place
        self.log_probs.append(log_probs)

    def begin(self, model: GPT, prefix: SharedPrefix, tokens: torch.Tensor) -> None:
        """Called by the sampler before its decode loop (which fills ``tokens`` after the ``prefix``); the
        parameters' versions are noted, so a backward after an update is refused."""
        if self.model is not None:
            raise ValueError("tape: expected a fresh DecodeTape (one per sample call)")
        if model.training and model.config.dropout > 0:
            raise ValueError("tape: dropout is on (model.train()); the tape's backward assumes model.eval()")
        self.model, self.prefix, self.tokens = model, prefix, tokens
        self._versions = [parameter._version for parameter in model.parameters()]

    def record_layer(
        self, layer: int, ln_1_input: torch.Tensor, qkv: torch.Tensor, ln_2_input: torch.Tensor, fc_output: torch.Tensor
    ) -> None:
        """One decode forward's activations of block ``layer``, each (rows, features)."""
        for name, value in (("ln_1", ln_1_input), ("qkv", qkv), ("ln_2", ln_2_input), ("fc", fc_output)):
            self.saved.setdefault(f"{layer}.{name}", []).append(value)

    def record_final(self, ln_f_input: torch.Tensor) -> None:
        self.saved.setdefault("ln_f", []).append(ln_f_input)

    def check_current(self) -> None:
        """Refuse a tape that was never filled or whose model has been updated since (its activations are stale)."""
        if self.model is None or not self.live:
            raise ValueError("tape: expected a DecodeTape filled by lab.rlvr.model.sample(..., tape=)")
        if [parameter._version for parameter in self.model.parameters()] != self._versions:
            raise ValueError("tape: the model's parameters changed since sampling; score the samples again instead")
        if self._spent:
            raise ValueError("tape: its backward has run already (one backward per sample call)")

    def packed(self, name: str) -> torch.Tensor:
        """The activation ``name`` of every forward, (N, width) in the order of the packed positions."""
        pieces = self.saved[name]
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


def _accumulate(parameter: nn.Parameter, gradient: torch.Tensor) -> None:
    if not parameter.requires_grad:
        return
    if parameter.grad is None:
        parameter.grad = gradient  # a fresh tensor of this backward's
    else:
        parameter.grad.add_(gradient)


def _linear_backward(linear: nn.Linear, inputs: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """dW = dy^T x, db = sum_rows dy accumulated into ``linear``; returns dx = dy W."""
    _accumulate(linear.weight, grad_out.T @ inputs)
    if linear.bias is not None:
        _accumulate(linear.bias, grad_out.sum(0))
    return grad_out @ linear.weight


class _LayerNorm:
    """A LayerNorm's output recomputed from its saved input, with the statistics its backward needs."""

    def __init__(self, norm: nn.LayerNorm, inputs: torch.Tensor) -> None:
        self.norm, self.inputs = norm, inputs
        self.output, self._mean, self._rstd = torch.ops.aten.native_layer_norm(
            inputs, norm.normalized_shape, norm.weight, norm.bias, norm.eps
        )

    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        """Accumulates the affine parameters' gradients; returns d input."""
        norm = self.norm
        grad_in, grad_weight, grad_bias = torch.ops.aten.native_layer_norm_backward(
            grad_out,
            self.inputs,
            norm.normalized_shape,
            self._mean,
            self._rstd,
            norm.weight,
            norm.bias,
            [True, norm.weight.requires_grad, norm.bias.requires_grad],
        )
        _accumulate(norm.weight, grad_weight)
        _accumulate(norm.bias, grad_bias)
        return grad_in


class _AttentionChunks:
    """Where the packed positions sit on attention grids: the rows sorted by their number of fed positions and cut
    into chunks of similar length (:func:`lab.rlvr.model.length_chunks`), each chunk a (rows, heads, slots,
    head_dim) grid as wide as its longest row, so little of a grid is padding."""

    def __init__(self, fed_rows: torch.Tensor, slots: torch.Tensor, n_rows: int, group_size: int) -> None:
        counts = torch.bincount(fed_rows, minlength=n_rows)
        order = counts.argsort(descending=True, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n_rows, device=order.device)
        position_rank = rank[fed_rows]
        widths = [width for width in counts[order].tolist() if width]
        self.chunks = []
        for start, stop, width in length_chunks(widths):
            members = ((position_rank >= start) & (position_rank < stop)).nonzero().squeeze(1)
            place = (position_rank[members] - start, slots[members])
            self.chunks.append((order[start:stop] // group_size, members, place, width))


class _PackedAttention:
    """One layer's causal attention for the packed completion positions, recomputed on the grids of
    :class:`_AttentionChunks` behind each row's prompt keys and values (slot i of a row attends to its prompt and
    its slots 0..i), and its backward in closed form (module docstring)."""

    def __init__(
        self, qkv: torch.Tensor, prompt_keys: torch.Tensor, prompt_values: torch.Tensor, layout: _AttentionChunks
    ) -> None:
        self.prompt_shape = prompt_keys.shape
        _, n_head, prompt_length, head_dim = prompt_keys.shape
        self.scale = 1.0 / math.sqrt(head_dim)
        self.y = qkv.new_empty(qkv.shape[0], qkv.shape[1] // 3)
        self.grids = []
        for prompt_of_row, members, place, width in layout.chunks:
            grid = qkv.new_zeros(prompt_of_row.shape[0], width, qkv.shape[1])
            grid[place] = qkv[members]
            q, k, v = grid.view(*grid.shape[:2], 3, n_head, head_dim).permute(2, 0, 3, 1, 4)
            keys = torch.cat([prompt_keys.index_select(0, prompt_of_row), k], dim=2)
            values = torch.cat([prompt_values.index_select(0, prompt_of_row), v], dim=2)
            allowed = torch.ones(width, prompt_length + width, dtype=torch.bool, device=qkv.device)
            scores = (q @ keys.transpose(2, 3)).mul_(self.scale)
            probs = torch.softmax(scores.masked_fill_(~allowed.tril(diagonal=prompt_length), -math.inf), dim=-1)
            y = probs @ values
            self.y[members] = y.transpose(1, 2)[place].flatten(1)
            self.grids.append((prompt_of_row, members, place, q, keys, values, probs, y))

    def backward(self, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """d qkv (N, 3 width) of the packed positions and d keys, d values of the prompts (P, heads, Lp, D)."""
        grad_qkv = grad_y.new_zeros(grad_y.shape[0], 3 * grad_y.shape[1])
        grad_prompt_keys, grad_prompt_values = grad_y.new_zeros(self.prompt_shape), grad_y.new_zeros(self.prompt_shape)
        prompt_length = self.prompt_shape[2]
        for prompt_of_row, members, place, q, keys, values, probs, y in self.grids:
            grad_grid = torch.zeros_like(y.transpose(1, 2))
            grad_grid[place] = grad_y[members].view(members.shape[0], y.shape[1], -1)
            grad_grid = grad_grid.transpose(1, 2)
            grad_values = probs.transpose(2, 3) @ grad_grid
            grad_probs = grad_grid @ values.transpose(2, 3)
            grad_scores = probs * (grad_probs - (grad_grid * y).sum(-1, keepdim=True))
            grad_scores.mul_(self.scale)
            grad_keys = grad_scores.transpose(2, 3) @ q
            grad_prompt_keys.index_add_(0, prompt_of_row, grad_keys[:, :, :prompt_length])
            grad_prompt_values.index_add_(0, prompt_of_row, grad_values[:, :, :prompt_length])
            completion = (grad_scores @ keys, grad_keys[:, :, prompt_length:], grad_values[:, :, prompt_length:])
            grad_qkv[members] = torch.cat([grad.transpose(1, 2)[place].flatten(1) for grad in completion], dim=1)
        return grad_qkv, grad_prompt_keys, grad_prompt_values


def _output_states(tape: DecodeTape) -> tuple[torch.Tensor, _LayerNorm | None]:
    """The output layer's inputs at every sampled position (N, width), step-major as :func:`_positions`: the
    prompts' last states for the first step, then the final LayerNorm recomputed on each forward's saved input
    (returned too, for its backward; None when no forward ran)."""
    prefix, first_rows = tape.prefix, tape.live[0]
    group_size = first_rows.shape[0] // prefix.prompt_count
    first = prefix.last_states[:, 0].detach().index_select(0, first_rows // group_size)
    if len(tape.live) == 1:
        return first, None
    final_norm = _LayerNorm(tape.model.ln_f, tape.packed("ln_f"))
    return torch.cat([first, final_norm.output]), final_norm


def _positions(tape: DecodeTape) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, step) of every sampled token, step-major: the first step's rows, then each forward's."""
    rows = torch.cat(tape.live)
    steps = torch.cat([torch.full_like(live, step) for step, live in enumerate(tape.live)])
    return rows, steps


@torch.no_grad()
def backward_through_tape(
    tape: DecodeTape, grad_logp: torch.Tensor, grad_mean_logp: torch.Tensor | None = None
) -> None:
    """Accumulate into the parameters' ``.grad`` the gradient of a loss L that depends on the policy through
    logp = log pi(o_t | q, o_<t) (B, T) of the tokens the ``tape`` recorded (and through the vocabulary mean of
    log pi): ``grad_logp`` = dL/dlogp, ``grad_mean_logp`` = dL/dmean_logp or None (module docstring). Positions
    past a row's last token are ignored. The prompt's part of the gradient runs through the graph of the tape's
    prefix (its one backward), so the prefix must have been made by :func:`lab.rlvr.model.prompt_prefix` with
    grad enabled."""
    tape.check_current()
    model, prefix = tape.model, tape.prefix
    n_rows = tape.live[0].shape[0]
    for name, gradient in (("grad_logp", grad_logp), ("grad_mean_logp", grad_mean_logp)):
        if gradient is not None and (gradient.shape[0] != n_rows or gradient.shape[1] < len(tape.live)):
            raise ValueError(
                f"{name}: expected ({n_rows}, >= {len(tape.live)}) for the tape's rows and steps, got "
                f"{tuple(gradient.shape)}"
            )
    if not prefix.last_states.requires_grad:
        raise ValueError("tape: its prefix has no graph; pass sample a prompt_prefix made with grad enabled")
    tokens = tape.tokens
    output_weight = model.lm_head.weight
    rows, steps = _positions(tape)
    probs = torch.cat(tape.log_probs).to(output_weight.dtype).exp()
    gain = grad_logp[rows, steps].to(probs.dtype)
    grad_logits = probs * -gain[:, None]  # dz = g (e_o - pi), pi = 0 on PAD
    grad_logits[torch.arange(rows.shape[0], device=rows.device), tokens[rows, steps]] += gain
    if grad_mean_logp is not None:
        mean_gain = grad_mean_logp[rows, steps].to(probs.dtype)[:, None]
        is_action = (torch.arange(probs.shape[1], device=probs.device) != VOCAB.pad_id).to(probs.dtype)
        grad_logits += mean_gain * (is_action / (probs.shape[1] - 1) - probs)

    group_size = n_rows // prefix.prompt_count
    prompt_of_first = tape.live[0] // group_size
    forwards = len(tape.live) - 1
    states, final_norm = _output_states(tape)
    _accumulate(output_weight, grad_logits.T @ states)
    grad_states = grad_logits @ output_weight
    grad_last = torch.zeros_like(prefix.last_states[:, 0]).index_add_(0, prompt_of_first, grad_states[:n_rows])
    ends, grads = [prefix.last_states], [grad_last[:, None]]  # to the prompt forward's graph
    if forwards:
        fed_rows, slots = rows[n_rows:], steps[n_rows:] - 1  # forward k fed step k's token, at slot k
        grad_h = final_norm.backward(grad_states[n_rows:])
        layout = _AttentionChunks(fed_rows, slots, n_rows, group_size)
        for layer in reversed(range(len(model.blocks))):
            block, saved = model.blocks[layer], f"{layer}."
            norm_1, norm_2 = (
                _LayerNorm(block.ln_1, tape.packed(saved + "ln_1")),
                _LayerNorm(block.ln_2, tape.packed(saved + "ln_2")),
            )
            fc_out = tape.packed(saved + "fc")
            grad_gelu = _linear_backward(block.mlp[2], F.gelu(fc_out), grad_h)
            grad_fc = torch.ops.aten.gelu_backward(grad_gelu, fc_out, approximate="none")
            grad_mid = grad_h + norm_2.backward(_linear_backward(block.mlp[0], norm_2.output, grad_fc))
            attention = _PackedAttention(
                tape.packed(saved + "qkv"), prefix.keys[layer].detach(), prefix.values[layer].detach(), layout
            )
            grad_y = _linear_backward(block.attn.proj, attention.y, grad_mid)
            grad_qkv, grad_prompt_keys, grad_prompt_values = attention.backward(grad_y)
            ends += [prefix.keys[layer], prefix.values[layer]]
            grads += [grad_prompt_keys, grad_prompt_values]
            grad_h = grad_mid + norm_1.backward(_linear_backward(block.attn.qkv, norm_1.output, grad_qkv))
        fed_tokens = tokens[fed_rows, slots]
        _accumulate(model.wte.weight, torch.zeros_like(model.wte.weight).index_add_(0, fed_tokens, grad_h))
        positions = slots + prefix.prompt_length
        _accumulate(model.wpe.weight, torch.zeros_like(model.wpe.weight).index_add_(0, positions, grad_h))
    tape._spent = True  # the prefix's graph is freed by this backward
    with torch.enable_grad():
        torch.autograd.backward(ends, grads)


def _on_positions(tape: DecodeTape, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``values`` (N, ...) of the step-major sampled positions placed on a (B, T, ...) grid, 0 elsewhere."""
    rows, steps = _positions(tape)
    grid = values.new_zeros(*shape, *values.shape[1:])
    grid[rows, steps] = values
    return grid


@torch.no_grad()
def tape_mean_logp(tape: DecodeTape, shape: tuple[int, int]) -> torch.Tensor:
    """The vocabulary mean of log pi (B, T) at every sampled position (0 elsewhere), from the tape's steps."""
    return _on_positions(tape, mean_action_log_prob(torch.cat(tape.log_probs)), shape)


@torch.no_grad()
def tape_states(tape: DecodeTape, shape: tuple[int, int]) -> torch.Tensor:
    """The final-LayerNorm states (B, T, width) at every sampled position (0 elsewhere), without graph: h_t is the
    state whose logits give pi(o_t | q, o_<t) (a value head's input)."""
    tape.check_current()
    return _on_positions(tape, _output_states(tape)[0], shape)


def policy_leaves(
    tape: DecodeTape, sampled_logp: torch.Tensor, *, with_mean_logp: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sampled tokens' log pi (``Samples.logp``: the sampler's own) and, with ``with_mean_logp``, the vocabulary
    mean of log pi, as autograd leaves. Build the loss on them, call its ``backward()``, then
    :func:`backward_from_leaves`: together, the loss's gradient without a scoring forward."""
    logp = sampled_logp.detach().clone().requires_grad_()
    return logp, tape_mean_logp(tape, logp.shape).requires_grad_() if with_mean_logp else None


def backward_from_leaves(tape: DecodeTape, logp: torch.Tensor, mean_logp: torch.Tensor | None = None) -> None:
    """:func:`backward_through_tape` with the gradients the loss left on the :func:`policy_leaves` (zeros for a
    leaf it did not read)."""
    grad_logp = torch.zeros_like(logp) if logp.grad is None else logp.grad
    backward_through_tape(tape, grad_logp, None if mean_logp is None else mean_logp.grad)
