"""Choosing transitions of a session by a small, data-only filter expression. ROS-free.

A filter keeps or drops **whole transitions** (frame, action, next frame): it never separates an
action from the frames it belongs to, so a filtered stream is never mislabelled.

Syntax: terms separated by ``;``; a transition is kept when every term holds.

    actions=1          action index is 1 (also ``action=1``, unless a channel is named action)
    actions=0,2        action index is 0 or 2
    motor_right>0      a channel value compared with a number: = != < <= > >=
    from=10            action completed at least 10 s after the session start
    to=60              ... at most 60 s after the session start

Examples: ``actions=1``, ``motor_right=0.12; from=5``. An empty filter keeps everything. The text
is parsed as data, never evaluated.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field

from devbot.action_space import VALUE_TOLERANCE, ActionSpace

_OPS = {
    '=': lambda a, b: abs(a - b) <= VALUE_TOLERANCE,
    '!=': lambda a, b: abs(a - b) > VALUE_TOLERANCE,
    '<': operator.lt,
    '<=': operator.le,
    '>': operator.gt,
    '>=': operator.ge,
}
_TERM = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_./-]*)\s*(!=|<=|>=|=|<|>)\s*(.+?)\s*$')


class FilterError(ValueError):
    """A filter expression that cannot be used."""


@dataclass(frozen=True)
class TransitionFilter:
    """A parsed filter (see the module docstring). Call it on a transition."""

    text: str = ''
    actions: frozenset[int] | None = None
    channels: tuple[tuple[str, str, float], ...] = ()
    from_s: float | None = None
    to_s: float | None = None
    _space: ActionSpace | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str | None, space: ActionSpace) -> 'TransitionFilter':
        """Parse ``text`` against ``space`` (channel names and action indices are checked)."""
        text = (text or '').strip()
        actions, channels, from_s, to_s = None, [], None, None
        for raw in text.split(';'):
            if not raw.strip():
                continue
            match = _TERM.match(raw)
            if not match:
                raise FilterError(
                    f'filter term {raw!r} is not <name><op><value> (e.g. actions=1, motor_right>0)'
                )
            name, op, value = match.groups()
            if name == 'actions' or (name == 'action' and name not in space.channel_names):
                if op != '=':
                    raise FilterError(
                        f'{raw!r}: actions takes "=" and a list of indices, e.g. actions=0,2'
                    )
                try:
                    idx = frozenset(int(v) for v in value.split(','))
                except ValueError:
                    raise FilterError(f'{raw!r}: action indices must be integers') from None
                bad = sorted(i for i in idx if not 0 <= i < space.num_actions)
                if bad:
                    raise FilterError(
                        f'{raw!r}: no action {bad} in a space of {space.num_actions} actions'
                    )
                actions = idx if actions is None else actions & idx
                continue
            number = _number(raw, value)
            if name in ('from', 'to'):
                if op != '=':
                    raise FilterError(
                        f'{raw!r}: {name} takes "=" and seconds since the session start'
                    )
                if name == 'from':
                    from_s = number
                else:
                    to_s = number
                continue
            if name not in space.channel_names:
                raise FilterError(
                    f'{raw!r}: unknown channel {name!r}; channels are {list(space.channel_names)}, '
                    f'or use actions=, from=, to='
                )
            channels.append((name, op, number))
        return cls(text, actions, tuple(channels), from_s, to_s, space)

    def __call__(self, transition, start_ns: int = 0) -> bool:
        """Whether ``transition`` is kept.

        ``transition`` is anything with ``action``, ``values`` and ``action_stamp_ns``.
        """
        if self.actions is not None and transition.action not in self.actions:
            return False
        for name, op, number in self.channels:
            if not _OPS[op](transition.values[name], number):
                return False
        t = (transition.action_stamp_ns - start_ns) / 1e9
        if self.from_s is not None and t < self.from_s:
            return False
        if self.to_s is not None and t > self.to_s:
            return False
        return True

    @property
    def empty(self) -> bool:
        return (
            self.actions is None and not self.channels and self.from_s is None and self.to_s is None
        )


def _number(term: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise FilterError(f'{term!r}: {value!r} is not a number') from None
    if not math.isfinite(number):
        raise FilterError(f'{term!r}: the value must be finite')
    return number
