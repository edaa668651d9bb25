"""RLVR throughput: our GRPO step (lab.rlvr.trainer) against TRL's GRPOTrainer, and our KV-cache sampler against
Hugging Face ``generate``, on the same model, in one run (ratio = ours / reference).

1. One model, two implementations. Our tiny GPT (lab.rlvr.model, 4 layers, width 128, 4 heads, seeded random
   weights: an untrained policy, so completion lengths are natural, not forced) and a transformers
   ``GPT2LMHeadModel`` built locally from a ``GPT2Config`` of the same shape (exact GELU, no dropout) with our
   weights copied in; the table header prints max |logit difference| between the two. The tokenizer is a
   ``tokenizers`` WordLevel over our character vocabulary (one id per character, PAD and EOS as special tokens).
   Nothing is downloaded (``HF_HUB_OFFLINE=1``).
2. Same work per step on both sides: Countdown-lite, 8 prompts x G = 8 completions, the same prompts in the same
   order (step k uses our trainer's prompts of step k), at most T completion tokens (the task's 6, and 32: the
   untrained policy often writes past an answer's length, so its completions run longer there by themselves),
   sampling at temperature 1 without top-k from the policy that never emits PAD (TRL: ``suppress_tokens=[PAD]``),
   the same verifier reward, GRPO with the same loss (TRL ``loss_type="grpo"``: per-sequence token mean, then batch
   mean; ``scale_rewards="group"``; ``epsilon=0.2``), ``beta=0`` (no reference model on either side: our
   ``track_kl=False``), one update per batch (``num_iterations=1``), the same learning rate at a constant schedule,
   fused AdamW, gradient clipping at 1.0, fp32 (``bf16=False``, ``use_cpu=True``), no gradient checkpointing,
   ``disable_dropout=True``. The one difference in what is computed: TRL's log-probabilities normalise over the
   whole vocabulary, ours over the tokens other than PAD (our policy's support). How the work is organised differs
   (that is what is measured): TRL generates P*G rows, then runs prompt + completion again with grad, padded to
   the longest completion, and differentiates that forward; ours runs each prompt once per step for its G rows,
   for sampling and the gradient alike, drops finished rows from the KV cache, and differentiates through the
   sampler's own activations (lab.rlvr.tape: no second forward of the completions, the backward over their
   positions only, packed; the same gradient as scoring again, to float rounding).
   The untrained policy solves (almost) no prompt, so rewards, advantages and the gradient are (almost) all 0 on
   both sides (the run prints the mean reward); neither trainer skips work for that (ours has no zero-advantage
   shortcut), so a step costs what any GRPO step with these completion lengths costs.
3. Timing. Our step: the ``RLVRTrainer.step()`` call (prompt draw, sampling, verification, loss, backward,
   clipping, optimizer, metrics). TRL's step: from the trainer's ``on_step_begin`` to its ``on_step_end`` callback
   (generation, reward, scoring, loss, backward, clipping, optimizer, scheduler), which leaves out its data loading
   and logging: a bound in TRL's favour. Wall time (``time.perf_counter``) and CPU time (``time.process_time``,
   the better measure on a shared machine), medians over the timed steps, pooled over ``--rounds`` rounds that
   alternate ours and TRL (round r: a fresh trainer on each side from the same weights, trainer seed r, so both see
   the same prompts; its first ``--warmup`` steps untimed). Generated tokens = non-PAD completion tokens, EOS
   included (the verifier's input), counted per step (the table shows their mean; both sides sample the same
   distribution, so they differ by chance only); tokens/s is the median of the per-step rates.
4. Sampling alone: ``lab.rlvr.model.sample`` against ``GPT2LMHeadModel.generate`` (``num_return_sequences=G``,
   the default dynamic KV cache, the same sampling settings), same weights, same 8 prompts x G, same T, calls
   alternating, medians after a warm-up. Ours prefills each prompt once for its G rows and drops finished rows;
   HF prefills all P*G rows and keeps finished rows padding to the longest.
5. torch runs with ``--threads`` intra-op threads, and OMP/OPENBLAS/MKL/NUMBA/RAYON_NUM_THREADS are set to the same
   count before numpy or torch is imported.

Needs the bench extra (``pip install -e '.[bench]'``: trl, transformers, datasets, accelerate, tokenizers); exits
with code 2 and says so when it is missing.

Run: .venv/bin/python benchmarks/rlvr_throughput.py [--quick] [--threads 1] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "RAYON_NUM_THREADS",
)


def _threads_argument(argv: list[str]) -> str:
    """The ``--threads`` value (default 1), read before argparse runs so that it reaches BLAS and OpenMP."""
    for index, argument in enumerate(argv):
        if argument == "--threads" and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith("--threads="):
            return argument.split("=", 1)[1]
    return "1"


for _variable in THREAD_VARIABLES:
    os.environ[_variable] = _threads_argument(sys.argv)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import functools
import importlib.util
import logging
import math
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass

import torch

from lab.rlvr.model import GPT, GPTConfig, sample
from lab.rlvr.tasks import VOCAB, CountdownLite, Task
from lab.rlvr.trainer import RLVRTrainer, TrainerConfig, _step_seeds

BENCH_PACKAGES = ("trl", "transformers", "datasets", "accelerate", "tokenizers")
PROMPTS_PER_STEP = 8
GROUP_SIZE = 8
LEARNING_RATE = 3e-5
"""Our TrainerConfig's default (notes/rlvr.md, Appendix), given to both trainers."""
MODEL_SEED = 0


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_head: int
    n_embd: int


FULL_SHAPE = Shape(n_layer=4, n_head=4, n_embd=128)
QUICK_SHAPE = Shape(n_layer=1, n_head=2, n_embd=32)


@dataclass(frozen=True)
class Timing:
    """One timed call: seconds of wall and CPU time, the completion tokens it generated and (a GRPO step) their
    mean verifier reward."""

    wall: float
    cpu: float
    tokens: int
    reward: float = math.nan


def timed(fn) -> tuple[object, float, float]:
    """``fn()``'s result with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def model_config(task: Task, max_new_tokens: int, shape: Shape) -> GPTConfig:
    """The GPT for ``task`` with room for ``max_new_tokens`` completion tokens (TRL scores all of them)."""
    return GPTConfig(
        vocab_size=VOCAB.size,
        block_size=task.prompt_length + max_new_tokens,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        n_embd=shape.n_embd,
    )


def step_prompts(task: Task, seed: int, step: int) -> list[str]:
    """The prompts our trainer with ``seed`` draws at ``step``."""
    prompt_rng, _ = _step_seeds(seed, step)
    return task.sample_prompts(PROMPTS_PER_STEP, prompt_rng, "train")


# --------------------------------------------------------------------------------------------- the HF twin
def build_tokenizer():
    """A fast tokenizer with one id per character of VOCAB (ids equal to ours), PAD and EOS as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({token: index for index, token in enumerate(VOCAB.tokens)}))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=VOCAB.tokens[VOCAB.pad_id], eos_token=VOCAB.tokens[VOCAB.eos_id]
    )
    tokenizer.padding_side = "left"
    return tokenizer


def hf_twin(model: GPT):
    """A ``GPT2LMHeadModel`` of ``model``'s shape holding a copy of its weights (Conv1D stores W transposed)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = model.config
    twin = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.block_size,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_inner=4 * config.n_embd,
            activation_function="gelu",  # exact erf GELU, as torch.nn.GELU(); GPT-2's default is the tanh one
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            layer_norm_epsilon=1e-5,
            eos_token_id=VOCAB.eos_id,
            pad_token_id=VOCAB.pad_id,
            bos_token_id=None,
            tie_word_embeddings=True,
        )
    )
    ours = model.state_dict()
    copies = {"transformer.wte.weight": ours["wte.weight"], "transformer.wpe.weight": ours["wpe.weight"]}
    for name in ("weight", "bias"):
        copies[f"transformer.ln_f.{name}"] = ours[f"ln_f.{name}"]
    for layer in range(config.n_layer):
        theirs, mine = f"transformer.h.{layer}", f"blocks.{layer}"
        for name in ("weight", "bias"):
            copies[f"{theirs}.ln_1.{name}"] = ours[f"{mine}.ln_1.{name}"]
            copies[f"{theirs}.ln_2.{name}"] = ours[f"{mine}.ln_2.{name}"]
        for hf_name, our_name in (
            ("attn.c_attn", "attn.qkv"),
            ("attn.c_proj", "attn.proj"),
            ("mlp.c_fc", "mlp.0"),
            ("mlp.c_proj", "mlp.2"),
        ):
            copies[f"{theirs}.{hf_name}.weight"] = ours[f"{mine}.{our_name}.weight"].T
            copies[f"{theirs}.{hf_name}.bias"] = ours[f"{mine}.{our_name}.bias"]
    parameters = dict(twin.named_parameters())
    if set(parameters) != set(copies):
        raise RuntimeError(f"GPT2 parameters {sorted(set(parameters) ^ set(copies))} have no counterpart")
    with torch.no_grad():
        for name, value in copies.items():
            parameters[name].copy_(value)
    return twin.eval()


def max_logit_difference(model: GPT, twin, *, seed: int = 0) -> float:
    """max |logits_ours - logits_HF| over 64 random full-length sequences."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(VOCAB.size, (64, model.config.block_size), generator=generator)
    with torch.no_grad():
        return float((model(ids) - twin(input_ids=ids, attention_mask=torch.ones_like(ids)).logits).abs().max())


# --------------------------------------------------------------------------------------------- GRPO steps
def our_grpo_steps(
    task: Task, config: GPTConfig, max_new_tokens: int, warmup: int, steps: int, seed: int
) -> list[Timing]:
    """Timed ``RLVRTrainer.step()`` calls of a fresh trainer (its first ``warmup`` untimed)."""
    model, base_model = GPT(config, seed=MODEL_SEED), GPT(config, seed=MODEL_SEED)
    trainer = RLVRTrainer(
        model,
        base_model,
        task,
        TrainerConfig(
            objective="grpo",
            prompts_per_step=PROMPTS_PER_STEP,
            group_size=GROUP_SIZE,
            max_new_tokens=max_new_tokens,
            lr=LEARNING_RATE,
            grad_clip=1.0,
            track_kl=False,
            steps=warmup + steps,
            seed=seed,
        ),
    )
    timings = []
    for _ in range(warmup + steps):
        metrics, wall, cpu = timed(trainer.step)
        tokens = round(metrics["completion_length"] * PROMPTS_PER_STEP * GROUP_SIZE)
        timings.append(Timing(wall, cpu, tokens, metrics["reward"]))
    return timings[warmup:]


def trl_grpo_steps(
    task: Task, config: GPTConfig, max_new_tokens: int, warmup: int, steps: int, seed: int, threads: int
) -> list[Timing]:
    """Timed steps of a fresh TRL GRPOTrainer on the HF twin of our initial model (module docstring, items 2-3)."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tokens_per_step: list[int] = []
    rewards_per_step: list[float] = []

    def countdown_reward(prompts, completions, completion_ids, **_) -> list[float]:
        tokens_per_step.append(sum(len(ids) for ids in completion_ids))
        rewards = [task.verify(prompt, VOCAB.decode(ids)) for prompt, ids in zip(prompts, completion_ids, strict=True)]
        rewards_per_step.append(statistics.mean(rewards))
        return rewards

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.starts: list[tuple[float, float]] = []
            self.seconds: list[tuple[float, float]] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if torch.get_num_threads() != threads:
                raise RuntimeError(f"TRL runs with {torch.get_num_threads()} torch threads, expected {threads}")
            self.starts.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, args, state, control, **kwargs):
            wall, cpu = self.starts[-1]
            self.seconds.append((time.perf_counter() - wall, time.process_time() - cpu))

    prompts = [prompt for step in range(warmup + steps) for prompt in step_prompts(task, seed, step)]
    clock = StepClock()
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = GRPOConfig(
            output_dir=output_dir,
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=False,
            disable_dropout=True,
            per_device_train_batch_size=PROMPTS_PER_STEP * GROUP_SIZE,
            num_generations=GROUP_SIZE,
            max_completion_length=max_new_tokens,
            temperature=1.0,
            top_k=0,
            generation_kwargs={"suppress_tokens": [VOCAB.pad_id]},
            beta=0.0,
            num_iterations=1,
            loss_type="grpo",
            scale_rewards="group",
            epsilon=0.2,
            learning_rate=LEARNING_RATE,
            lr_scheduler_type="constant",
            optim="adamw_torch_fused",
            weight_decay=0.0,
            max_grad_norm=1.0,
            shuffle_dataset=False,
            max_steps=warmup + steps,
            logging_steps=warmup + steps,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            seed=seed,
        )
        trainer = GRPOTrainer(
            model=hf_twin(GPT(config, seed=MODEL_SEED)),
            reward_funcs=countdown_reward,
            args=arguments,
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=build_tokenizer(),
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # its per-step log dicts would interleave with the table
        trainer.train()
    if len(clock.seconds) != warmup + steps or len(tokens_per_step) != warmup + steps:
        raise RuntimeError(f"TRL ran {len(clock.seconds)} steps and {len(tokens_per_step)} rewards calls")
    steps_seen = zip(clock.seconds, tokens_per_step, rewards_per_step, strict=True)
    return [Timing(wall, cpu, tokens, reward) for (wall, cpu), tokens, reward in steps_seen][warmup:]


# --------------------------------------------------------------------------------------------- sampling alone
def sampling_timings(
    task: Task, config: GPTConfig, max_new_tokens: int, warmup: int, repeats: int
) -> tuple[list[Timing], list[Timing]]:
    """Alternating calls of our sampler and HF ``generate`` on the same weights and prompts (module docstring, 4)."""
    from transformers import GenerationConfig

    model = GPT(config, seed=MODEL_SEED)
    twin = hf_twin(model)
    prompts = torch.as_tensor(VOCAB.encode_batch(step_prompts(task, 0, 0)))
    generation = GenerationConfig(
        do_sample=True,
        max_new_tokens=max_new_tokens,
        num_return_sequences=GROUP_SIZE,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        suppress_tokens=[VOCAB.pad_id],
        eos_token_id=VOCAB.eos_id,
        pad_token_id=VOCAB.pad_id,
        use_cache=True,
    )

    def ours(call: int) -> int:
        return int(sample(model, prompts, GROUP_SIZE, max_new_tokens, generator=call).lengths.sum())

    def theirs(call: int) -> int:
        torch.manual_seed(call)
        with torch.no_grad():
            output = twin.generate(
                input_ids=prompts, attention_mask=torch.ones_like(prompts), generation_config=generation
            )
        return int((output[:, prompts.shape[1] :] != VOCAB.pad_id).sum())

    results: tuple[list[Timing], list[Timing]] = ([], [])
    for call in range(warmup + repeats):
        for sampler, timings in zip((ours, theirs), results, strict=True):
            tokens, wall, cpu = timed(functools.partial(sampler, call))
            if call >= warmup:
                timings.append(Timing(wall, cpu, tokens))
    return results


# --------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class Summary:
    """One side's timed calls: mean generated tokens and reward per call, medians of the times and rates."""

    tokens: float
    reward: float
    cpu_ms: float
    wall_ms: float
    calls_per_cpu_s: float
    calls_per_wall_s: float
    tokens_per_cpu_s: float
    tokens_per_wall_s: float

    @classmethod
    def of(cls, timings: list[Timing]) -> Summary:
        def median(values) -> float:
            return statistics.median(list(values))

        return cls(
            tokens=statistics.mean(t.tokens for t in timings),
            reward=statistics.mean(t.reward for t in timings),
            cpu_ms=1e3 * median(t.cpu for t in timings),
            wall_ms=1e3 * median(t.wall for t in timings),
            calls_per_cpu_s=1 / median(t.cpu for t in timings),
            calls_per_wall_s=1 / median(t.wall for t in timings),
            tokens_per_cpu_s=median(t.tokens / t.cpu for t in timings),
            tokens_per_wall_s=median(t.tokens / t.wall for t in timings),
        )


COLUMNS = ("mean tokens", "CPU ms", "wall ms", "per CPU s", "per wall s", "tok/CPU s", "tok/wall s")


def table_rows(max_new_tokens: int, ours: Summary, reference: Summary, reference_name: str) -> list[str]:
    def row(name: str, values: list[str]) -> str:
        return f"{max_new_tokens:>3}  {name:<14}" + "".join(f"{value:>12}" for value in values)

    def numbers(s: Summary) -> list[str]:
        return [
            f"{s.tokens:.0f}",
            f"{s.cpu_ms:.1f}",
            f"{s.wall_ms:.1f}",
            f"{s.calls_per_cpu_s:.2f}",
            f"{s.calls_per_wall_s:.2f}",
            f"{s.tokens_per_cpu_s:.0f}",
            f"{s.tokens_per_wall_s:.0f}",
        ]

    ratios = [
        f"{ours.tokens / reference.tokens:.2f}",
        "",
        "",
        f"{ours.calls_per_cpu_s / reference.calls_per_cpu_s:.2f}x",
        f"{ours.calls_per_wall_s / reference.calls_per_wall_s:.2f}x",
        f"{ours.tokens_per_cpu_s / reference.tokens_per_cpu_s:.2f}x",
        f"{ours.tokens_per_wall_s / reference.tokens_per_wall_s:.2f}x",
    ]
    return [row("ours", numbers(ours)), row(reference_name, numbers(reference)), row("ours/" + reference_name, ratios)]


def header(first: str) -> str:
    return f"{'T':>3}  {first:<14}" + "".join(f"{column:>12}" for column in COLUMNS)


def missing_packages() -> list[str]:
    return [name for name in BENCH_PACKAGES if importlib.util.find_spec(name) is None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-layer width-32 model and 2 steps: seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads (default 1)")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="max completion lengths (default 6 32)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per trainer and round (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps per trainer (default 3)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds of ours and TRL (default 3)")
    parser.add_argument("--sampling-repeats", type=int, default=None, help="timed sampler calls (default 30)")
    args = parser.parse_args()
    missing = missing_packages()
    if missing:
        print(
            f"benchmarks/rlvr_throughput.py needs {', '.join(missing)} (the bench extra): "
            "run .venv/bin/pip install -e '.[bench]'",
            file=sys.stderr,
        )
        sys.exit(2)
    import transformers
    import trl

    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    task = CountdownLite()
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    lengths = args.lengths or ([task.max_completion_length] if args.quick else [task.max_completion_length, 32])
    steps = args.steps or (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 3)
    sampling_repeats = args.sampling_repeats or (3 if args.quick else 30)

    base = GPT(model_config(task, max(lengths), shape), seed=MODEL_SEED)
    print(
        f"RLVR throughput: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}; "
        f"{args.threads} thread(s); GPT {shape.n_layer} layers x {shape.n_embd} wide x {shape.n_head} heads "
        f"({sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters), untrained (seed {MODEL_SEED}); "
        f"max |logit ours - GPT2LMHeadModel| = {max_logit_difference(base, hf_twin(base)):.1e}"
    )
    grpo, sampling = [], []
    for length in lengths:
        config = model_config(task, length, shape)
        ours, theirs = [], []
        for seed in range(rounds):
            ours += our_grpo_steps(task, config, length, warmup, steps, seed)
            theirs += trl_grpo_steps(task, config, length, warmup, steps, seed, args.threads)
        grpo.append((length, Summary.of(ours), Summary.of(theirs)))
        ours_sampling, hf_sampling = sampling_timings(task, config, length, warmup, sampling_repeats)
        sampling.append((length, Summary.of(ours_sampling), Summary.of(hf_sampling)))

    print(
        f"\nGRPO step: Countdown-lite, {PROMPTS_PER_STEP} prompts x G={GROUP_SIZE}, T = max completion tokens, "
        f"lr {LEARNING_RATE:g}, fp32; medians of {rounds} x {steps} steps after {warmup} warm-up each; "
        "mean tokens = generated per step; per s = steps/s"
    )
    print(header("trainer"))
    for length, ours, theirs in grpo:
        print("\n".join(table_rows(length, ours, theirs, "TRL")))
    rewards = "; ".join(f"T={length}: ours {ours.reward:.3f}, TRL {theirs.reward:.3f}" for length, ours, theirs in grpo)
    print(f"mean verifier reward per step (0: every advantage and gradient is 0, on both sides): {rewards}")
    print(
        f"\nSampling alone: {PROMPTS_PER_STEP} prompts x G={GROUP_SIZE}, same weights, temperature 1; medians of "
        f"{sampling_repeats} calls; per s = calls/s"
    )
    print(header("sampler"))
    for length, ours, theirs in sampling:
        print("\n".join(table_rows(length, ours, theirs, "HF generate")))
    print()
    for length, ours, theirs in grpo:
        ratios = {
            "generated tokens/s": ours.tokens_per_cpu_s / theirs.tokens_per_cpu_s,
            "steps/s": ours.calls_per_cpu_s / theirs.calls_per_cpu_s,
        }
        verdicts = ", ".join(
            f"{name} {ratio:.2f}x ({'met' if ratio >= 2 else 'NOT met'})" for name, ratio in ratios.items()
        )
        print(f"Target >= 2x TRL at T={length} (CPU time): {verdicts}")


if __name__ == "__main__":
    main()
