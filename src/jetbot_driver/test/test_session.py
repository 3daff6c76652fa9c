"""Generated JetBot sessions: the driver's motor schedule on the virtual robot, read back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from devbot.action_space import ActionSpace
from devbot.bag.session import Session
from jetbot_driver.motion import MotorController
from jetbot_driver.session import motor_schedule, write_jetbot_session

REPO = Path(__file__).resolve().parents[3]
JETBOT = ActionSpace.from_yaml(REPO / 'config' / 'jetbot.yaml')


def test_generated_jetbot_sessions_use_the_drivers_motor_schedule(tmp_path):
    sent = []
    controller = MotorController(lambda left, right: sent.append((time.monotonic(), left, right)))
    controller.execute(0.0, 0.12, 0.2)
    t0 = sent[0][0]
    schedule = motor_schedule(0.0, 0.0, 0.12, 0.2)
    assert [cmd[1:] for cmd in sent] == [cmd[1:] for cmd in schedule]
    assert all(abs((t - t0) - s) < 0.02 for (t, _, _), (s, _, _) in zip(sent, schedule))
    with pytest.raises(ValueError, match=r'integer in \[0, 2\)'):
        write_jetbot_session(tmp_path / 'j', [2], JETBOT)
    with pytest.raises(ValueError, match='shorter than'):
        write_jetbot_session(tmp_path / 'k', [1], JETBOT, step_ns=100_000_000)


def test_a_generated_session_reads_back_with_its_frames_and_actions(tmp_path):
    path = tmp_path / 'jetbot' / 's0'
    actions = [1, 0, 1, 1]
    frames = write_jetbot_session(path, actions, JETBOT)
    assert len(frames) == len(actions) + 1
    turned = [not np.array_equal(a, b) for a, b in zip(frames, frames[1:])]
    assert turned == [a == 1 for a in actions]  # action 0 keeps the wheels still
    with Session(path) as s:
        assert s.robot_type == 'jetbot' and s.action_space == JETBOT
        assert s.info.custom_data['devbot.robot'] == 'jetbot'
        assert s.info.custom_data['devbot.namespace'] == '/jetbot'
        assert all(np.array_equal(f.image, frames[f.index]) for f in s.frames())
        ts = list(s.transitions())
        assert [t.action for t in ts] == actions
        assert all(t.action_stamp_ns == t.next_stamp_ns for t in ts)
