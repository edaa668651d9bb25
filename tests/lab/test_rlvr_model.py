"""The tiny GPT: the KV-cache group sampler matches a no-cache reference, records the untempered log-probs that
``score`` recomputes, prefills each prompt once (one prompt forward can serve sampling and the gradient), stops
rows at EOS and reproduces from its seed; pretraining lowers
the loss from ln(number of actions) and a killed-then-resumed run ends bit-identical to an uninterrupted one."""

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lab.convex_relu_torch import torch_threads
from lab.rlvr.model import (
    GPT,
    GPTConfig,
    KVCache,
    _decode_attention_kernel,
    _decode_step,
    _serial_cpu_decode,
    completion_states,
    log_policy,
    prefill,
    prompt_prefix,
    sample,
    score,
)
from lab.rlvr.pretrain import cached_base_model, load_checkpoint, pretrain, success_rates
from lab.rlvr.tape import DecodeTape, backward_through_tape, tape_mean_logp, tape_states
from lab.rlvr.tasks import VOCAB, CountdownLite, pretraining_corpus

TASK = CountdownLite()
TINY = GPTConfig(vocab_size=VOCAB.size, block_size=15, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def sharp_model() -> GPT:
    """A random GPT with weights scaled up (so its outputs depend on the context) and the EOS logit raised by 3
    (so rows finish at different steps)."""
    model = GPT(TINY, seed=1).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                parameter.mul_(10)
        eos = model.wte.weight[VOCAB.eos_id]
        model.ln_f.bias += 3.0 * eos / eos.dot(eos)
    return model


def prompt_batch(n: int, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(VOCAB.encode_batch(TASK.sample_prompts(n, seed, "test")))


def reference_log_probs(model, prompts, completions, mask):
    """log pi of each completion token from one full forward of its own row (no cache, no shared prefix)."""
    group = completions.shape[0] // prompts.shape[0]
    targets = completions.masked_fill(mask == 0, VOCAB.eos_id)
    rows = torch.cat([prompts.repeat_interleave(group, dim=0), targets], dim=1)
    log_probs = log_policy(model(rows[:, :-1]))[:, prompts.shape[1] - 1 :]
    return log_probs, log_probs.gather(2, targets[..., None]).squeeze(2) * mask


def test_greedy_kv_cache_sampling_equals_a_no_cache_reference():
    model, prompts = sharp_model(), prompt_batch(12)
    samples = sample(model, prompts, 2, 6, temperature=0, generator=0)
    lengths = set()
    for row in range(samples.tokens.shape[0]):
        ids, completion = prompts[row // 2].tolist(), []
        with torch.no_grad():
            while len(completion) < 6 and VOCAB.eos_id not in completion:
                completion.append(int(log_policy(model(torch.tensor([ids + completion])))[0, -1].argmax()))
        length = len(completion)
        lengths.add(length)
        assert samples.tokens[row, :length].tolist() == completion
        assert int(samples.lengths[row]) == length
    assert len(lengths) >= 3  # rows finished at different steps: the compacted cache was exercised


def test_the_functional_decode_step_equals_the_module_forward_through_the_cache():
    """The sampler's one-token step (functional ops) gives the logits of GPT.forward on the same cache; a model
    in train mode with dropout samples through GPT.forward, and a tape refuses it."""
    model, prompts = sharp_model(), prompt_batch(3)
    with torch.no_grad():
        (functional_cache, logits), (module_cache, _) = prefill(model, prompts, 2), prefill(model, prompts, 2)
        for _ in range(3):
            tokens = log_policy(logits).argmax(dim=-1)
            logits = _decode_step(model, tokens, functional_cache, None)
            expected = model(tokens[:, None], module_cache)[:, -1]
            torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    assert functional_cache.length == module_cache.length == prompts.shape[1] + 3
    noisy = GPT(GPTConfig(vocab_size=VOCAB.size, block_size=15, n_layer=2, n_head=2, n_embd=32, dropout=0.5)).train()
    assert sample(noisy, prompts, 2, 4, generator=0).tokens.shape[0] == 6
    with pytest.raises(ValueError, match="tape: dropout is on"):
        sample(noisy, prompts, 2, 4, generator=0, tape=DecodeTape())


def test_recorded_log_probs_are_the_untempered_policy_and_equal_score():
    model, prompts = sharp_model(), prompt_batch(6)
    samples = sample(model, prompts, 4, 6, temperature=0.7, top_k=5, generator=3)
    logp, mean_logp = score(model, prompts, samples.tokens, samples.mask, with_mean_logp=True)
    np.testing.assert_allclose(samples.logp.numpy(), logp.detach().numpy(), rtol=0, atol=1e-5)
    log_probs, reference = reference_log_probs(model, prompts, samples.tokens, samples.mask)
    np.testing.assert_allclose(logp.detach().numpy(), reference.detach().numpy(), rtol=0, atol=1e-5)
    # ROVER's uniform-policy value: mean over the 17 actions of log pi = mean(z) - logsumexp(z), PAD left out
    logits = model(torch.cat([prompts.repeat_interleave(4, 0), samples.tokens], 1)[:, :-1])[:, prompts.shape[1] - 1 :]
    actions = torch.cat([logits[..., : VOCAB.pad_id], logits[..., VOCAB.pad_id + 1 :]], dim=-1)
    uniform_value = (actions.mean(-1) - torch.logsumexp(actions, -1)) * samples.mask
    np.testing.assert_allclose(mean_logp.detach().numpy(), uniform_value.detach().numpy(), rtol=0, atol=1e-5)
    assert torch.all(torch.isneginf(log_probs[..., VOCAB.pad_id]))  # PAD is never an action


def test_score_shares_the_prompt_forward_with_the_same_gradient_as_per_row_scoring():
    model = GPT(TINY, seed=4)
    prompts = prompt_batch(3, seed=1)
    samples = sample(sharp_model(), prompts, 4, 6, generator=5)
    weights = torch.randn(samples.tokens.shape, generator=torch.Generator().manual_seed(0))
    logp, _ = score(model, prompts, samples.tokens, samples.mask)
    shared = torch.autograd.grad((weights * logp).sum(), list(model.parameters()))
    _, reference = reference_log_probs(model, prompts, samples.tokens, samples.mask)
    per_row = torch.autograd.grad((weights * reference).sum(), list(model.parameters()))
    for ours, theirs in zip(shared, per_row, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-6)


def test_prefill_runs_each_prompt_once_and_matches_a_per_row_prefill():
    model, prompts = sharp_model(), prompt_batch(5)
    rows_seen = []
    hook = model.wte.register_forward_hook(lambda module, inputs, output: rows_seen.append(inputs[0].shape[0]))
    with torch.no_grad():
        cache, logits = prefill(model, prompts, 3, capacity=14)
        hook.remove()
        per_row_cache, per_row_logits = prefill(model, prompts.repeat_interleave(3, dim=0), 1, capacity=14)
    assert rows_seen == [5] and cache.n_rows == 15 and cache.keys.shape == (15, 2, 2, 14, 16)
    np.testing.assert_allclose(logits.numpy(), per_row_logits.numpy(), rtol=0, atol=1e-5)
    for ours, theirs in [(cache.keys, per_row_cache.keys), (cache.values, per_row_cache.values)]:
        np.testing.assert_allclose(ours[:, :, :, :9].numpy(), theirs[:, :, :, :9].numpy(), rtol=0, atol=1e-6)
    assert cache.length == per_row_cache.length == 9  # the next forward writes and reads from position 9 on


def test_one_prompt_forward_serves_sampling_and_the_gradient():
    model, prompts = sharp_model(), prompt_batch(4)
    weights = torch.randn(12, 6, generator=torch.Generator().manual_seed(0))
    fresh = sample(model, prompts, 3, 6, generator=5)
    fresh_logp, _ = score(model, prompts, fresh.tokens, fresh.mask)
    fresh_gradient = torch.autograd.grad((weights[:, : fresh_logp.shape[1]] * fresh_logp).sum(), model.parameters())
    prompt_rows = []
    hook = model.wte.register_forward_hook(lambda module, inputs, output: prompt_rows.append(inputs[0].shape))
    prefix = prompt_prefix(model, prompts)
    shared = sample(model, prompts, 3, 6, generator=5, prefix=prefix)
    logp, _ = score(model, prompts, shared.tokens, shared.mask, prefix=prefix)
    hook.remove()
    assert [shape for shape in prompt_rows if shape[1] == prompts.shape[1]] == [prompts.shape]  # the prompts ran once
    assert torch.equal(shared.tokens, fresh.tokens) and torch.equal(shared.logp, fresh.logp)
    torch.testing.assert_close(logp, fresh_logp, rtol=0, atol=1e-6)
    gradient = torch.autograd.grad((weights[:, : logp.shape[1]] * logp).sum(), model.parameters())
    for ours, theirs in zip(gradient, fresh_gradient, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_prefix_must_come_from_the_same_prompts_and_model_shape():
    model, prompts = sharp_model(), prompt_batch(2)
    completions, mask = torch.full((4, 3), VOCAB.eos_id), torch.ones(4, 3)
    with pytest.raises(ValueError, match="prefix: it was computed for other prompts"):
        score(model, prompts, completions, mask, prefix=prompt_prefix(model, prompt_batch(2, seed=1)))
    with pytest.raises(TypeError, match="prefix"):
        sample(model, prompts, 2, 3, generator=0, prefix=prompts)
    wider = GPT(GPTConfig(vocab_size=VOCAB.size, block_size=15, n_layer=2, n_head=2, n_embd=64))
    with pytest.raises(ValueError, match="prefix: expected 2 layers"):
        score(model, prompts, completions, mask, prefix=prompt_prefix(wider, prompts))


@pytest.mark.parametrize("max_new_tokens", [1, 6])
def test_the_gradient_through_the_sampler_tape_equals_the_scoring_gradient(max_new_tokens):
    """dL/dlogp and dL/dmean_logp carried down the sampler's own activations give the gradient that the same loss
    gets through score's second forward. max_new_tokens=1: no decode forward, the prompt's part alone."""
    model, prompts = sharp_model(), prompt_batch(4)
    prefix, tape = prompt_prefix(model, prompts), DecodeTape()
    samples = sample(model, prompts, 3, max_new_tokens, temperature=1.5, generator=5, prefix=prefix, tape=tape)
    if max_new_tokens > 1:  # rows of every length, the longest cut at the budget
        assert samples.lengths.min() == 1 and samples.lengths.max() == max_new_tokens and samples.mask[:, -1].any()
    generator = torch.Generator().manual_seed(1)
    weights, mean_weights = (torch.randn(samples.tokens.shape, generator=generator) for _ in range(2))
    logp, mean_logp = score(model, prompts, samples.tokens, samples.mask, with_mean_logp=True, prefix=prefix)
    torch.testing.assert_close(samples.logp, logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(tape_mean_logp(tape, samples.tokens.shape), mean_logp, rtol=0, atol=1e-5)
    states = completion_states(model, prompts, samples.tokens, samples.mask, prefix=prefix).detach()
    torch.testing.assert_close(
        tape_states(tape, samples.tokens.shape), states * samples.mask[..., None], atol=1e-5, rtol=0
    )
    loss = (weights * logp + mean_weights * mean_logp).sum()
    expected = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    backward_through_tape(tape, weights, mean_weights)  # off-mask weights are never read
    for (name, parameter), gradient in zip(model.named_parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, gradient, rtol=1e-5, atol=1e-5, msg=name)


def test_a_tape_is_used_once_on_the_parameters_it_recorded():
    model, prompts = sharp_model(), prompt_batch(2)
    tape = DecodeTape()
    samples = sample(model, prompts, 2, 4, generator=0, tape=tape)
    with pytest.raises(ValueError, match="tape: expected a fresh DecodeTape"):
        sample(model, prompts, 2, 4, generator=0, tape=tape)
    with pytest.raises(ValueError, match="tape: its prefix has no graph"):  # sample made its own, without grad
        backward_through_tape(tape, torch.ones_like(samples.logp))
    with pytest.raises(ValueError, match="tape: expected a DecodeTape filled"):
        backward_through_tape(DecodeTape(), torch.ones_like(samples.logp))
    tape = DecodeTape()
    samples = sample(model, prompts, 2, 4, generator=0, prefix=prompt_prefix(model, prompts), tape=tape)
    with pytest.raises(ValueError, match=r"grad_logp: expected \(4, >= "):
        backward_through_tape(tape, torch.ones(3, samples.logp.shape[1]))
    backward_through_tape(tape, torch.ones_like(samples.logp))
    with pytest.raises(ValueError, match="tape: its backward has run already"):
        backward_through_tape(tape, torch.ones_like(samples.logp))
    with torch.no_grad():
        model.ln_f.bias.add_(1.0)
    with pytest.raises(ValueError, match="tape: the model's parameters changed since sampling"):
        backward_through_tape(tape, torch.ones_like(samples.logp))


def test_the_decode_kernel_attends_like_sdpa():
    generator = torch.Generator().manual_seed(0)
    cache = KVCache(TINY, 5, capacity=9)
    cache.keys.normal_(generator=generator)
    cache.values.normal_(generator=generator)
    cache.length = 6
    q, k, v = (3 * torch.randn(5, 2, 1, 16, generator=generator) for _ in range(3))
    with torch.no_grad():
        assert _serial_cpu_decode(q, 0.0)
        out = cache.attend(1, q, k, v)
    keys, values = cache.keys[:, 1, :, :7], cache.values[:, 1, :, :7]
    assert torch.equal(keys[:, :, 6:], k) and torch.equal(values[:, :, 6:], v)  # this step's K/V were written
    expected = F.scaled_dot_product_attention(q, keys, values)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    direct = torch.empty(5, 2, 16)
    _decode_attention_kernel(q[:, :, 0].numpy(), cache.keys.numpy(), cache.values.numpy(), 1, 3, direct.numpy())
    torch.testing.assert_close(direct, F.scaled_dot_product_attention(q, keys[:, :, :3], values[:, :, :3])[:, :, 0])
    assert not _serial_cpu_decode(q.double(), 0.0) and not _serial_cpu_decode(q, 0.1)  # those go to SDPA


def test_masks_stop_at_eos_and_seeds_reproduce():
    model, prompts = sharp_model(), prompt_batch(8)
    samples = sample(model, prompts, 8, 6, generator=11)
    tokens, mask, lengths = samples.tokens, samples.mask, samples.lengths
    assert tokens.shape[1] == int(lengths.max()) and set(lengths.tolist()) > {1, 6}
    for row in range(tokens.shape[0]):
        length = int(lengths[row])
        assert mask[row].tolist() == [1.0] * length + [0.0] * (tokens.shape[1] - length)
        assert VOCAB.eos_id not in tokens[row, : length - 1].tolist()  # no EOS before the last real token
        assert int(tokens[row, length - 1]) == VOCAB.eos_id or length == 6  # ends at EOS or at max_new_tokens
        assert set(tokens[row, length:].tolist()) <= {VOCAB.pad_id} and not samples.logp[row, length:].any()
    assert torch.all(samples.logp[mask == 1] < 0)
    again = sample(model, prompts, 8, 6, generator=torch.Generator().manual_seed(11))
    other = sample(model, prompts, 8, 6, generator=12)
    assert torch.equal(again.tokens, tokens) and torch.equal(again.logp, samples.logp)
    assert not torch.equal(other.tokens[:, :1], tokens[:, :1])


def test_first_token_frequencies_follow_the_tempered_top_k_distribution():
    model, prompt = sharp_model(), prompt_batch(1, seed=2)
    draws = 20000
    samples = sample(model, prompt, draws, 1, temperature=0.7, top_k=4, generator=0)
    with torch.no_grad():
        log_probs = log_policy(model(prompt))[0, -1]
    top = log_probs.topk(4).indices
    expected = torch.zeros_like(log_probs)
    expected[top] = torch.softmax(log_probs[top] / 0.7, dim=0)
    frequency = torch.bincount(samples.tokens[:, 0], minlength=VOCAB.size).double() / draws
    sigma = torch.sqrt(expected.double() * (1 - expected.double()) / draws)
    assert torch.all((frequency - expected.double()).abs() <= 4 * sigma + 1e-12)
    assert torch.allclose(samples.logp[:, 0], log_probs[samples.tokens[:, 0]])  # untempered pi at temperature 1


def test_the_sampler_checks_its_arguments():
    model, prompts = sharp_model(), prompt_batch(2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(model, prompts, 2, 8, generator=0)  # 9 + 8 - 1 > block_size 15
    with pytest.raises(ValueError, match="temperature"):
        sample(model, prompts, 2, 6, temperature=-1.0, generator=0)
    with pytest.raises(ValueError, match="prompts"):
        sample(model, prompts.int(), 2, 6, generator=0)
    with pytest.raises(TypeError, match="generator"):
        sample(model, prompts, 2, 6, generator=None)
    with pytest.raises(ValueError, match="completions"):
        score(model, prompts, torch.zeros((3, 4), dtype=torch.int64), torch.ones(3, 4))
    with pytest.raises(ValueError, match="positions"):
        KVCache(TINY, 2, capacity=4).attend(0, *[torch.zeros(2, 2, 5, 16)] * 3)


def test_pretraining_loss_is_the_answer_tokens_cross_entropy_and_falls():
    result = pretrain(TASK, TINY, steps=60, batch_size=32, lr=3e-3, warmup_steps=10, seed=0, num_threads=1)
    loss = result.history["loss"]
    assert result.step == 60 and len(loss) == 60 and not result.converged
    # step 0 by hand: the batch drawn with numpy seed (seed, step), the untrained model, cross-entropy over the 17
    # actions (PAD column dropped) on the answer characters and EOS only
    examples = list(pretraining_corpus(TASK, 32, np.random.default_rng([0, 0])))
    initial = GPT(TINY, seed=0)
    total, count = 0.0, 0
    with torch.no_grad():
        for prompt, answer in examples:
            ids = torch.tensor([VOCAB.encode(prompt + answer) + [VOCAB.eos_id]])
            logits = initial(ids[:, :-1])[0, len(prompt) - 1 :, VOCAB.pad_id + 1 :]
            targets = ids[0, len(prompt) :] - (VOCAB.pad_id + 1)
            total += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
            count += len(answer) + 1
    assert abs(loss[0] - total / count) < 1e-5
    assert abs(loss[0] - math.log(VOCAB.size - 1)) < 0.15  # close to uniform over the actions
    assert loss[-10:].mean() < 1.6 < loss[0]
    rates = success_rates(result.model, TASK, TASK.sample_prompts(8, 0, "test"), group_size=4, seed=0)
    assert rates.shape == (8,) and np.all((rates >= 0) & (rates <= 1)) and np.all(rates * 4 == np.round(rates * 4))


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_bit_identical(tmp_path):
    settings = {"steps": 12, "batch_size": 16, "lr": 3e-3, "warmup_steps": 4, "seed": 2, "num_threads": 1}
    uninterrupted = pretrain(TASK, TINY, **settings)

    path = tmp_path / "run.pt"

    def crash(state):
        if state.n_iter == 8:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        pretrain(TASK, TINY, checkpoint_path=path, checkpoint_every=5, callback=crash, **settings)
    model, meta = load_checkpoint(path)
    assert (meta["step"], meta["finished"], meta["task"], meta["seed"]) == (5, False, "countdown", 2)
    assert meta["vocab"] == list(VOCAB.tokens) and len(meta["history"]["loss"]) == 5
    resumed = pretrain(TASK, TINY, checkpoint_path=path, checkpoint_every=5, **settings)
    assert resumed.n_iter == 7 and resumed.step == 12 and "resumed from step 5" in resumed.message
    for ours, theirs in zip(resumed.model.parameters(), uninterrupted.model.parameters(), strict=True):
        assert torch.equal(ours, theirs)
    np.testing.assert_array_equal(resumed.history["loss"], uninterrupted.history["loss"])
    model, meta = load_checkpoint(path)
    assert meta["finished"] and meta["step"] == 12 and os.listdir(tmp_path) == ["run.pt"]  # no tmp file left
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), uninterrupted.model.parameters(), strict=True))
    with pytest.raises(ValueError, match="checkpoint_path"):
        pretrain(TASK, TINY, **(settings | {"seed": 3}), checkpoint_path=path)


def test_a_stopped_run_leaves_a_valid_unfinished_checkpoint_and_the_cache_trains_once(tmp_path):
    path = tmp_path / "stopped.pt"
    result = pretrain(
        TASK, TINY, steps=10, batch_size=8, seed=0, checkpoint_path=path, callback=lambda s: s.n_iter == 3
    )
    assert result.step == 3 and "stopped by callback" in result.message
    assert load_checkpoint(path)[1]["finished"] is False

    model, meta = cached_base_model("countdown", tmp_path / "cache", config=TINY, steps=3, batch_size=8, num_threads=1)
    (cached,) = (tmp_path / "cache").iterdir()
    stamp = cached.stat().st_mtime_ns
    again, meta_again = cached_base_model("countdown", tmp_path / "cache", config=TINY, steps=3, batch_size=8)
    assert cached.stat().st_mtime_ns == stamp and meta_again["finished"] and meta_again["step"] == 3
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))
