"""The interactive selector: a person confirms or overrides every action from a terminal.

On each trigger (a new camera frame in runner mode, a ``world_model/action_scores`` message
beside a world model) the selector shows the proposed action and waits for one line:

    <Enter>                         accept the proposal
    1                               action index
    {"action": 1}                   JSON: an index ({"action": i} / {"index": i}, when the
                                    robot has no channel of that name) ...
    {"motor_right": 0.12}           ... or channel values
    [0.0, 0.12, 0.2]                JSON list: one value per channel, in channel order
    motor_right=0.12 duration=0.2   key=value channel values (spaces or commas between them)
    stop                            end the run (also: quit, exit, Ctrl-D)
    help                            list the actions and these forms

Channel values must name one of the robot's discrete actions. **Channels left out are taken
from the proposed action**, so ``motor_right=0`` on a proposed "turn" means "stay". Typed input
is parsed strictly as data (JSON, numbers, names): it is never evaluated, so a line like
``__import__('os').system('x')`` is just a bad action. A bad line gets a message saying what is
wrong and the prompt comes back; nothing is sent.

The proposal comes from an inner policy: the candidate with the highest uncertainty when scores
are given (level-0 labels ``"1"`` or ``"L0:1"``), else the configured constant / sequence /
random policy.

The module's top half is ROS-free (parsing, proposals, prompt text); the ROS node below it
imports rclpy only when it runs.

Node ``interactive_selector`` (console script; needs a terminal, so start it in its own one)::

    interactive_selector --ros-args -r __ns:=/toroidal_dot \\
        -p robot_config:=config/toroidal_dot.yaml
    interactive_selector --ros-args -r __ns:=/toroidal_dot \\
        -p robot_config:=config/toroidal_dot.yaml \\
        -p policy:=sequence -p sequence:=ALTERNATE -p trigger:=scores

Subscribed topics:
    camera/image_raw (sensor_msgs/Image): triggers a proposal (trigger=frame). Read raw, only
        the header stamp; frames are de-duplicated by stamp (the robot re-sends its current
        frame to late joiners).
    world_model/action_scores (sensor_msgs/JointState): triggers a proposal (trigger=scores);
        name = candidate labels, position = uncertainty.

Published topics:
    motor_command (sensor_msgs/JointState): the accepted or typed action.

Parameters:
    robot_config (string): robot file with the action space (required).
    policy (string): constant | sequence | random: the proposal without scores [sequence].
    action (int): the action of the constant policy [0].
    sequence (string): predefined name or comma-separated indices [ALWAYS_MOVE].
    seed (int): RNG seed of the random policy and of uncertainty ties; -1 = random [-1].
    trigger (string): frame | scores [frame].
    report_dir (string): write runner_stats.json here at the end; empty = no file [''].

``stop`` (or Ctrl-D, Ctrl-C, SIGTERM) prints the runner statistics and exits with status 0.
Without a terminal on stdin (e.g. started by a launch file, which gives its processes
/dev/null) it exits with status 2 and says how to start it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from action_selectors.policies import UncertaintyPolicy, make_policy
from devbot import topics
from devbot.action_space import ActionError, ActionSpace, parse_candidate_label

# longest line we try to parse (anything longer is refused, not truncated)
MAX_LINE = 1000
STOP_WORDS = frozenset({'stop', 'quit', 'exit'})
HELP_WORDS = frozenset({'help', '?', 'h'})
INDEX_KEYS = ('action', 'index')
_NUMBER = re.compile(r'^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$')
_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


class InputError(ValueError):
    """A typed line that is not an action; the message says what is wrong."""


@dataclass(frozen=True)
class Decision:
    """What a typed line asks for.

    kind: ``accept`` (the proposal), ``action`` (``action`` holds the index), ``stop`` or
    ``help``. ``action`` is set for accept too (the proposal's index).
    """

    kind: str
    action: int | None = None


# ---------------------------------------------------------------------------------------------
# parsing typed lines (data only, never code)


def parse_input(line: str, space: ActionSpace, proposed: int | None) -> Decision:
    """Interpret one typed line against ``space``; ``proposed`` is the action on offer.

    Raises:
        InputError: the line is not an action of ``space`` (the message explains why).
    """
    text = line.strip()
    if len(text) > MAX_LINE:
        raise InputError(f'line too long ({len(text)} characters, at most {MAX_LINE})')
    if not text:
        if proposed is None:
            raise InputError('nothing proposed yet: type an action')
        return Decision('accept', proposed)
    word = text.lower()
    if word in STOP_WORDS:
        return Decision('stop')
    if word in HELP_WORDS:
        return Decision('help')
    if _NUMBER.match(text):
        return Decision('action', _index(text, space))
    if text[0] in '{[':
        return Decision('action', _from_json(text, space, proposed))
    if '=' in text:
        return Decision('action', _from_pairs(text, space, proposed))
    raise InputError(f'not an action: {_short(text)!r}. {FORMS_HINT}')


FORMS_HINT = (
    'Type Enter (accept), an index, JSON ({"channel": value} or {"action": index}), '
    'channel=value pairs, stop, or help.'
)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + '...'


def _index(text: str, space: ActionSpace) -> int:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f'{text!r} is not a number') from None
    if not value.is_integer():
        raise InputError(f'an action index is a whole number, got {text!r}')
    return _check_index(int(value), space)


def _check_index(index: int, space: ActionSpace) -> int:
    if not 0 <= index < space.num_actions:
        raise InputError(f'no action {index}: this robot has actions 0..{space.num_actions - 1}')
    return index


def _reject_constant(name: str):
    raise InputError(f'{name} is not a usable value (numbers must be finite)')


def _from_json(text: str, space: ActionSpace, proposed: int | None) -> int:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f'invalid JSON: {exc.msg} at column {exc.colno}') from None
    if isinstance(data, list):
        if len(data) != space.num_channels:
            raise InputError(
                f'a JSON list needs one value per channel {list(space.channel_names)}, '
                f'got {len(data)} value(s)'
            )
        return _from_values(
            dict(
                zip(
                    space.channel_names, (_json_number(v, f'value {i}') for i, v in enumerate(data))
                )
            ),
            space,
            proposed,
        )
    if not isinstance(data, dict):
        raise InputError(f'JSON must be an object or a list, got {type(data).__name__}')
    if not data:
        raise InputError('empty JSON object: name channels or {"action": index}')
    keys = set(data)
    if not keys <= set(space.channel_names):
        index_keys = keys & set(INDEX_KEYS)
        if keys == index_keys and len(keys) == 1:
            key = keys.pop()
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f'"{key}" must be an integer action index, got {value!r}')
            return _check_index(value, space)
        unknown = sorted(keys - set(space.channel_names))
        raise InputError(
            f'unknown key(s) {unknown}: use the channels {list(space.channel_names)} '
            f'or {{"action": index}}'
        )
    return _from_values({k: _json_number(v, k) for k, v in data.items()}, space, proposed)


def _json_number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f'{where}: expected a number, got {value!r}')
    return float(value)


def _from_pairs(text: str, space: ActionSpace, proposed: int | None) -> int:
    pairs = [p for p in re.split(r'[\s,;]+', text) if p]
    values: dict[str, float] = {}
    index = None
    for pair in pairs:
        key, sep, raw = pair.partition('=')
        if not sep or not key or not raw:
            raise InputError(f'{_short(pair)!r} is not key=value')
        if not _NAME.match(key):
            raise InputError(f'{_short(key)!r} is not a channel name')
        if not _NUMBER.match(raw):
            raise InputError(f'{key}: {_short(raw)!r} is not a number')
        if key in values or (index is not None and key in INDEX_KEYS):
            raise InputError(f'{key} given twice')
        if key in space.channel_names:
            values[key] = float(raw)
        elif key in INDEX_KEYS:
            index = _index(raw, space)
        else:
            raise InputError(f'unknown channel {key!r}; this robot has {list(space.channel_names)}')
    if index is not None:
        if values:
            raise InputError(f'give either {INDEX_KEYS[0]}=index or channel values, not both')
        return index
    return _from_values(values, space, proposed)


def _from_values(values: Mapping[str, float], space: ActionSpace, proposed: int | None) -> int:
    """Channel values -> index; channels left out come from the proposed action."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise InputError(f'{name}: {value} is not finite')
    missing = [n for n in space.channel_names if n not in values]
    full = dict(values)
    if missing:
        if proposed is None:
            raise InputError(f'missing channel(s) {missing} (nothing proposed to take them from)')
        base = space.values(proposed)
        full.update({n: base[n] for n in missing})
    try:
        return space.index_of(list(full), list(full.values()))
    except ActionError as exc:
        raise InputError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# proposals and what the terminal shows


def level0_scores(scores: Mapping[str, float] | None, num_actions: int) -> dict[int, float]:
    """Finite scores of the level-0 candidates (labels ``"1"`` or ``"L0:1"``), by action index."""
    out: dict[int, float] = {}
    for label, score in (scores or {}).items():
        parsed = parse_candidate_label(label, num_actions)
        if parsed is not None and parsed[0] == 0 and len(parsed[1]) == 1 and math.isfinite(score):
            out[parsed[1][0]] = float(score)
    return out


class Proposer:
    """The inner policy: most uncertain level-0 candidate when scores are usable, else a
    constant / sequence / random policy (see :func:`action_selectors.policies.make_policy`)."""

    def __init__(
        self,
        space: ActionSpace,
        policy: str = 'sequence',
        *,
        action: int = 0,
        sequence: str = 'ALWAYS_MOVE',
        seed: int | None = None,
    ) -> None:
        if policy not in ('constant', 'sequence', 'random'):
            raise ValueError(
                f'the interactive proposal policy must be constant, sequence or random, '
                f'got {policy!r} (scores, when given, are always used)'
            )
        self.num_actions = space.num_actions
        self.fallback = make_policy(
            policy, space.num_actions, action=action, sequence=sequence, seed=seed
        )
        self.uncertainty = UncertaintyPolicy(space.num_actions, seed)

    def propose(self, scores: Mapping[str, float] | None = None) -> int:
        usable = level0_scores(scores, self.num_actions)
        if usable:
            return self.uncertainty.choose({str(a): s for a, s in usable.items()})
        return self.fallback.choose(None)


def format_actions(space: ActionSpace) -> str:
    """The list of actions and input forms (shown at start and on ``help``)."""
    lines = [f'{space.robot_type}: {space.num_actions} actions']
    lines += [f'  {space.label(i, indexed=True)}' for i in range(space.num_actions)]
    example = space.values(min(1, space.num_actions - 1))
    pairs = ' '.join(f'{k}={v:g}' for k, v in example.items())
    forms = json.dumps(example) + ('' if 'action' in example else ' or {"action": 1}')
    lines += [
        f'input: Enter = accept the proposal | an index (1) | JSON ({forms}) | key=value ({pairs}; '
        'channels left out come from the proposal) | stop = end'
    ]
    return '\n'.join(lines)


def format_proposal(
    space: ActionSpace, step: int, proposed: int, scores: Mapping[str, float] | None = None
) -> str:
    """The text shown for each trigger: step, proposal and (if any) the score per candidate."""
    lines = [f'step {step}: proposed {proposed} ({space.label(proposed)})']
    if scores:
        usable = level0_scores(scores, space.num_actions)
        best = max(usable.values()) if usable else None
        parts = []
        for label, score in scores.items():
            parsed = parse_candidate_label(label, space.num_actions)
            level0 = parsed is not None and parsed[0] == 0 and len(parsed[1]) == 1
            mark = ' *' if best is not None and level0 and usable.get(parsed[1][0]) == best else ''
            parts.append(f'{label}: {score:.4g}{mark}')
        lines.append('  uncertainty  ' + '   '.join(parts))
    return '\n'.join(lines)


PROMPT = '[Enter] accept | action | stop > '


# ---------------------------------------------------------------------------------------------
# the ROS node (imports rclpy lazily: the part above stays ROS-free)

NOT_A_TTY = (
    'interactive_selector reads actions from a terminal, but stdin is not one '
    '(launch files give their processes /dev/null). Start it in its own terminal, e.g.\n'
    '  interactive_selector --ros-args -r __ns:=/toroidal_dot '
    '-p robot_config:=config/toroidal_dot.yaml'
)


class InteractiveSelector:
    """Wires a node: triggers -> proposal on the terminal -> typed line -> motor_command.

    Lines are read by a daemon thread (blocking ``readline``) into a queue; a 20 ms timer on the
    executor takes them, so the executor is never blocked by the terminal. An action typed while
    nothing is proposed waits for the next proposal (type-ahead); ``stop`` and ``help`` act at
    once, and a bare Enter is dropped with a note (it never accepts a proposal not yet shown).
    """

    def __init__(self, node, stdin=None, out=None) -> None:
        import queue
        import threading

        from sensor_msgs.msg import JointState

        from action_selectors.stats import RunnerStats
        from action_selectors.wiring import declare_policy_params, wire_trigger
        from devbot.params import declare

        self.node = node
        self.out = out or sys.stdout
        params = declare_policy_params(
            node,
            'constant | sequence | random: the proposal without scores',
            'RNG seed of the random policy and of ties',
        )
        self.trigger = declare(node, 'trigger', 'frame', 'frame | scores')
        self.report_dir = declare(
            node, 'report_dir', '', 'write runner_stats.json here at the end; empty = no file'
        )
        self.space = params.action_space
        self.proposer = Proposer(
            self.space,
            params.policy,
            action=params.action,
            sequence=params.sequence,
            seed=params.seed,
        )
        self.stats = RunnerStats(self.space.num_actions)
        self.done = False
        self._pending: tuple[int, dict | None] | None = None  # (proposed, scores) awaiting a line
        self._last_stamp = None
        self._lines: queue.Queue = queue.Queue()
        self._typeahead: list[str] = []
        self._command = JointState()

        self._publisher, source = wire_trigger(node, self.trigger, self._on_frame, self._on_scores)
        node.create_timer(0.02, self._poll)
        self._say(format_actions(self.space))
        self._say(f'waiting for {source} ...')
        stdin = stdin or sys.stdin
        threading.Thread(target=self._read_lines, args=(stdin,), daemon=True, name='stdin').start()

    # ------------------------------------------------------------------ terminal

    def _say(self, text: str, end: str = '\n') -> None:
        self.out.write(text + end)
        self.out.flush()

    def _read_lines(self, stdin) -> None:
        try:
            for line in iter(stdin.readline, ''):
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)  # end of input (Ctrl-D or the terminal went away)

    def _poll(self) -> None:
        import queue

        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            self._typeahead.append('stop' if line is None else line)
        while self._typeahead and not self.done:
            if self._pending is None:
                self._while_waiting()
                return
            self._handle(self._typeahead.pop(0))

    def _while_waiting(self) -> None:
        """Lines typed before anything is proposed: stop and help act now, an empty line (there
        is nothing to accept) is dropped with a note, actions wait for the next proposal."""
        keep = []
        for line in self._typeahead:
            word = line.strip().lower()
            if word in STOP_WORDS:
                self._stop()
                return
            if word in HELP_WORDS:
                self._say(format_actions(self.space))
            elif not word:
                self._say('  nothing proposed yet: Enter has nothing to accept')
            else:
                keep.append(line)
        self._typeahead = keep

    def _handle(self, line: str) -> None:
        proposed, scores = self._pending
        try:
            decision = parse_input(line, self.space, proposed)
        except InputError as exc:
            self._say(f'  not sent: {exc}')
            self._say(PROMPT, end='')
            return
        if decision.kind == 'stop':
            self._stop()
        elif decision.kind == 'help':
            self._say(format_actions(self.space))
            self._say(PROMPT, end='')
        elif not topics.robot_subscribed(self.node, self._publisher):
            # sent now, the command would be lost and the loop would wait for its outcome forever
            self._say(
                '  not sent: no robot listens to motor_command yet (is it running, in this '
                'namespace?); try again'
            )
            self._say(PROMPT, end='')
        else:
            self._send(decision.action, accepted=decision.kind == 'accept')

    def _stop(self) -> None:
        self.done = True
        self._pending = None
        self._say('stopping')

    # ------------------------------------------------------------------ ROS

    def _on_frame(self, serialized: bytes) -> None:
        from devbot.cdr import header_stamp

        stamp = header_stamp(serialized)
        if stamp == self._last_stamp:
            return  # the same frame re-sent to a late joiner
        self._last_stamp = stamp
        self._offer(None)

    def _on_scores(self, msg) -> None:
        self._offer(dict(zip(msg.name, msg.position)))

    def _offer(self, scores: dict | None) -> None:
        if self.done:
            return
        proposed = self.proposer.propose(scores)
        if self._pending is not None:
            self._say('\n  (a newer trigger arrived: proposal updated)')
        self._pending = (proposed, scores)
        self._say(format_proposal(self.space, self.stats.steps + 1, proposed, scores))
        self._say(PROMPT, end='')

    def _send(self, action: int, accepted: bool) -> None:
        import time

        from devbot.messages import action_to_joint_state

        self._pending = None
        self._publisher.publish(
            action_to_joint_state(
                self.space, action, self.node.get_clock().now().to_msg(), self._command
            )
        )
        self.stats.record(action, time.monotonic())
        self._say(
            f'  sent {action} ({self.space.label(action)})' + (' [accepted]' if accepted else '')
        )

    # ------------------------------------------------------------------ end of run

    def summary_text(self) -> str:
        """The runner statistics (also written to report_dir, if set)."""
        labels = {i: self.space.label(i) for i in range(self.space.num_actions)}
        return self.stats.finish(labels, self.report_dir)


def main(args: list[str] | None = None) -> int:
    argv = sys.argv[1:] if args is None else list(args)
    own = argv[: argv.index('--ros-args')] if '--ros-args' in argv else argv
    if '-h' in own or '--help' in own:
        print(__doc__)
        return 0
    if not sys.stdin.isatty():
        print(NOT_A_TTY, file=sys.stderr, flush=True)
        return 2

    import rclpy

    from devbot.spin import ros_process, spin_until

    # Ctrl-C / SIGTERM end the run like `stop`, between callbacks: an action is never published
    # without being counted
    with ros_process(args) as stop:
        node = rclpy.create_node('interactive_selector')
        try:
            selector = InteractiveSelector(node)
        except (ValueError, OSError) as exc:
            print(f'interactive_selector: {exc}', file=sys.stderr, flush=True)
            node.destroy_node()
            return 2
        try:
            spin_until(node, stop, lambda: selector.done)
        finally:
            print('\n' + selector.summary_text(), flush=True)
            node.destroy_node()
    return 0


if __name__ == '__main__':
    sys.exit(main())
