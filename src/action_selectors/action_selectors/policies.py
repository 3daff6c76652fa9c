"""Action selection policies, ROS-free.

A policy answers ``choose(scores)`` with a discrete action index. ``scores`` is the world
model's per-candidate uncertainty (a mapping label -> score) when the selector runs beside a
world model, else None (runner mode: the selector reacts to frames).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from devbot.action_space import parse_candidate_label

# The original's predefined sequences for the toroidal dot (0 = stay, 1 = move right).
SEQUENCES: dict[str, tuple[int, ...]] = {
    'ALWAYS_MOVE': (1,),
    'ALWAYS_STAY': (0,),
    'ALTERNATE': (0, 1),
    'DOUBLE_MOVE': (1, 1, 0),
    'TRIPLE_MOVE': (1, 1, 1, 0),
}

# The uncertainty policy's default share of random choices (the original: 0, pure argmax, which
# on the dot executed "move" 96% of the time once "stay" was known; see docs/design.md).
RANDOM_CHOICE_PROBABILITY = 0.25


class Policy(Protocol):
    """Chooses the next discrete action."""

    def choose(self, scores: Mapping[str, float] | None = None) -> int: ...


def _check_index(action: int, num_actions: int) -> int:
    if (
        isinstance(action, bool)
        or not isinstance(action, (int, np.integer))
        or not 0 <= action < num_actions
    ):
        raise ValueError(f'action {action!r} is not an index in [0, {num_actions})')
    return int(action)


class ConstantPolicy:
    """Always the same action."""

    def __init__(self, action: int, num_actions: int) -> None:
        self.action = _check_index(action, num_actions)

    def choose(self, scores: Mapping[str, float] | None = None) -> int:
        return self.action


class SequencePolicy:
    """Cycles through a fixed sequence of actions."""

    def __init__(self, sequence: Sequence[int], num_actions: int) -> None:
        if not sequence:
            raise ValueError('a sequence needs at least one action')
        self.sequence = tuple(_check_index(a, num_actions) for a in sequence)
        self._position = 0

    def choose(self, scores: Mapping[str, float] | None = None) -> int:
        action = self.sequence[self._position]
        self._position = (self._position + 1) % len(self.sequence)
        return action


class RandomPolicy:
    """Uniformly random actions from a seeded generator."""

    def __init__(self, num_actions: int, seed: int | None = None) -> None:
        if num_actions < 1:
            raise ValueError('need at least one action')
        self.num_actions = num_actions
        self._rng = np.random.default_rng(seed)

    def choose(self, scores: Mapping[str, float] | None = None) -> int:
        return int(self._rng.integers(0, self.num_actions))


class UncertaintyPolicy:
    """The candidate with the highest predictive uncertainty; ties broken at random.

    Scores are keyed by the world model's candidate labels: ``L0:<a>`` for primitive action a,
    ``L<k>:<a1>-<a2>-...`` for a level-k macro-action (a plain ``<a>`` also means primitive a).
    When a macro-action wins, its primitives are executed one per call, in order, before the
    scores are consulted again.

    Args:
        num_actions: the robot's primitive actions.
        seed: seed of the random tie-breaks and random choices (None: a random seed).
        random_choice_probability: with this probability a call chooses a uniformly random
            candidate instead of the most uncertain one. Pure argmax (0) settles on the action
            whose outcome stays hardest to predict and almost never executes the others once
            they are known, so the world model never sees them mixed into its contexts.
    """

    def __init__(
        self, num_actions: int, seed: int | None = None, random_choice_probability: float = 0.0
    ) -> None:
        if not 0.0 <= random_choice_probability <= 1.0:
            raise ValueError(
                f'random_choice_probability must be in [0, 1], got {random_choice_probability}'
            )
        self.num_actions = num_actions
        self.random_choice_probability = float(random_choice_probability)
        self._rng = np.random.default_rng(seed)
        self._plan: list[int] = []

    def choose(self, scores: Mapping[str, float] | None = None) -> int:
        if self._plan:
            return self._plan.pop(0)
        if not scores:
            raise ValueError('the uncertainty policy needs world_model/action_scores')
        candidates = {}
        for label, score in scores.items():
            parsed = parse_candidate_label(label, self.num_actions)
            if parsed is not None and np.isfinite(score):
                candidates[parsed[1]] = float(score)
        if not candidates:
            raise ValueError(f'no usable candidate in {dict(scores)}')
        # no draw at probability 0, so a seed gives the same tie-breaks as pure argmax
        if self.random_choice_probability and self._rng.random() < self.random_choice_probability:
            pool = sorted(candidates)
        else:
            best = max(candidates.values())
            pool = sorted(c for c, s in candidates.items() if s == best)
        plan = list(pool[self._rng.integers(0, len(pool))])
        self._plan = plan[1:]
        return plan[0]

    def drop_plan(self) -> None:
        """Forget the rest of a macro-action being executed (e.g. when an episode ends)."""
        self._plan = []


def parse_sequence(text: str) -> tuple[int, ...]:
    """A predefined sequence name (``ALTERNATE``) or a comma-separated list (``1,1,0``)."""
    name = text.strip().upper().removeprefix('SEQUENCE_')
    if name in SEQUENCES:
        return SEQUENCES[name]
    try:
        values = tuple(int(part) for part in text.split(','))
    except ValueError:
        raise ValueError(
            f'sequence {text!r} is neither one of {sorted(SEQUENCES)} '
            f'nor a comma-separated list of action indices'
        ) from None
    return values


def make_policy(
    name: str,
    num_actions: int,
    *,
    action: int = 0,
    sequence: str = 'ALWAYS_MOVE',
    seed: int | None = None,
    random_choice_probability: float = 0.0,
) -> Policy:
    """Build a policy by name: constant, sequence, random or uncertainty (the keywords are the
    options of the policies that use them)."""
    if name == 'constant':
        return ConstantPolicy(action, num_actions)
    if name == 'sequence':
        return SequencePolicy(parse_sequence(sequence), num_actions)
    if name == 'random':
        return RandomPolicy(num_actions, seed)
    if name == 'uncertainty':
        return UncertaintyPolicy(num_actions, seed, random_choice_probability)
    raise ValueError(
        f'unknown policy {name!r}; choose one of constant, sequence, random, uncertainty'
    )
