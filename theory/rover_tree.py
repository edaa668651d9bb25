"""ROVER's theorem on trees: acting greedily on the uniform policy's Q is optimal when rewards are binary.

He, Ye, Cai, Hu, Jiao, Jiang, Pan (2025), "Random Policy Valuation is Enough for LLM Reasoning with Verifiable
Rewards" (ROVER, arXiv 2509.24981), Thm 3.1: in a finite-horizon MDP with deterministic transitions, tree-structured
states and binary terminal rewards, the greedy policy with respect to Q of the uniformly random policy is optimal.

The model. A complete A-ary tree of depth H (A = ``n_actions`` >= 2, H = ``depth`` >= 1). The states are its
nodes; action a at node s moves deterministically to child a; an episode takes H steps from the root and ends at
a leaf l, and the only reward is r(l), paid on the step into the leaf (gamma = 1). This is token-by-token
generation with a verifier at the end: a node is a prefix, a leaf a complete answer, r(l) in {0, 1} its verdict.

Numbering. Nodes are numbered breadth-first: the root is 0 and child a of node s is A s + 1 + a, so the A^d nodes
at depth d are (A^d - 1)/(A - 1) + k, k = 0..A^d - 1, where the base-A digits of k (most significant first) are
the actions leading there. Leaf l = 0..A^H - 1 is node (A^H - 1)/(A - 1) + l. Q-tables and policies live on the
N = (A^H - 1)/(A - 1) internal nodes: arrays of shape (..., N, A), rows in node order, with any leading batch axes
matching those of ``leaf_rewards`` (..., A^H).

1. Random policy valuation (the uniform policy pi_u(a | s) = 1/A):
       Q_u(s, a) = r(s, a) + (1/A) sum_{a'} Q_u(s', a'),   s' = child a of s;
   on the tree r(s, a) = 0 except into a leaf, so Q_u(s, a) is the mean of r over the A^{H-d-1} leaves below
   s' (s at depth d). It is computed bottom up as subtree sums over leaf counts (sums of integers are exact), so
   subtrees holding equally many correct leaves tie exactly.
2. Optimal values: Q*(s, a) = max of r over the leaves below s', V*(s) = max_a Q*(s, a).
3. The theorem, with any tie-breaking: if r(l) in {c, c + R}, R > 0 (binary: c = 0, R = 1), then at every internal
   node s every a in argmax_a Q_u(s, a) has Q*(s, a) = V*(s). Proof: Q_u(s, a) = c + R Pr(correct leaf | s, a, then
   uniform) > c iff a correct leaf lies below s' iff Q*(s, a) = c + R. If V*(s) = c + R some action has Q_u > c,
   hence every maximiser of Q_u has Q_u > c and Q* = c + R; if V*(s) = c every action is optimal. So every greedy
   policy, whatever it does on ties, is optimal (induction from the leaves). :func:`greedy_optimality_gap` measures
   V*(s) - min_{a in argmax Q_u(s, .)} Q*(s, a); with real-valued rewards it can be positive, because a mean is
   not a max: one high leaf among zeros loses to a subtree of uniformly medium leaves.
4. ROVER's policy: a softmax over Q_u at temperature tau,
       pi_tau(a | s) = exp(Q_u(s, a) / tau) / sum_b exp(Q_u(s, b) / tau);
   tau -> 0 is uniform over argmax_a Q_u(s, a) (greedy), tau -> infinity the uniform policy. The leaf reached by
   a policy pi has the exact distribution p(l) = prod_{h<H} pi(a_h | s_h) along the path of l;
   :func:`evaluate_tree_policy` returns its value sum_l p(l) r(l) (the success probability when r is binary) and
   the diversity among the optimal leaves O = {l : r(l) = max r}: how many have p(l) > 0 and the entropy of
   p(l | l in O). The paper's argument: small tau keeps the greedy policy's success, larger tau spreads it over
   more of the correct answers. Observed here, not proved: on binary trees the success probability never rises with
   tau (every tree with A = 2, H <= 4 or A in {3, 4}, H = 2, on a grid of 300 temperatures); the entropy rises
   from its greedy value to log |O| but not always monotonically (dips of up to about 1e-4 nats on a few per cent
   of random trees).

Everything is a handful of reshapes per tree level, O(A^H) per tree and vectorised over a batch of trees, so no
compiled kernel is needed. :meth:`RoverTree.as_tabular_mdp` writes one tree as a :class:`~theory.tabular.TabularMDP`
for cross-checks with :mod:`theory.tabular` (backward induction, exact evaluation, rollouts).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from theory.tabular.mdp import TabularMDP, as_float_array

REWARD_DISTRIBUTIONS = ("binary", "uniform")
"""``"binary"``: r(l) ~ Bernoulli(p) in {0, 1}; ``"uniform"``: r(l) ~ U[0, 1) (real-valued, where the theorem fails)."""
TIE_BREAKS = ("first", "uniform")
"""Greedy ties: ``"first"`` takes the lowest maximising action, ``"uniform"`` mixes the maximisers evenly."""
MAX_TABULAR_STATES = 4096
"""Largest tree :meth:`RoverTree.as_tabular_mdp` writes: the dense (S, A, S) kernel takes 8 A S^2 bytes."""


def _positive_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def nodes_above_depth(n_actions: int, depth: int) -> int:
    """(A^d - 1)/(A - 1): the number of nodes at depths < d, which is also the index of the first node at depth d."""
    return (n_actions**depth - 1) // (n_actions - 1)


def tree_depth(leaf_rewards: np.ndarray, n_actions: int) -> int:
    """H with A^H = ``leaf_rewards.shape[-1]``; a ValueError when the leaf count is no power A^H, H >= 1."""
    n_leaves = leaf_rewards.shape[-1] if leaf_rewards.ndim else 0
    depth = 0
    while n_actions ** (depth + 1) <= n_leaves:
        depth += 1
    if depth < 1 or n_actions**depth != n_leaves:
        raise ValueError(
            f"leaf_rewards: expected a last axis of A^H leaves (A = n_actions = {n_actions}, H >= 1), "
            f"got shape {leaf_rewards.shape}"
        )
    return depth


def _leaf_rewards_and_depth(leaf_rewards, n_actions) -> tuple[np.ndarray, int]:
    n_actions = _positive_int(n_actions, "n_actions", 2)
    leaf_rewards = as_float_array(leaf_rewards, "leaf_rewards", copy=False)
    return leaf_rewards, tree_depth(leaf_rewards, n_actions)


def _children_table(child_values: np.ndarray, n_actions: int, depth: int) -> np.ndarray:
    """(..., A^{d+1}) values of the nodes at depth d + 1 as (..., A^d, A): row k holds node k's children."""
    return child_values.reshape(*child_values.shape[:-1], n_actions**depth, n_actions)


def uniform_q(leaf_rewards, n_actions: int) -> np.ndarray:
    """Q_u(s, a) of the uniform policy at every internal node, shape (..., N, A) (module docstring, step 1).

    ``leaf_rewards`` (..., A^H) in leaf order; rows of the result in node order.
    """
    leaf_rewards, depth = _leaf_rewards_and_depth(leaf_rewards, n_actions)
    levels = []
    subtree_sums = leaf_rewards
    for d in range(depth - 1, -1, -1):
        children = _children_table(subtree_sums, n_actions, d)
        levels.append(children / n_actions ** (depth - d - 1))
        subtree_sums = children.sum(axis=-1)
    return np.concatenate(levels[::-1], axis=-2)


def optimal_q(leaf_rewards, n_actions: int) -> np.ndarray:
    """Q*(s, a) = the best leaf below child a of s, shape (..., N, A) (module docstring, step 2); V* = max_a Q*."""
    leaf_rewards, depth = _leaf_rewards_and_depth(leaf_rewards, n_actions)
    levels = []
    subtree_max = leaf_rewards
    for d in range(depth - 1, -1, -1):
        children = _children_table(subtree_max, n_actions, d)
        levels.append(children)
        subtree_max = children.max(axis=-1)
    return np.concatenate(levels[::-1], axis=-2)


def greedy_optimality_gap(leaf_rewards, n_actions: int) -> np.ndarray:
    """V*(s) - min_{a in argmax_a Q_u(s, a)} Q*(s, a) at every internal node, shape (..., N).

    The worst loss, over all tie-breaking rules, of taking a greedy action on Q_u at s and playing optimally after.
    Zero at every node means every greedy policy on Q_u is optimal; ROVER's theorem says so for binary rewards
    (module docstring, step 3). Ties are exact equalities of Q_u.
    """
    q_uniform = uniform_q(leaf_rewards, n_actions)
    q_optimal = optimal_q(leaf_rewards, n_actions)
    is_greedy = q_uniform == q_uniform.max(axis=-1, keepdims=True)
    worst_greedy = np.where(is_greedy, q_optimal, np.inf).min(axis=-1)
    return q_optimal.max(axis=-1) - worst_greedy


def _node_table(table, name: str = "q") -> np.ndarray:
    """A per-node table (Q-values or action probabilities) as a float array of shape (..., N, A), A >= 2."""
    table = as_float_array(table, name, copy=False)
    if table.ndim < 2 or table.shape[-1] < 2:
        raise ValueError(f"{name}: expected shape (..., N, A) with A >= 2 actions, got {table.shape}")
    return table


def greedy_policy(q, *, tie_break: str = "first") -> np.ndarray:
    """The greedy policy on ``q`` (..., N, A) as action probabilities of the same shape.

    ``tie_break``: ``"first"`` (one-hot on the lowest maximising action) or ``"uniform"`` (even over the exact
    maximisers; the tau -> 0 limit of :func:`softmax_policy`).
    """
    q = _node_table(q)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break: expected one of {TIE_BREAKS}, got {tie_break!r}")
    if tie_break == "first":
        return np.eye(q.shape[-1])[np.argmax(q, axis=-1)]
    is_greedy = (q == q.max(axis=-1, keepdims=True)).astype(np.float64)
    return is_greedy / is_greedy.sum(axis=-1, keepdims=True)


def softmax_policy(q, temperature: float) -> np.ndarray:
    """ROVER's policy pi_tau(a | s) = exp(q(s, a) / tau) / sum_b exp(q(s, b) / tau), shape of ``q`` (..., N, A).

    ``temperature`` tau >= 0; tau = 0 is the limit, uniform over argmax_a q(s, a) (ties exact), and
    tau = inf the uniform policy.
    """
    q = _node_table(q)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float | np.integer | np.floating):
        raise TypeError(f"temperature: expected a float >= 0, got {temperature!r}")
    if not temperature >= 0:  # also rejects NaN
        raise ValueError(f"temperature: expected a float >= 0 (0 = greedy, inf = uniform), got {temperature}")
    if temperature == 0:
        return greedy_policy(q, tie_break="uniform")
    weights = np.exp((q - q.max(axis=-1, keepdims=True)) / temperature)
    return weights / weights.sum(axis=-1, keepdims=True)


@dataclass(frozen=True, kw_only=True)
class TreePolicyEvaluation:
    """Exact outcome of a policy on a tree (module docstring, step 4); scalars gain the batch shape of a batch.

    ``leaf_probabilities`` p(l) (..., A^H); ``value`` = sum_l p(l) r(l) (the success probability for binary
    rewards); ``optimal_leaf_probability`` = p(O), O = {l : r(l) = max r}; ``optimal_leaves_reached`` =
    #{l in O : p(l) > 0}; ``optimal_leaf_entropy`` = -sum_{l in O} q(l) log q(l) in nats, q(l) = p(l) / p(O)
    (NaN when p(O) = 0), at most log |O| (attained by the uniform policy).
    """

    leaf_probabilities: np.ndarray
    value: float | np.ndarray
    optimal_leaf_probability: float | np.ndarray
    optimal_leaves_reached: int | np.ndarray
    optimal_leaf_entropy: float | np.ndarray


def leaf_probabilities(policy) -> np.ndarray:
    """p(l) = prod_{h<H} pi(a_h | s_h) along the path of every leaf, shape (..., A^H), for ``policy`` (..., N, A).

    Level by level: the reach probability of each depth-(d + 1) node is its parent's times pi(a | parent).
    """
    policy = _node_table(policy, "policy")
    n_actions = policy.shape[-1]
    n_internal = policy.shape[-2]
    depth = 1
    while nodes_above_depth(n_actions, depth) < n_internal:
        depth += 1
    if nodes_above_depth(n_actions, depth) != n_internal:
        raise ValueError(
            f"policy: expected (A^H - 1)/(A - 1) rows (the internal nodes of a tree, A = {n_actions}), "
            f"got shape {policy.shape}"
        )
    if policy.min() < 0 or np.max(np.abs(policy.sum(axis=-1) - 1.0)) > 1e-9:
        raise ValueError("policy: expected rows of action probabilities (non-negative, summing to 1)")
    reach = np.ones((*policy.shape[:-2], 1))
    for d in range(depth):
        first = nodes_above_depth(n_actions, d)
        level = policy[..., first : first + n_actions**d, :]
        reach = (reach[..., :, None] * level).reshape(*level.shape[:-2], n_actions ** (d + 1))
    return reach


def evaluate_tree_policy(policy, leaf_rewards) -> TreePolicyEvaluation:
    """Exact value and optimal-leaf diversity of ``policy`` (..., N, A) on trees ``leaf_rewards`` (..., A^H)."""
    probabilities = leaf_probabilities(policy)
    leaf_rewards, _ = _leaf_rewards_and_depth(leaf_rewards, np.shape(policy)[-1])
    if probabilities.shape[-1] != leaf_rewards.shape[-1]:
        raise ValueError(
            f"leaf_rewards: expected {probabilities.shape[-1]} leaves (the tree of policy), got {leaf_rewards.shape}"
        )
    is_optimal = leaf_rewards == leaf_rewards.max(axis=-1, keepdims=True)
    optimal_mass = np.where(is_optimal, probabilities, 0.0)
    optimal_probability = optimal_mass.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        conditional = optimal_mass / optimal_probability[..., None]
        entropy = -np.sum(np.where(conditional > 0, conditional * np.log(conditional), 0.0), axis=-1)
    entropy = np.where(optimal_probability > 0, entropy, np.nan)

    def scalar_if_single(array):
        return array.item() if array.ndim == 0 else array

    return TreePolicyEvaluation(
        leaf_probabilities=probabilities,
        value=scalar_if_single(np.sum(probabilities * leaf_rewards, axis=-1)),
        optimal_leaf_probability=scalar_if_single(optimal_probability),
        optimal_leaves_reached=scalar_if_single(np.count_nonzero(optimal_mass > 0, axis=-1)),
        optimal_leaf_entropy=scalar_if_single(entropy),
    )


def random_leaf_rewards(
    n_actions: int,
    depth: int,
    *,
    seed: int | np.random.Generator,
    n_trees: int | None = None,
    reward_distribution: str = "binary",
    success_probability: float = 0.5,
) -> np.ndarray:
    """Leaf rewards of one tree (A^H,) or of ``n_trees`` trees (n_trees, A^H), drawn independently per leaf.

    ``reward_distribution``: ``"binary"``, r(l) ~ Bernoulli(``success_probability``) in {0, 1}, or ``"uniform"``,
    r(l) ~ U[0, 1) (``success_probability`` unused). ``seed``: an int or a numpy Generator.
    """
    n_actions = _positive_int(n_actions, "n_actions", 2)
    depth = _positive_int(depth, "depth", 1)
    if n_trees is not None:
        n_trees = _positive_int(n_trees, "n_trees", 1)
    if reward_distribution not in REWARD_DISTRIBUTIONS:
        raise ValueError(f"reward_distribution: expected one of {REWARD_DISTRIBUTIONS}, got {reward_distribution!r}")
    if not 0.0 <= success_probability <= 1.0:
        raise ValueError(f"success_probability: expected a probability in [0, 1], got {success_probability}")
    if not isinstance(seed, int | np.integer | np.random.Generator) or isinstance(seed, bool):
        raise TypeError(f"seed: expected an int or a numpy.random.Generator, got {seed!r}")
    shape = (n_actions**depth,) if n_trees is None else (n_trees, n_actions**depth)
    uniforms = np.random.default_rng(seed).random(shape)
    return (uniforms < success_probability).astype(np.float64) if reward_distribution == "binary" else uniforms


@dataclass(frozen=True, eq=False)
class RoverTree:
    """One complete ``n_actions``-ary tree with terminal rewards ``leaf_rewards`` (A^H,) (module docstring).

    The rewards are stored as a read-only float64 copy. Exact quantities are computed once on first use:
    ``uniform_q`` Q_u and ``optimal_q`` Q* (N, A), ``optimal_value`` V*(root).
    """

    leaf_rewards: np.ndarray
    n_actions: int

    def __post_init__(self) -> None:
        n_actions = _positive_int(self.n_actions, "n_actions", 2)
        leaf_rewards = as_float_array(self.leaf_rewards, "leaf_rewards")
        if leaf_rewards.ndim != 1:
            raise ValueError(f"leaf_rewards: expected one tree, shape (A^H,), got shape {leaf_rewards.shape}")
        tree_depth(leaf_rewards, n_actions)
        object.__setattr__(self, "leaf_rewards", leaf_rewards)
        object.__setattr__(self, "n_actions", n_actions)

    @cached_property
    def depth(self) -> int:
        return tree_depth(self.leaf_rewards, self.n_actions)

    @property
    def n_internal_nodes(self) -> int:
        """N = (A^H - 1)/(A - 1), also the index of the first leaf node."""
        return nodes_above_depth(self.n_actions, self.depth)

    @property
    def n_nodes(self) -> int:
        return nodes_above_depth(self.n_actions, self.depth + 1)

    def child(self, node: int, action: int) -> int:
        """A s + 1 + a, the node reached from internal node ``node`` by ``action``."""
        if not 0 <= node < self.n_internal_nodes:
            raise ValueError(f"node: expected an internal node in [0, {self.n_internal_nodes}), got {node}")
        if not 0 <= action < self.n_actions:
            raise ValueError(f"action: expected an action in [0, {self.n_actions}), got {action}")
        return self.n_actions * node + 1 + action

    def is_leaf(self, node: int) -> bool:
        return node >= self.n_internal_nodes

    def leaf_reward(self, node: int) -> float:
        """r(l) of leaf node ``node`` (= N + l)."""
        if not self.n_internal_nodes <= node < self.n_nodes:
            raise ValueError(f"node: expected a leaf node in [{self.n_internal_nodes}, {self.n_nodes}), got {node}")
        return float(self.leaf_rewards[node - self.n_internal_nodes])

    @cached_property
    def uniform_q(self) -> np.ndarray:
        return uniform_q(self.leaf_rewards, self.n_actions)

    @cached_property
    def optimal_q(self) -> np.ndarray:
        return optimal_q(self.leaf_rewards, self.n_actions)

    @property
    def optimal_value(self) -> float:
        return float(self.leaf_rewards.max())

    def as_tabular_mdp(self) -> TabularMDP:
        """The tree as a finite-horizon :class:`~theory.tabular.TabularMDP` (horizon H, no discount).

        States are the nodes; P(A s + 1 + a | s, a) = 1 at internal nodes, leaves are absorbing (never left within
        H steps of the root); r(s, a) = r(l) when A s + 1 + a is leaf l, else 0; the start is the root. Its
        backward induction gives values[h] = V* at the depth-h nodes; evaluating the uniform policy gives Q_u.
        """
        n_states, n_actions, n_internal = self.n_nodes, self.n_actions, self.n_internal_nodes
        if n_states > MAX_TABULAR_STATES:
            raise ValueError(
                f"tree: {n_states} nodes (A = {n_actions}, H = {self.depth}) exceed "
                f"MAX_TABULAR_STATES = {MAX_TABULAR_STATES} for a dense (S, A, S) kernel; use a smaller tree"
            )
        transitions = np.zeros((n_states, n_actions, n_states))
        internal = np.arange(n_internal)
        children = n_actions * internal[:, None] + 1 + np.arange(n_actions)
        transitions[internal[:, None], np.arange(n_actions), children] = 1.0
        leaves = np.arange(n_internal, n_states)
        transitions[leaves, :, leaves] = 1.0
        rewards = np.zeros((n_states, n_actions))
        into_leaf = children >= n_internal
        rewards[:n_internal][into_leaf] = self.leaf_rewards[children[into_leaf] - n_internal]
        initial = np.zeros(n_states)
        initial[0] = 1.0
        return TabularMDP(transitions=transitions, rewards=rewards, initial=initial, horizon=self.depth)


def random_tree(
    n_actions: int,
    depth: int,
    *,
    seed: int | np.random.Generator,
    reward_distribution: str = "binary",
    success_probability: float = 0.5,
) -> RoverTree:
    """A :class:`RoverTree` with leaf rewards from :func:`random_leaf_rewards`."""
    leaf_rewards = random_leaf_rewards(
        n_actions, depth, seed=seed, reward_distribution=reward_distribution, success_probability=success_probability
    )
    return RoverTree(leaf_rewards, n_actions)


__all__ = [
    "MAX_TABULAR_STATES",
    "REWARD_DISTRIBUTIONS",
    "TIE_BREAKS",
    "RoverTree",
    "TreePolicyEvaluation",
    "evaluate_tree_policy",
    "greedy_optimality_gap",
    "greedy_policy",
    "leaf_probabilities",
    "nodes_above_depth",
    "optimal_q",
    "random_leaf_rewards",
    "random_tree",
    "softmax_policy",
    "tree_depth",
    "uniform_q",
]
