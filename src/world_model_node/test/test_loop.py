"""The pairing and gating rules of LearningLoop, driven with a real tiny OnlineLearner."""

import numpy as np
import pytest

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner
from world_model_node.loop import FRAME_BUFFER, LearningLoop

ACTIONS = np.array([[-1.0], [1.0]], np.float32)


def make_loop(threshold: float) -> LearningLoop:
    cfg = WorldModelConfig.tiny(reconstruction_threshold=threshold)
    return LearningLoop(OnlineLearner(cfg, ACTIONS))


@pytest.fixture
def env():
    return ToroidalDotEnv(ToroidalDotConfig(seed=0))


def test_gate_closed_without_new_frames_keeps_training_the_autoencoder(env):
    loop = make_loop(threshold=1e-12)  # never opens
    loop.on_frame(1, env.frame())
    first = loop.work(timeout=0)
    assert first is not None and not first.gate_open and loop.counters.frames_observed == 1
    for _ in range(3):
        assert not loop.work(timeout=0).gate_open
    assert loop.counters.gate_retries == 3 and loop.learner.step == 4
    loop.on_executed(5, 1)  # nobody asked for an action: ignored, not recorded
    loop.work(timeout=0)
    assert loop.counters.actions_ignored == 1 and loop.counters.actions_recorded == 0


def test_open_gate_waits_for_the_action_then_learns_from_its_outcome(env):
    loop = make_loop(threshold=1.0)  # always open
    loop.on_frame(100, env.frame())
    result = loop.work(timeout=0)
    assert result.gate_open and result.scores is not None and loop.awaiting_action
    assert loop.work(timeout=0) is None  # scores are out: nothing to do until the action comes
    # the frame arrives before the executed action; an older stream frame is not the outcome
    loop.on_frame(150, env.frame())
    loop.on_frame(200, env.step(1))
    loop.on_executed(200, 1)
    result = loop.work(timeout=0)
    assert result is not None and loop.counters.actions_recorded == 1
    assert loop.last_observed_stamp == 200 and loop.counters.frames_dropped == 1
    assert loop.learner.history[-2].action == 1
    assert 0 in result.prediction_errors  # the fresh prediction of the outcome was checked


def test_resent_and_out_of_order_frames_are_dropped(env):
    loop = make_loop(threshold=1e-12)
    loop.on_frame(10, env.frame())
    loop.work(timeout=0)
    loop.on_frame(10, env.frame())  # the robot re-sends its current frame to a late joiner
    loop.on_frame(5, env.frame())
    assert loop.counters.frames_dropped == 2 and loop.counters.frames_received == 3


def test_the_frame_buffer_is_bounded(env):
    loop = make_loop(threshold=1e-12)
    for stamp in range(1, FRAME_BUFFER + 11):
        loop.on_frame(stamp, env.frame())
    assert loop.counters.frames_dropped == 10
    loop.work(timeout=0)  # learns from the newest frame only
    assert loop.last_observed_stamp == FRAME_BUFFER + 10


def test_close_wakes_a_waiting_worker(env):
    loop = make_loop(threshold=1.0)
    loop.close()
    assert loop.work(timeout=5.0) is None


def test_a_train_filter_marks_transitions_and_never_drops_a_frame(env):
    from devbot.bag import FilterError
    from toroidal_sim.env import DOT_ACTION_SPACE
    from world_model_node.loop import train_filter

    assert train_filter('  ', DOT_ACTION_SPACE) is None
    with pytest.raises(FilterError):
        train_filter('actions=7', DOT_ACTION_SPACE)
    cfg = WorldModelConfig.tiny(reconstruction_threshold=1.0)
    # moves, and only those that completed at least 3 s after the first frame
    loop = LearningLoop(
        OnlineLearner(cfg, ACTIONS), may_train=train_filter('actions=1; from=3', DOT_ACTION_SPACE)
    )
    t0 = 1_000_000_000_000
    loop.on_frame(t0, env.frame())
    assert loop.work(timeout=0).gate_open
    actions = [1, 0, 1, 1, 0, 1]
    for k, a in enumerate(actions, 1):
        stamp = t0 + k * 1_000_000_000  # action k completes k seconds after the first frame
        loop.on_executed(stamp, a)
        loop.on_frame(stamp, env.step(a))
        assert loop.work(timeout=0).gate_open
    history = list(loop.learner.history)
    assert [e.action for e in history[:-1]] == actions
    expected = [a == 1 and k >= 3 for k, a in enumerate(actions, 1)]
    assert [e.trainable for e in history[:-1]] == expected
    assert loop.counters.actions_trainable == sum(expected) == 3
    assert loop.counters.frames_observed == len(actions) + 1 and loop.counters.frames_dropped == 0
