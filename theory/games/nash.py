"""Self-play methods for the regularised preference game: Nash mirror prox and its baselines, in log space.

Every method keeps l_k = log pi_k and makes updates of the form l_new = a l + b log mu + c g - logsumexp(.), where g
is a product of P with a policy (a "preference query"; in practice a batch of duels). The step eta' scales P; the
proximal step in the papers' notation is eta = eta' beta. Two mirror steps recur:

    composite prox   prox(l, g) = [l + eta' beta log mu + eta' g] / (1 + eta' beta)     (KL(.||mu) inside the prox)
    linearised step  lin(l, g)  = (1 - eta' beta) l + eta' beta log mu + eta' g        (KL(.||mu) linearised)

1. Nash-MP (Tiapkin et al., "Accelerating Nash Learning from Human Feedback via Mirror Prox", arXiv 2505.19731 v1):
   l_{k+1/2} = prox(l_k, P pi_k),  l_{k+1} = prox(l_k, P pi_{k+1/2}); 2 queries. P is 1/2-Lipschitz from l1 to
   l_inf, so eta' <= 2 is the mirror-prox step limit and KL(pi* || pi_{k+1}) <= KL(pi* || pi_k) / (1 + 2 beta) at
   eta' = 2, i.e. (1 + 2 beta)^(-N/2) after N queries. Larger steps need ``unsafe_step=True`` (they diverge on
   cyclic games at beta = 0.01).
2. Nash-MD (Munos et al., "Nash Learning from Human Feedback", arXiv 2312.00886): l^mu = lin(l_k, 0),
   l_{k+1} = l^mu + eta' P pi^mu; 1 query; needs eta' beta <= 1. With a constant step it stalls at the solution of
   beta log(pi / mu) = P pi^mu + const, not at pi*; the decaying step eta'_t = 1 / (beta (t + 2)) converges,
   sublinearly.
3. MMD / regularised mirror descent (Sokota et al., "A Unified Approach to Reinforcement Learning, Quantal Response
   Equilibria, and Two-Player Zero-Sum Games", arXiv 2206.05825, Theorem 3.4): l_{k+1} = prox(l_k, P pi_k);
   1 query. The linear rate 1 / (1 + eta' beta) for eta' <= beta / L^2 = 4 beta (relative strong monotonicity beta,
   L = 1/2) sets the default step, capped at 2 (the condition is recalled, not read; the tests check the rate).
4. Policy extragradient (Cen, Wei & Chi, "Fast Policy Extragradient Methods for Competitive Games with Entropy
   Regularization", arXiv 2105.15186, the "PU" method): the classic mirror extragradient with the regulariser's
   gradient taken explicitly, h = lin(l_k, P pi_k), l_{k+1} = lin(l_k, P e^h); 2 queries; their condition
   eta' <= 1 / (beta + 2 max|P - 1/2|) gives the default 1 / (1 + beta). Since lin(l, g; s) = prox(l, g; s / (1 - s
   beta)), in this tabular game it is Nash-MP with the step s / (1 - s beta) (the default is Nash-MP at eta' = 1).
5. Optimistic mirror descent (single-call extragradient / OMWU, Popov 1980; Rakhlin & Sridharan 2013) with Nash-MP's
   composite prox: h_{k+1} = prox(l_k, g_k), g_{k+1} = P e^{h_{k+1}}, l_{k+1} = prox(l_k, g_{k+1}); 1 query (g_0 =
   P pi_0 costs one more). Default eta' = 1, half the two-call limit (the usual single-call condition).
6. Approximate Nash-MP: each prox of step 1 is replaced by ``inner_steps`` steps of stochastic policy gradient on
   the softmax logits theta, from theta = l_k, for the prox objective (divided by 1 + eta' beta)
       Phi(pi) = <pi, a l_k + b log mu + c P pi_opp> - <pi, log pi>,   maximised by prox(l_k, P pi_opp),
   grad Phi = pi o (s - <pi, s>) with s = a l_k + b log mu + c P pi_opp - log pi. The preference term is estimated
   from n duels y_i ~ pi_theta, y'_i ~ pi_opp, o_i ~ Bernoulli(P[y_i, y'_i]) by REINFORCE with baseline 1/2,
       c (1/n) sum_i (o_i - 1/2)(e_{y_i} - pi)    (unbiased for c pi o (P pi_opp - <pi, P pi_opp>)),
   and the KL terms are exact (pi, mu, pi_k are known), so every gradient is exact in expectation and pi* stays the
   fixed point; pi_opp = pi_k for the leading step and the leading step's policy for the second. Queries count
   sampled duels; with a constant step the iterates settle at a noise floor that shrinks as n grows.

Every ``step()`` returns the cumulative ``queries`` (per game; queries made to evaluate metrics are not counted),
``kl`` = KL(pi* || pi_k) and ``span`` = span(l_k - l*) when ``target`` (log pi*) is given, and, every ``check_every``
iterations, the ``certificate`` 1/2 span(r)^2 >= KL(pi* || pi_k) and the ``exploitability``
(:mod:`theory.games.equilibrium`). The certificate costs one product P pi_{k+1}, which the next iteration of Nash-MP,
MMD and extragradient reuses as its own P pi_k, so tracking it is free for them. A solver stops (``converged``) when
the certificate is <= ``tol`` in every game: KL <= tol is then certified, not estimated. For a batch of games the
metrics are the worst game's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.backend import get_backend, to_numpy
from theory.games.equilibrium import GameArrays, _per_game, kl, normalise_logits, span
from theory.games.preference import PreferenceGame, _check_simplex, _generator, _integer_at_least
from theory.solver import Callback, SolverResult, iterate

NASH_MP_STEP_LIMIT = 2.0


class _SelfPlay:
    """State shared by the methods: l_k on ``xp``, the cached product P pi_k, metrics, and the stopping test."""

    def __init__(self, game: PreferenceGame, *, tol: float, init, target, check_every: int, backend: str) -> None:
        if not isinstance(game, PreferenceGame):
            raise TypeError(f"game: expected a PreferenceGame, got {type(game).__name__}")
        if not (np.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol: expected a non-negative KL tolerance, got {tol!r}")
        self.game, self.tol = game, float(tol)
        self.check_every = _integer_at_least(check_every, "check_every", 1)
        self.xp = xp = get_backend(backend)
        self.arrays = GameArrays(game, xp)
        self.dtype = game.dtype
        shape = self.arrays.shape
        if init is None:
            start = np.broadcast_to(game.reference, shape)
        else:
            start = np.asarray(init, dtype=np.float64)
            if start.shape not in (shape, shape[-1:]):
                raise ValueError(f"init: expected a policy of shape {shape[-1:]} or {shape}, got {start.shape}")
            _check_simplex(start, "init")
            start = np.broadcast_to(start, shape)
        self._log_pi = normalise_logits(xp.asarray(np.log(start), dtype=self.dtype))
        self._target = None
        if target is not None:
            target = np.asarray(target, dtype=np.float64)
            if target.shape not in (shape, shape[-1:]) or not np.all(np.isfinite(target)):
                raise ValueError(f"target: expected a finite log-policy of shape {shape[-1:]} or {shape}")
            self._target = normalise_logits(xp.asarray(np.broadcast_to(target, shape)))
        self.n_iter = 0
        self.queries = 0
        self._P_pi = None  # P pi_k once computed, by the method or for the metrics
        self._metrics = None  # certified metrics of pi_k, per game

    # --- helpers for the updates

    def _step_array(self, step):
        """eta' as an array of shape batch + (1,) in the game's dtype (a scalar or one value per game)."""
        values = np.asarray(step, dtype=np.float64)
        if values.ndim > 1 or not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise ValueError(f"step: expected a positive step eta' (a number, or one per game), got {step!r}")
        return self.xp.asarray(np.broadcast_to(values[..., None], self.arrays.beta.shape).astype(self.dtype))

    def _prox_weights(self, step):
        """(a, b log mu, c) of prox(l, g) = a l + b log mu + c g with a = 1 / (1 + eta' beta)."""
        shrink = 1 / (1 + step * self.arrays.beta)
        return shrink, (1 - shrink) * self.arrays.log_reference, step * shrink

    def _linearised_weights(self, step):
        """(a, b log mu, c) of lin(l, g) = (1 - eta' beta) l + eta' beta log mu + eta' g."""
        mix = step * self.arrays.beta
        return 1 - mix, mix * self.arrays.log_reference, step

    @staticmethod
    def _mirror_step(weights, anchor, gain):
        a, prior, c = weights
        return normalise_logits(a * anchor + prior + c * gain)

    def _product_at_iterate(self):
        """P pi_k for the method (one query; reuses the product made for the metrics)."""
        self.queries += 1
        return self.iterate_and_product()[1]

    def _query(self, log_pi):
        self.queries += 1
        return self.arrays.matvec(self.xp.exp(log_pi))

    def _update(self):
        raise NotImplementedError

    def _reset_state(self) -> None:
        """Forget method state tied to the previous iterate (see :meth:`restart`)."""

    # --- stepping

    def step(self) -> dict[str, float]:
        self._log_pi = self._update()
        self._P_pi = self._metrics = None
        self.n_iter += 1
        xp = self.xp
        metrics = {"queries": float(self.queries)}
        if self._target is not None:
            metrics["kl"] = float(xp.max(kl(self._target, self._log_pi)))
            metrics["span"] = float(xp.max(span(self._log_pi - self._target)))
        if self.n_iter % self.check_every == 0:
            metrics |= {name: float(xp.max(value)) for name, value in self.current_metrics().items()}
        return metrics

    def current_metrics(self) -> dict:
        """Per-game certificate, residual span and exploitability of pi_k, on ``xp`` (one product with P, cached)."""
        if self._metrics is None:
            self._metrics = self.arrays.certified_metrics(*self.iterate_and_product())
        return self._metrics

    def iterate_and_product(self):
        """(l_k, P pi_k) on ``xp``."""
        if self._P_pi is None:
            self._P_pi = self.arrays.matvec(self.xp.exp(self._log_pi))
        return self._log_pi, self._P_pi

    def restart(self, log_policy) -> None:
        """Continue from ``log_policy`` (e.g. after an outer correction); the query count carries on."""
        self._log_pi = normalise_logits(self.xp.asarray(log_policy, dtype=self.dtype))
        self._P_pi = self._metrics = None
        self._reset_state()

    @property
    def converged(self) -> bool:
        """KL(pi* || pi_k) <= tol is certified in every game (checked on the iterations that evaluate metrics)."""
        return self._metrics is not None and float(self.xp.max(self._metrics["certificate"])) <= self.tol

    # --- accessors

    @property
    def log_policy(self) -> np.ndarray:
        return to_numpy(self._log_pi)

    @property
    def policy(self) -> np.ndarray:
        return np.exp(self.log_policy)

    @property
    def certificate(self):
        return _per_game(self.current_metrics()["certificate"])

    @property
    def exploitability(self):
        return _per_game(self.current_metrics()["exploitability"])

    @property
    def residual_spans(self):
        """span(r) per game, on ``xp``."""
        return self.current_metrics()["residual_span"]


class NashMirrorProx(_SelfPlay):
    """Nash-MP (module docstring, step 1): two composite proximal steps anchored at pi_k; 2 queries per iteration.

    ``step`` eta' (None: 2, the certified limit: KL(pi* || pi_{k+1}) <= KL(pi* || pi_k) / (1 + 2 beta)); above 2
    it needs ``unsafe_step=True``.
    """

    def __init__(
        self,
        game: PreferenceGame,
        *,
        step=None,
        unsafe_step: bool = False,
        tol: float = 1e-8,
        init=None,
        target=None,
        check_every: int = 1,
        backend: str = "auto",
    ) -> None:
        super().__init__(game, tol=tol, init=init, target=target, check_every=check_every, backend=backend)
        step = NASH_MP_STEP_LIMIT if step is None else step
        self.step_size = self._step_array(step)
        if np.max(np.asarray(step)) > NASH_MP_STEP_LIMIT and not unsafe_step:
            raise ValueError(
                f"step: eta' = {step} exceeds the certified limit {NASH_MP_STEP_LIMIT} (1 / Lipschitz constant of "
                "P); pass unsafe_step=True to run it anyway (it diverges on cyclic games at small beta)"
            )
        self._weights = self._prox_weights(self.step_size)

    def _update(self):
        anchor = self._log_pi
        half = self._mirror_step(self._weights, anchor, self._product_at_iterate())
        return self._mirror_step(self._weights, anchor, self._query(half))


class NashMD(_SelfPlay):
    """Nash-MD (module docstring, step 2): geometric mixture with mu, then a mirror step; 1 query per iteration.

    ``step`` is a constant eta' (eta' beta <= 1; stalls at a biased point) or ``"decaying"`` (the default, None):
    eta'_t = 1 / (beta (t + 2)), t = 0, 1, ...
    """

    def __init__(
        self,
        game: PreferenceGame,
        *,
        step=None,
        tol: float = 1e-8,
        init=None,
        target=None,
        check_every: int = 1,
        backend: str = "auto",
    ) -> None:
        super().__init__(game, tol=tol, init=init, target=target, check_every=check_every, backend=backend)
        step = "decaying" if step is None else step
        self.decaying = isinstance(step, str)
        if self.decaying:
            if step != "decaying":
                raise ValueError(f"step: expected a positive number or 'decaying', got {step!r}")
        else:
            self.step_size = self._step_array(step)
            if float(self.xp.max(self.step_size * self.arrays.beta)) > 1 + 1e-12:
                raise ValueError(f"step: Nash-MD needs eta' beta <= 1 (a geometric mixture), got eta' = {step}")

    def _update(self):
        if self.decaying:
            self.step_size = (1 / ((self.n_iter + 2) * self.arrays.beta)).astype(self.dtype)
        weights = self._linearised_weights(self.step_size)
        mixture = self._mirror_step(weights, self._log_pi, 0)
        return normalise_logits(mixture + self.step_size * self._query(mixture))


class RegularisedMirrorDescent(_SelfPlay):
    """MMD (module docstring, step 3): l_{k+1} = prox(l_k, P pi_k); 1 query. ``step`` eta' (None: min(2, 4 beta))."""

    def __init__(
        self,
        game: PreferenceGame,
        *,
        step=None,
        tol: float = 1e-8,
        init=None,
        target=None,
        check_every: int = 1,
        backend: str = "auto",
    ) -> None:
        super().__init__(game, tol=tol, init=init, target=target, check_every=check_every, backend=backend)
        self.step_size = self._step_array(np.minimum(2.0, 4 * np.asarray(game.beta)) if step is None else step)
        self._weights = self._prox_weights(self.step_size)

    def _update(self):
        return self._mirror_step(self._weights, self._log_pi, self._product_at_iterate())


class Extragradient(_SelfPlay):
    """Policy extragradient (module docstring, step 4): two linearised mirror steps from l_k; 2 queries.

    ``step`` eta' (None: 1 / (1 + beta)); needs eta' beta <= 1.
    """

    def __init__(
        self,
        game: PreferenceGame,
        *,
        step=None,
        tol: float = 1e-8,
        init=None,
        target=None,
        check_every: int = 1,
        backend: str = "auto",
    ) -> None:
        super().__init__(game, tol=tol, init=init, target=target, check_every=check_every, backend=backend)
        self.step_size = self._step_array(1 / (1 + np.asarray(game.beta)) if step is None else step)
        if float(self.xp.max(self.step_size * self.arrays.beta)) > 1 + 1e-12:
            raise ValueError(f"step: extragradient needs eta' beta <= 1, got eta' = {step}")
        self._weights = self._linearised_weights(self.step_size)

    def _update(self):
        anchor = self._log_pi
        leading = self._mirror_step(self._weights, anchor, self._product_at_iterate())
        return self._mirror_step(self._weights, anchor, self._query(leading))


class OptimisticMirrorDescent(_SelfPlay):
    """Single-call optimistic mirror prox (module docstring, step 5): the leading step reuses the last query.

    ``step`` eta' (None: 1).
    """

    def __init__(
        self,
        game: PreferenceGame,
        *,
        step=None,
        tol: float = 1e-8,
        init=None,
        target=None,
        check_every: int = 1,
        backend: str = "auto",
    ) -> None:
        super().__init__(game, tol=tol, init=init, target=target, check_every=check_every, backend=backend)
        self.step_size = self._step_array(1.0 if step is None else step)
        self._weights = self._prox_weights(self.step_size)
        self._last_gain = None  # g_k = P e^{h_k}

    def _reset_state(self) -> None:
        self._last_gain = None

    def _update(self):
        if self._last_gain is None:
            self._last_gain = self._product_at_iterate()
        anchor = self._log_pi
        leading = self._mirror_step(self._weights, anchor, self._last_gain)
        self._last_gain = self._query(leading)
        return self._mirror_step(self._weights, anchor, self._last_gain)


class ApproximateNashMirrorProx(_SelfPlay):
    """Approximate Nash-MP (module docstring, step 6): each prox by stochastic policy gradient from sampled duels.

    ``step`` eta' (None: 2, at most 2), ``n_samples`` duels per gradient, ``inner_steps`` gradient steps per prox,
    ``learning_rate`` on the logits.
    ``seed``: an int or Generator (one game), or one per game for a batch; an int for a batch is spawned into one
    stream per game. Sampling runs on the host (numpy); queries count duels.
    """

    def __init__(
        self,
        game: PreferenceGame,
        *,
        step=None,
        n_samples: int = 1000,
        inner_steps: int = 4,
        learning_rate: float = 1.0,
        seed=0,
        tol: float = 1e-8,
        init=None,
        target=None,
        check_every: int = 1,
        backend: str = "auto",
    ) -> None:
        super().__init__(game, tol=tol, init=init, target=target, check_every=check_every, backend=backend)
        step = NASH_MP_STEP_LIMIT if step is None else step
        self.step_size = self._step_array(step)
        if np.max(np.asarray(step)) > NASH_MP_STEP_LIMIT:
            raise ValueError(f"step: expected eta' <= {NASH_MP_STEP_LIMIT} (Nash-MP's limit), got {step}")
        self.n_samples = _integer_at_least(n_samples, "n_samples", 1)
        self.inner_steps = _integer_at_least(inner_steps, "inner_steps", 1)
        if not (np.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"learning_rate: expected a positive policy-gradient step, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self._rngs = self._generators(seed)
        self._weights = self._prox_weights(self.step_size)

    def _generators(self, seed) -> list[np.random.Generator]:
        n_games = self.game.batch_size
        if isinstance(seed, list | tuple | np.ndarray):
            if len(seed) != n_games:
                raise ValueError(f"seed: expected one seed per game ({n_games}), got {len(seed)}")
            return [_generator(s) for s in seed]
        rng = _generator(seed)
        return rng.spawn(n_games) if self.game.batch_shape else [rng]

    def _duel_gradient(self, log_pi, opponent_log):
        """(1/n) sum_i (o_i - 1/2)(e_{y_i} - pi) per game (shape batch + (A,)), from n_samples duels per game."""
        n_actions, n = self.game.n_actions, self.n_samples
        pi = to_numpy(self.xp.exp(log_pi)).astype(np.float64).reshape(-1, n_actions)
        opponent = to_numpy(self.xp.exp(opponent_log)).astype(np.float64).reshape(-1, n_actions)
        cdf, opponent_cdf = np.cumsum(pi, axis=1), np.cumsum(opponent, axis=1)
        gradient = np.empty_like(pi)
        for game, rng in enumerate(self._rngs):
            draws = rng.random((3, n))
            actions = np.searchsorted(cdf[game], draws[0] * cdf[game, -1], side="right")
            rivals = np.searchsorted(opponent_cdf[game], draws[1] * opponent_cdf[game, -1], side="right")
            actions, rivals = np.minimum(actions, n_actions - 1), np.minimum(rivals, n_actions - 1)
            win = to_numpy(self.arrays.operator.entries(game, self.xp.asarray(actions), self.xp.asarray(rivals)))
            centred = (draws[2] < win) - 0.5
            gradient[game] = (np.bincount(actions, centred, minlength=n_actions) - centred.sum() * pi[game]) / n
        self.queries += n
        return self.xp.asarray(gradient.reshape(self.arrays.shape), dtype=self.dtype)

    def _approximate_prox(self, anchor, opponent_log):
        a, prior, c = self._weights
        theta = anchor
        for _ in range(self.inner_steps):
            pi = self.xp.exp(theta)
            known = a * anchor + prior - theta  # s without the preference term; theta is normalised (= log pi)
            known_gradient = pi * (known - self.xp.sum(pi * known, axis=-1, keepdims=True))
            gradient = known_gradient + c * self._duel_gradient(theta, opponent_log)
            theta = normalise_logits(theta + self.learning_rate * gradient)
        return theta

    def _update(self):
        anchor = self._log_pi
        half = self._approximate_prox(anchor, anchor)
        return self._approximate_prox(anchor, half)


METHODS = {
    "nash_mp": NashMirrorProx,
    "nash_md": NashMD,
    "mmd": RegularisedMirrorDescent,
    "extragradient": Extragradient,
    "optimistic": OptimisticMirrorDescent,
    "approx_nash_mp": ApproximateNashMirrorProx,
}


@dataclass(frozen=True, kw_only=True)
class NashResult(SolverResult):
    """``log_policy`` and ``policy`` (shape batch + (A,)), the ``certificate`` 1/2 span(r)^2 >= KL(pi* || pi) and
    the ``exploitability`` (floats, or arrays per game), the method's ``queries`` per game, its name and backend."""

    log_policy: np.ndarray
    policy: np.ndarray
    certificate: float | np.ndarray
    exploitability: float | np.ndarray
    queries: int
    method: str
    backend: str


def solve_nash(
    game: PreferenceGame,
    method: str = "nash_mp",
    *,
    step=None,
    tol: float = 1e-8,
    max_iter: int = 10_000,
    init=None,
    target=None,
    callback: Callback | None = None,
    callback_every: int = 1,
    progress: bool = False,
    backend: str = "auto",
    **options,
) -> NashResult:
    """Run ``method`` (one of ``METHODS``) on ``game`` (one game or a batch) until KL(pi* || pi) <= ``tol`` is
    certified, the callback returns True, or ``max_iter``.

    ``step`` None takes the method's default; ``init`` is the starting policy (default mu); ``target`` is log pi*
    (adds ``kl`` and ``span`` to the history); ``options`` go to the method's class (``unsafe_step``,
    ``check_every``, ``n_samples``, ``inner_steps``, ``learning_rate``, ``seed``).
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {tuple(METHODS)}, got {method!r}")
    solver = METHODS[method](game, step=step, tol=tol, init=init, target=target, backend=backend, **options)
    outcome = iterate(solver, max_iter=max_iter, callback=callback, callback_every=callback_every, progress=progress)
    log_policy = solver.log_policy
    return NashResult(
        log_policy=log_policy,
        policy=np.exp(log_policy),
        certificate=solver.certificate,
        exploitability=solver.exploitability,
        queries=solver.queries,
        method=method,
        backend=solver.xp.__name__,
        **outcome.fields(),
    )
