"""Convex training of two-layer ReLU networks (Pilanci & Ergen; Bai, Gautam & Sojoudi, arXiv 2201.01965).

:mod:`~theory.convex_relu.problem`: the program, patterns, recovery and certificate;
:mod:`~theory.convex_relu.reference`: cvxpy references (exact, and the gated relaxation).
"""
