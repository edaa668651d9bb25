"""Small-LM RLVR at toy scale: a tiny GPT pretrained here on synthetic tasks with exact verifiers, then RL.

Modules:

- :mod:`lab.rlvr.tasks`: the character vocabulary, fixed-width prompts, train/test splits, parsing verifiers
  (addition, multiplication, Countdown-lite with an additive majority and a multiplicative minority strategy).
- :mod:`lab.rlvr.model`: the GPT (config dataclass, preallocated KV cache), group sampling with a prompt prefill
  shared by its G samples, and batched masked log-prob scoring.
- :mod:`lab.rlvr.tape`: the policy gradient through the sampler's own activations (no second forward of the
  completions).
- :mod:`lab.rlvr.pretrain`: next-token pretraining on a task's corpus with atomic, resumable checkpoints and a
  cached base model.
"""
