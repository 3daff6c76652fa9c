"""The recorded policy: replays the actions of a recorded session in order. ROS-free.

``RecordedPolicy(session_path, action_space, filter='actions=1')`` reads the session's
transitions (frame, executed action, next frame) through :mod:`devbot.bag.session` and answers
``choose()`` with their actions, one per call, in recorded order. When every action has been
replayed, ``choose()`` raises :class:`RecordingFinished`: the selector node ends the run cleanly
on it (the same way it ends at ``max_steps``).

The optional filter (:mod:`devbot.bag.filter`, e.g. ``actions=1`` or ``motor_right>0; from=10``)
keeps or drops **whole transitions**, never just an action: a replayed action is always one
that was executed between the two frames it was recorded with, and ``transitions`` (the kept
ones, with their frame indices and stamps) lets a consumer pair each replayed action with
exactly those frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from devbot.action_space import ActionSpace
from devbot.bag.filter import TransitionFilter
from devbot.bag.session import Session, Transition, read_info


class RecordingFinished(Exception):
    """Every action of the recording has been replayed: end the run."""


class RecordedPolicy:
    """Replays a session's actions (optionally filtered by whole transitions), then finishes.

    Args:
        session_path: the recorded session (a rosbag2 bag directory).
        action_space: the live robot's action space; the session must have been recorded with
            the same channels and actions (else ValueError). None = use the session's own.
        filter: a :class:`~devbot.bag.filter.TransitionFilter` expression ('' keeps all).

    Raises:
        devbot.bag.BagError: the session cannot be read (missing, foreign, corrupt, unfinished).
        devbot.bag.FilterError: a malformed filter.
        ValueError: action spaces differ.
    """

    def __init__(
        self, session_path: str | Path, action_space: ActionSpace | None = None, filter: str = ''
    ) -> None:
        recorded = read_info(session_path).action_space
        if (
            action_space is not None
            and recorded is not None
            and not _same_space(recorded, action_space)
        ):
            raise ValueError(
                f'{session_path} was recorded with the action space {recorded.to_dict()}, '
                f"which differs from this robot's {action_space.to_dict()}"
            )
        with Session(
            session_path, action_space=action_space if recorded is None else None
        ) as session:
            self.space = session.action_space
            self.filter = TransitionFilter.parse(filter, self.space)
            self.transitions: list[Transition] = list(
                session.transitions(self.filter, frames=False)
            )
            self.total_recorded = len(session.transition_list())
        self.session_path = Path(session_path)
        self._position = 0

    @property
    def actions(self) -> list[int]:
        """The actions to replay, in order."""
        return [t.action for t in self.transitions]

    @property
    def remaining(self) -> int:
        return len(self.transitions) - self._position

    @property
    def finished(self) -> bool:
        return self._position >= len(self.transitions)

    @property
    def current(self) -> Transition | None:
        """The transition whose action was returned last (None before the first choice)."""
        return self.transitions[self._position - 1] if self._position else None

    def choose(self, scores: Mapping[str, float] | None = None) -> int:
        """The next recorded action; raises :class:`RecordingFinished` after the last one."""
        if self.finished:
            raise RecordingFinished(
                f'all {len(self.transitions)} recorded actions of {self.session_path} replayed'
            )
        action = self.transitions[self._position].action
        self._position += 1
        return action


def _same_space(a: ActionSpace, b: ActionSpace) -> bool:
    return (
        a.channel_names == b.channel_names
        and a.num_actions == b.num_actions
        and all(a._same(x, y) for x, y in zip(a.actions, b.actions))
    )
