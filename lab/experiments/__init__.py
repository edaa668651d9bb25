"""The built-in experiments; importing this package registers them (see :mod:`lab.registry`)."""

from lab.experiments import alignment_tradeoff

__all__ = ["alignment_tradeoff"]
