"""Gymnasium environments of the lab, built on the exact models in `theory`.

Environments are registered here, at import, under versioned ``lab/...-vN`` ids
(``gymnasium.make("envs:lab/Name-v0")`` imports this package first). ``envs`` may import
``theory``; it never imports ``lab``.
"""
