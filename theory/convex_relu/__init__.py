"""Convex training of two-layer ReLU networks (Pilanci & Ergen; Bai, Gautam & Sojoudi, arXiv 2201.01965).

:mod:`~theory.convex_relu.problem`: the program, patterns, recovery and certificate;
:mod:`~theory.convex_relu.reference`: cvxpy references (exact, and the gated relaxation);
:mod:`~theory.convex_relu.admm`: the ADMM solver with structured solves and a certified polish;
:mod:`~theory.convex_relu.scp`: the sampled convex program (random ReLU features, lasso);
:mod:`~theory.convex_relu.adversarial`: the robust program for l_inf / l_2 attacks.
"""
