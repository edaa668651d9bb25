"""Pure math of the lab: arrays in, result dataclasses out.

`theory` imports nothing of `lab` or `envs`, draws no widgets, writes no files and
does not import torch. Solvers follow the conventions of :mod:`theory.solver`; the
array module comes from :mod:`theory.backend`.
"""
