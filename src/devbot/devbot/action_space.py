"""A robot's discrete action space, loaded from its params YAML. ROS-free.

The file (e.g. ``config/toroidal_dot.yaml``) holds::

    robot:
      type: toroidal_dot                 # robot type, also stored in bag metadata
    action_space:
      channels:                          # named float channels, in message order
        - {name: action, min: 0, max: 1} # normalisation range of each channel
      actions:                           # the discrete actions, a value per channel
        - {action: 0}
        - {action: 1}

Every node (robot, selectors, world model, recorder) reads the same file, so they agree on the
channel order, the discrete actions and the normalisation used by the predictor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# Two values closer than this are the same action value (the values travel as float64 in
# JointState but are written as decimals in YAML).
VALUE_TOLERANCE = 1e-6


class ActionError(ValueError):
    """An action that is malformed or not part of the action space."""


class ConfigError(ValueError):
    """A robot configuration file that cannot be used."""


@dataclass(frozen=True)
class Channel:
    name: str  # channel name, e.g. "motor_left"
    min: float  # lower end of the normalisation range
    max: float  # upper end of the normalisation range


@dataclass(frozen=True)
class ActionSpace:
    """Named channels and the discrete actions over them.

    Attributes:
        robot_type: the robot this space belongs to (e.g. "toroidal_dot", "jetbot").
        channels: the channels, in the order used by messages and tensors.
        actions: the discrete actions, each a tuple of one value per channel.
    """

    robot_type: str
    channels: tuple[Channel, ...]
    actions: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not self.channels:
            raise ConfigError('action_space.channels is empty')
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ConfigError(f'duplicate channel names in {names}')
        for c in self.channels:
            if not (math.isfinite(c.min) and math.isfinite(c.max)) or c.min > c.max:
                raise ConfigError(
                    f'channel {c.name!r}: need finite min <= max, got [{c.min}, {c.max}]'
                )
        if not self.actions:
            raise ConfigError('action_space.actions is empty')
        for i, a in enumerate(self.actions):
            if len(a) != len(self.channels):
                raise ConfigError(
                    f'action {i} has {len(a)} values for {len(self.channels)} channels'
                )
            self._check_in_range(a, what=f'action {i}', error=ConfigError)
        for i in range(len(self.actions)):
            for j in range(i):
                if self._same(self.actions[i], self.actions[j]):
                    raise ConfigError(f'actions {j} and {i} are identical: {self.actions[i]}')

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], robot_type: str | None = None) -> 'ActionSpace':
        """Build from the ``action_space`` mapping (channels + actions) of a robot file."""
        if not isinstance(data, Mapping):
            raise ConfigError(f'action_space must be a mapping, got {type(data).__name__}')
        raw_channels = data.get('channels')
        raw_actions = data.get('actions')
        if not isinstance(raw_channels, Sequence) or isinstance(raw_channels, str):
            raise ConfigError('action_space.channels must be a list of {name, min, max}')
        if not isinstance(raw_actions, Sequence) or isinstance(raw_actions, str):
            raise ConfigError('action_space.actions must be a list of {channel: value} mappings')
        channels = []
        for i, ch in enumerate(raw_channels):
            if not isinstance(ch, Mapping) or set(ch) != {'name', 'min', 'max'}:
                raise ConfigError(
                    f'action_space.channels[{i}] must have exactly name, min, max; got {ch!r}'
                )
            channels.append(
                Channel(
                    str(ch['name']),
                    _number(ch['min'], f'channels[{i}].min'),
                    _number(ch['max'], f'channels[{i}].max'),
                )
            )
        names = [c.name for c in channels]
        actions = []
        for i, act in enumerate(raw_actions):
            if not isinstance(act, Mapping):
                raise ConfigError(f'action_space.actions[{i}] must be a mapping, got {act!r}')
            if set(act) != set(names):
                raise ConfigError(
                    f'action_space.actions[{i}] has channels {sorted(act)}, expected {names}'
                )
            actions.append(tuple(_number(act[n], f'actions[{i}].{n}') for n in names))
        return cls(
            robot_type or str(data.get('robot_type', 'unknown')), tuple(channels), tuple(actions)
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> 'ActionSpace':
        """Load the action space of a robot file (see the module docstring)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f'robot config not found: {path}')
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f'{path}: invalid YAML: {exc}') from exc
        if not isinstance(doc, Mapping) or 'action_space' not in doc:
            raise ConfigError(f'{path}: no action_space section')
        robot = doc.get('robot') or {}
        try:
            return cls.from_dict(doc['action_space'], robot_type=robot.get('type'))
        except ConfigError as exc:
            raise ConfigError(f'{path}: {exc}') from exc

    def to_dict(self) -> dict[str, Any]:
        """The inverse of :meth:`from_dict` (stored in bag metadata and checkpoints)."""
        return {
            'robot_type': self.robot_type,
            'channels': [{'name': c.name, 'min': c.min, 'max': c.max} for c in self.channels],
            'actions': [dict(zip(self.channel_names, a)) for a in self.actions],
        }

    # ------------------------------------------------------------------ queries

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    @property
    def num_actions(self) -> int:
        return len(self.actions)

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    def check_index(self, index: object) -> int:
        """``index`` as an int.

        Raises:
            ActionError: not an integer in [0, num_actions) (a bool is not an index).
        """
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not 0 <= index < self.num_actions
        ):
            raise ActionError(
                f'action index must be an integer in [0, {self.num_actions}), got {index!r}'
            )
        return int(index)

    def values(self, index: int) -> dict[str, float]:
        """The channel values of discrete action ``index``."""
        return dict(zip(self.channel_names, self.actions[self.check_index(index)]))

    def label(self, index: int, *, varying_only: bool = False, indexed: bool = False) -> str:
        """A short description of discrete action ``index``.

        Args:
            index: the action.
            varying_only: show only the channels whose value differs between actions (all of
                them when none does): ``motor_right=0.12`` instead of
                ``motor_left=0, motor_right=0.12, duration=0.2``.
            indexed: prefix the index: ``1: action=1``.
        Raises:
            ActionError: ``index`` is not an action of this space.
        """
        values = self.values(index)
        shown = list(self.channel_names)
        if varying_only:
            varying = [n for k, n in enumerate(shown) if len({a[k] for a in self.actions}) > 1]
            shown = varying or shown
        text = ', '.join(f'{n}={values[n]:g}' for n in shown)
        return f'{index}: {text}' if indexed else text

    def index_of(self, names: Sequence[str], values: Sequence[float]) -> int:
        """The index of the discrete action given as parallel channel names and values.

        Raises:
            ActionError: unknown, missing or repeated channels, non-finite values, values out
                of a channel's range, or a combination that is not one of the discrete actions.
        """
        names = list(names)
        values = list(values)
        if len(names) != len(values):
            raise ActionError(f'{len(names)} channel names but {len(values)} values')
        unknown = [n for n in names if n not in self.channel_names]
        if unknown:
            raise ActionError(
                f'unknown channel(s) {unknown}; this action space has {list(self.channel_names)}'
            )
        if len(set(names)) != len(names):
            raise ActionError(f'repeated channel names in {names}')
        missing = [n for n in self.channel_names if n not in names]
        if missing:
            raise ActionError(f'missing channel(s) {missing}')
        by_name = dict(zip(names, values))
        try:
            ordered = tuple(float(by_name[n]) for n in self.channel_names)
        except (TypeError, ValueError) as exc:
            raise ActionError(f'action values must be numbers: {values!r}') from exc
        bad = [n for n, v in zip(self.channel_names, ordered) if not math.isfinite(v)]
        if bad:
            raise ActionError(
                f'non-finite value in channel(s) {bad}: {dict(zip(self.channel_names, ordered))}'
            )
        self._check_in_range(ordered, what='action', error=ActionError)
        for i, a in enumerate(self.actions):
            if self._same(a, ordered):
                return i
        raise ActionError(
            f'{dict(zip(self.channel_names, ordered))} is not one of the {self.num_actions} '
            f'discrete actions {[self.values(i) for i in range(self.num_actions)]}'
        )

    def normalized(self) -> np.ndarray:
        """All actions scaled per channel to [-1, 1]; a constant channel maps to 0.

        Returns:
            [A, C] float32.
        """
        acts = np.asarray(self.actions, dtype=np.float64)
        lo = np.array([c.min for c in self.channels])
        hi = np.array([c.max for c in self.channels])
        span = hi - lo
        safe = np.where(span > 0, span, 1.0)
        out = np.where(span > 0, 2.0 * (acts - lo) / safe - 1.0, 0.0)
        return out.astype(np.float32)

    # ------------------------------------------------------------------ helpers

    def _check_in_range(self, values: Sequence[float], what: str, error: type[Exception]) -> None:
        for c, v in zip(self.channels, values):
            if not (c.min - VALUE_TOLERANCE <= v <= c.max + VALUE_TOLERANCE):
                raise error(f'{what}: {c.name}={v} outside its range [{c.min}, {c.max}]')

    @staticmethod
    def _same(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(abs(x - y) <= VALUE_TOLERANCE for x, y in zip(a, b))


def candidate_label(level: int, primitives: Sequence[int]) -> str:
    """The name of a scored candidate in ``world_model/action_scores``: ``L0:1`` for primitive
    action 1, ``L1:1-0`` for the level-1 macro-action executing 1 then 0."""
    return f'L{level}:' + '-'.join(str(int(p)) for p in primitives)


def parse_candidate_label(label: str, num_actions: int) -> tuple[int, tuple[int, ...]] | None:
    """(level, primitive actions) of a candidate name (``L0:1``, ``L1:1-0``; a plain ``1`` is
    primitive action 1 at level 0); None when the name is malformed or names an action outside
    [0, num_actions)."""
    level = 0
    body = label
    if label.startswith('L') and ':' in label:
        head, body = label[1:].split(':', 1)
        if not head.isdigit():
            return None
        level = int(head)
    parts = body.split('-')
    if not all(p.isdigit() for p in parts):
        return None
    primitives = tuple(int(p) for p in parts)
    if not all(p < num_actions for p in primitives):
        return None
    return level, primitives


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f'{where} must be a number, got {value!r}')
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f'{where} must be finite, got {value}')
    return value
