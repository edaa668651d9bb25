"""Gymnasium environments of the lab, built on the exact models in `theory`.

Environments are registered here, at import, under versioned ``lab/...-vN`` ids
(``gymnasium.make("envs:lab/Name-v0")`` imports this package first). ``envs`` may import
``theory``; it never imports ``lab``. Registration names an entry point by string, so a
module is imported only when its environment is made.

* ``lab/CoverageGrid-v0``, ``lab/ItemCollection-v0``, ``lab/ExperimentDesign-v0``,
  ``lab/TwoRoomsCoverage-v0``: grid worlds with a submodular objective on the visited cells
  (:mod:`envs.grid_worlds`; Prajapat et al., "Submodular Reinforcement Learning", ICLR 2024).
  Episodes truncate themselves after H - 1 steps (H visited cells).
* ``lab/LatentMDP-v0``: :mod:`envs.latent_mdp`.
* ``lab/RoverTree-v0``: :mod:`envs.tree_mdp` (ROVER's tree MDP with binary or real leaf rewards).
"""

import gymnasium

gymnasium.register(id="lab/CoverageGrid-v0", entry_point="envs.grid_worlds:CoverageGridEnv")
gymnasium.register(id="lab/ItemCollection-v0", entry_point="envs.grid_worlds:ItemCollectionEnv")
gymnasium.register(id="lab/ExperimentDesign-v0", entry_point="envs.grid_worlds:ExperimentDesignEnv")
gymnasium.register(id="lab/TwoRoomsCoverage-v0", entry_point="envs.grid_worlds:TwoRoomsCoverageEnv")
gymnasium.register(id="lab/LatentMDP-v0", entry_point="envs.latent_mdp:LatentMDPEnv")
gymnasium.register(id="lab/RoverTree-v0", entry_point="envs.tree_mdp:RoverTreeEnv")
