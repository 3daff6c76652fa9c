"""The interactive selector's ROS-free core: typed lines are parsed as data, never run."""

import io
from pathlib import Path

import pytest

from action_selectors.interactive import (
    Decision,
    InputError,
    Proposer,
    format_actions,
    format_proposal,
    level0_scores,
    main,
    parse_input,
)
from devbot.action_space import ActionSpace

REPO = Path(__file__).resolve().parents[3]
DOT = ActionSpace.from_yaml(REPO / 'config' / 'toroidal_dot.yaml')
JETBOT = ActionSpace.from_yaml(REPO / 'config' / 'jetbot.yaml')
STAY, TURN = 0, 1  # the JetBot's two actions


def act(index):
    return Decision('action', index)


# ------------------------------------------------------------------------------ every form


@pytest.mark.parametrize(
    'line, proposed, expected',
    [
        ('', 1, Decision('accept', 1)),
        ('   \n', 0, Decision('accept', 0)),
        ('stop', 1, Decision('stop')),
        (' STOP\n', None, Decision('stop')),
        ('quit', 0, Decision('stop')),
        ('help', 0, Decision('help')),
        ('?', None, Decision('help')),
        ('0', 1, act(0)),
        (' 1 ', 0, act(1)),
        ('1.0', 0, act(1)),
        ('{"action": 1}', 0, act(1)),  # the dot's channel is called "action": value 1.0
        ('{"action": 0.0}', 1, act(0)),
        ('[1]', 0, act(1)),
        ('action=1', 0, act(1)),
        ('action=0.0', 1, act(0)),
    ],
)
def test_dot_forms(line, proposed, expected):
    assert parse_input(line, DOT, proposed) == expected


@pytest.mark.parametrize(
    'line, proposed, expected',
    [
        ('{"action": 1}', STAY, act(TURN)),  # no channel "action" here: an index
        ('{"index": 0}', TURN, act(STAY)),
        ('{"motor_left": 0, "motor_right": 0.12, "duration": 0.2}', STAY, act(TURN)),
        ('{"motor_right": 0.12}', STAY, act(TURN)),  # the rest comes from the proposal
        ('{"motor_right": 0}', TURN, act(STAY)),
        ('[0, 0.12, 0.2]', STAY, act(TURN)),
        ('motor_right=0.12 duration=0.2', STAY, act(TURN)),
        ('motor_left=0, motor_right=0.12, duration=0.2', STAY, act(TURN)),
        ('motor_right=0', TURN, act(STAY)),
        ('motor_right=1.2e-1', STAY, act(TURN)),
        ('action=1', STAY, act(TURN)),
        ('index=0', TURN, act(STAY)),
        ('1', STAY, act(TURN)),
        ('', TURN, Decision('accept', TURN)),
    ],
)
def test_jetbot_forms(line, proposed, expected):
    assert parse_input(line, JETBOT, proposed) == expected


# ------------------------------------------------------------------------------ bad lines


@pytest.mark.parametrize(
    'line, proposed, message',
    [
        ('2', 0, 'no action 2'),
        ('-1', 0, 'no action -1'),
        ('0.5', 0, 'whole number'),
        ('', None, 'nothing proposed'),
        ('{"action": 1', 0, 'invalid JSON'),
        ('{"action": NaN}', 0, 'not a usable value'),
        ('{"action": Infinity}', 0, 'not a usable value'),
        ('{"action": 0.5}', 0, 'not one of the 2 discrete actions'),
        ('{"action": 3}', 0, 'outside its range'),
        ('{"action": "1"}', 0, 'expected a number'),
        ('{"action": true}', 0, 'expected a number'),
        ('{}', 0, 'empty JSON object'),
        ('"1"', 0, 'not an action'),
        ('[0, 1]', 0, 'one value per channel'),
        ('[[1]]', 0, 'expected a number'),
        ('action=nan', 0, 'not a number'),
        ('action=inf', 0, 'not a number'),
        ('action=', 0, 'not key=value'),
        ('speed=1', 0, "unknown channel 'speed'"),
        ('action=1 action=0', 0, 'given twice'),
        ('move', 0, 'not an action'),
        ('x' * 2000, 0, 'line too long'),
    ],
)
def test_dot_bad_lines_are_explained(line, proposed, message):
    with pytest.raises(InputError, match=message):
        parse_input(line, DOT, proposed)


@pytest.mark.parametrize(
    'line, proposed, message',
    [
        ('{"action": 1.5}', STAY, 'integer action index'),
        ('{"action": 1, "motor_right": 0}', STAY, r"unknown key\(s\) \['action'\]"),
        ('{"speed": 1}', STAY, r"unknown key\(s\) \['speed'\]"),
        ('motor_right=0.05', STAY, 'not one of the 2 discrete actions'),
        ('motor_right=0.12', None, 'missing channel'),
        ('{"motor_right": 0.12}', None, 'missing channel'),
        ('motor_left=0.5', STAY, 'outside its range'),
        ('action=1 motor_right=0', STAY, 'not both'),
        ('index=7', STAY, 'no action 7'),
    ],
)
def test_jetbot_bad_lines_are_explained(line, proposed, message):
    with pytest.raises(InputError, match=message):
        parse_input(line, JETBOT, proposed)


@pytest.mark.parametrize(
    'line',
    [
        "__import__('os').system('touch PWNED')",
        "action=__import__('os').system('touch PWNED')",
        'exec("import os")',
        'eval("1")',
        '1 + 0',
        '(1)',
        'True',
        'lambda: 1',
        '{"action": __import__("os")}',
        '[__import__("os").getpid()]',
        'action=(1)',
        'action=1;import os',
        'open("/etc/passwd").read()',
    ],
)
def test_code_is_rejected_as_data(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError):
        parse_input(line, DOT, 0)
    assert not (tmp_path / 'PWNED').exists()


# ------------------------------------------------------------------------------ proposals


def test_proposal_without_scores_follows_the_inner_policy():
    assert [Proposer(DOT, 'sequence', sequence='ALTERNATE').propose() for _ in range(1)] == [0]
    seq = Proposer(DOT, 'sequence', sequence='DOUBLE_MOVE')
    assert [seq.propose() for _ in range(6)] == [1, 1, 0, 1, 1, 0]
    const = Proposer(JETBOT, 'constant', action=STAY)
    assert [const.propose() for _ in range(3)] == [STAY] * 3
    rnd = Proposer(DOT, 'random', seed=4)
    assert set(rnd.propose() for _ in range(50)) == {0, 1}
    with pytest.raises(ValueError, match='constant, sequence or random'):
        Proposer(DOT, 'uncertainty')


def test_proposal_with_scores_is_the_most_uncertain_candidate():
    prop = Proposer(DOT, 'constant', action=1, seed=0)
    assert prop.propose({'0': 0.9, '1': 0.2}) == 0
    assert prop.propose({'L0:0': 0.1, 'L0:1': 0.7, 'L1:1+1': 5.0}) == 1  # higher levels ignored
    assert prop.propose({'0': float('nan'), '1': 0.1}) == 1
    # nothing usable: back to the inner policy
    assert prop.propose({'L1:0+1': 1.0}) == 1
    assert prop.propose({}) == 1


def test_level0_scores():
    assert level0_scores({'0': 1.0, 'L0:1': 2.0, '7': 3.0, 'L1:0+0': 4.0, 'x': 5.0}, 2) == {
        0: 1.0,
        1: 2.0,
    }
    assert level0_scores(None, 2) == {}


def test_prompt_text_shows_proposal_and_scores():
    text = format_proposal(JETBOT, 3, TURN, {'0': 0.125, '1': 0.5})
    assert (
        text.splitlines()[0] == 'step 3: proposed 1 (motor_left=0, motor_right=0.12, duration=0.2)'
    )
    assert '0: 0.125   1: 0.5 *' in text
    assert format_proposal(DOT, 1, 0) == 'step 1: proposed 0 (action=0)'
    actions = format_actions(JETBOT)
    assert (
        'jetbot: 2 actions' in actions
        and '  1: motor_left=0, motor_right=0.12, duration=0.2' in actions
    )
    assert 'motor_left=0 motor_right=0.12 duration=0.2' in actions and 'stop' in actions


def test_main_without_a_terminal_exits_2(monkeypatch, capsys):
    monkeypatch.setattr('sys.stdin', io.StringIO('1\n'))
    assert main(['--ros-args', '-p', 'robot_config:=config/toroidal_dot.yaml']) == 2
    assert 'stdin is not one' in capsys.readouterr().err
