import csv

import cv2
import numpy as np
import pytest

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner
from world_model_node.report import RunReport


def test_report_from_a_short_real_run(tmp_path):
    cfg = WorldModelConfig.tiny(reconstruction_threshold=1.0)  # gate open from the start
    learner = OnlineLearner(cfg, np.array([[-1.0], [1.0]], np.float32))
    env = ToroidalDotEnv(ToroidalDotConfig(seed=1))
    report = RunReport(
        tmp_path / 'r', 'test run', cfg.reconstruction_threshold, cfg.prediction_threshold
    )
    frame = env.frame()
    actions = [1, 0, 1, 1, 0, 1]
    ev_after = {0: [], 1: []}  # EV of each fresh prediction, by the action executed before it
    for k, a in enumerate(actions):
        result = learner.observe(frame)
        report.add(result)
        if k:
            ev_after[actions[k - 1]].append(result.explained_variance)
        learner.record_action(a)
        frame = env.step(a)
    summary = report.summary()
    assert summary['steps_recorded'] == 6 and summary['gate_open_at_step'] == 1
    assert summary['transitions_learned'] == 5  # every frame after the first had a fresh prediction
    for a in (0, 1):  # the EV of the fresh predictions, told apart by action
        assert summary[f'fresh_ev_action_{a}_last_50'] == pytest.approx(np.mean(ev_after[a]))
    assert len(ev_after[0]) == 2 and len(ev_after[1]) == 3
    panel = learner.visualization_panel()
    path = report.write(panel, {'extra': 7})
    text = path.read_text()
    assert '| gate_open_at_step | 1 |' in text and '| extra | 7 |' in text and 'panels.png' in text
    rows = list(csv.DictReader(open(tmp_path / 'r' / 'metrics.csv')))
    assert [int(r['step']) for r in rows] == [1, 2, 3, 4, 5, 6]
    for name in ('curves.png', 'panels.png'):
        assert (tmp_path / 'r' / name).read_bytes()[:4] == b'\x89PNG'
    # panels.png is the live panel itself, pixel for pixel: one way to draw a panel
    saved = cv2.cvtColor(cv2.imread(str(tmp_path / 'r' / 'panels.png')), cv2.COLOR_BGR2RGB)
    assert np.array_equal(saved, panel)


def test_report_refuses_a_panel_that_is_not_an_rgb_image(tmp_path):
    report = RunReport(tmp_path / 'r', 'test run', 0.01, 0.01)
    with pytest.raises(ValueError, match='uint8'):
        report.write(np.zeros((4, 4), np.float32))
