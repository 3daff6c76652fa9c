"""The session explorer's API (devbot_explorer.explorer), its script twin, the generated demo
sessions, the action checks and the small table: on sessions written in the test and a tiny
checkpoint trained on them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import yaml

matplotlib.use('Agg')

from devbot.action_space import ActionSpace
from devbot.bag.metadata import KEY_ACTION_SPACE
from devbot_explorer.action_check import DotActionCheck, JetBotActionCheck, _chi2_sf, uniformity
from devbot_explorer.demo import STEP_NS, T0_NS, random_actions, write_demo_checkpoint
from devbot_explorer.explore_cli import main as explore_main
from devbot_explorer.explorer import ExplorerError, SessionExplorer
from devbot_explorer.table import Table
from devbot_explorer.workbench import LiveCheckpointError
from jetbot_driver.session import write_jetbot_session
from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv
from toroidal_sim.session import write_dot_session
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[3]
JETBOT = ActionSpace.from_yaml(REPO / 'config' / 'jetbot.yaml')
DOT_ACTIONS = [[1, 1, 0, 1, 0, 0, 1, 1] * 5, [0, 0, 1] * 8]  # 40 and 24 actions
JET_ACTIONS = [[1, 0, 1, 1, 0, 1], [0, 1]]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Two dot sessions, two JetBot sessions and a tiny checkpoint trained on the first dot one."""
    root = tmp_path_factory.mktemp('explorer')
    sessions = root / 'sessions'
    for k, acts in enumerate(DOT_ACTIONS):
        path = sessions / 'toroidal_dot' / f's{k}'
        write_dot_session(path, acts, seed=k, start_ns=T0_NS, step_ns=STEP_NS)
    for k, acts in enumerate(JET_ACTIONS):
        write_jetbot_session(sessions / 'jetbot' / f's{k}', acts, JETBOT)
    write_demo_checkpoint(
        root / 'checkpoints' / 'toroidal_dot',
        sessions / 'toroidal_dot' / 's0',
        autoencoder_steps=5,
        predictor_steps=3,
    )
    return root


@pytest.fixture
def ex(data):
    explorer = SessionExplorer(data / 'sessions', data / 'checkpoints')
    yield explorer
    explorer.close()


def dot_frames(k: int) -> list[np.ndarray]:
    env = ToroidalDotEnv(ToroidalDotConfig(seed=k))
    return [env.frame()] + [env.step(a) for a in DOT_ACTIONS[k]]


# ---------------------------------------------------------------------------------------------
# sessions
# ---------------------------------------------------------------------------------------------


def test_session_table_lists_every_robot_and_open_resolves_every_form(ex, data):
    table = ex.session_table()
    assert [(r['robot'], r['session'], r['robot type']) for r in table.records()] == [
        ('jetbot', 's0', 'jetbot'),
        ('jetbot', 's1', 'jetbot'),
        ('toroidal_dot', 's0', 'toroidal_dot'),
        ('toroidal_dot', 's1', 'toroidal_dot'),
    ]
    assert table.column('executed') == [6, 2, 40, 24] and table.column('frame msgs') == [
        7,
        3,
        41,
        25,
    ]
    assert set(table.column('state')) == {'ok'}
    summary = ex.open(2)
    assert isinstance(summary, Table) and ex.info.path == data / 'sessions' / 'toroidal_dot' / 's0'
    ex.open('toroidal_dot/s1')
    assert ex.info.name == 's1' and ex.robot_type == 'toroidal_dot'
    ex.open(data / 'sessions' / 'jetbot' / 's1')
    assert ex.robot_type == 'jetbot' and ex.action_space == JETBOT
    with pytest.raises(ExplorerError, match='several sessions'):
        ex.open('s0')
    with pytest.raises(ExplorerError, match='no session'):
        ex.open('toroidal_dot/missing')
    with pytest.raises(ExplorerError, match='no session #9'):
        ex.open(9)
    ex.close()
    with pytest.raises(ExplorerError, match='no session is open'):
        ex.frame(0)


def test_robot_type_and_action_space_come_from_the_bag_metadata(ex):
    ex.open('jetbot/s0')
    assert ex.robot_type == 'jetbot' and ex.action_space == JETBOT
    assert ex.action_labels() == ['0: motor_right=0', '1: motor_right=0.12']
    ex.open('toroidal_dot/s0')
    assert ex.action_space == DOT_ACTION_SPACE and ex.action_labels() == [
        '0: action=0',
        '1: action=1',
    ]
    rows = dict(ex.summary().rows)
    assert (
        rows['frames'] == 41 and rows['transitions'] == 40 and rows['robot type'] == 'toroidal_dot'
    )


def test_frames_are_the_recorded_ones_lazily_decoded_and_cached(ex):
    ex.open('toroidal_dot/s0')
    truth = dot_frames(0)
    assert ex.num_frames == len(truth)
    assert np.array_equal(ex.frame(7), truth[7]) and np.array_equal(ex.frame(-1), truth[-1])
    assert np.array_equal(ex.frames(10, 20), np.stack(truth[10:20]))
    assert np.array_equal(
        ex.frames(indices=[30, 2, 30]), np.stack([truth[30], truth[2], truth[30]])
    )
    with pytest.raises(IndexError, match='41 frames'):
        ex.frame(41)
    small = SessionExplorer(
        ex.sessions_root, cache_bytes=3 * truth[0].nbytes
    )  # evicts all the time
    small.open('toroidal_dot/s0')
    assert np.array_equal(small.frames(0, 41), np.stack(truth)) and len(small._cache) <= 3
    small.close()


def test_actions_per_frame_strip_and_playback(ex):
    ex.open('toroidal_dot/s0')
    acts = DOT_ACTIONS[0]
    assert ex.actions_per_frame().tolist() == acts + [-1]
    assert [ex.action_after(i) for i in range(3)] == acts[:3] and ex.action_after(40) is None
    assert ex.frame_caption(3) == 'frame 3  +0.300 s  -> 1: action=1'
    strip = ex.history_strip(10, before=4, after=1, tile=64)
    assert strip.dtype == np.uint8 and strip.shape[1] == 6 * 64
    fig = ex.strip_figure(10, before=4, after=1)
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert labels == [f'a={a} ->' for a in acts[6:12]]
    html = str(ex.playback(0, 12, fps=4))
    assert html.count('data:image/png;base64') == 12
    with pytest.raises(ExplorerError, match='too many'):
        ex.playback(0, 41, max_frames=10)


def test_action_distribution_this_session_vs_all_sessions_of_the_type(ex, data):
    ex.open('toroidal_dot/s1')
    table = ex.action_distribution()
    rows = {r['action']: r for r in table.records()}
    mine, both = (
        np.bincount(DOT_ACTIONS[1], minlength=2),
        np.bincount(DOT_ACTIONS[0] + DOT_ACTIONS[1], minlength=2),
    )
    assert [rows[0]['this session'], rows[1]['this session']] == mine.tolist()
    assert [rows[0]['all 2 sessions'], rows[1]['all 2 sessions']] == both.tolist()
    assert math.isclose(rows[1]['this %'], 100 * mine[1] / mine.sum(), abs_tol=0.01)
    assert table.notes == [] and '| 0 | 0: action=0 |' in table.to_markdown()
    # a session of the same type with another action space is left out, and said so
    space = {
        'robot_type': 'toroidal_dot',
        'channels': [{'name': 'action', 'min': 0.0, 'max': 2.0}],
        'actions': [{'action': 0.0}, {'action': 1.0}, {'action': 2.0}],
    }
    other = data / 'sessions_other'
    write_dot_session(other / 'toroidal_dot' / 'a', [1, 1])
    odd = other / 'toroidal_dot' / 'b'
    write_dot_session(odd, [0])
    meta = yaml.safe_load((odd / 'metadata.yaml').read_text())
    meta['rosbag2_bagfile_information']['custom_data'][KEY_ACTION_SPACE] = json.dumps(space)
    (odd / 'metadata.yaml').write_text(yaml.safe_dump(meta))
    ex2 = SessionExplorer(other)
    ex2.open('toroidal_dot/a')
    t2 = ex2.action_distribution()
    assert t2.records()[1]['all 1 sessions'] == 2 and any('toroidal_dot/b' in n for n in t2.notes)
    ex2.close()


def test_window_and_selection_follow_the_transitions(ex):
    ex.open('toroidal_dot/s0')
    w = ex.window(10)
    assert w.frame_indices == (7, 8, 9, 10, 11) and w.index == 3
    assert w.actions.tolist() == DOT_ACTIONS[0][7:11] + [-1]
    assert ex.window(1).frame_indices == (0, 1, 2)
    with pytest.raises(ExplorerError, match='no recorded action'):
        ex.window(40)
    assert ex.nearest_transition(40) == 39 and ex.nearest_transition(12) == 12
    sel = ex.selection([0, 1, 2, 5, 6])
    assert sel.frame_indices == (0, 1, 2, 5, 6)
    acts = DOT_ACTIONS[0]
    assert sel.actions.tolist() == [acts[0], acts[1], -1, acts[5], -1]
    assert np.array_equal(sel.frames[3], ex.frame(5))
    with pytest.raises(ExplorerError, match='no frames'):
        ex.selection([])


def test_a_jetbot_session_pairs_actions_with_the_frames_that_show_them(ex):
    ex.open('jetbot/s0')
    acts = JET_ACTIONS[0]
    assert ex.actions_per_frame().tolist() == acts + [-1]
    frames = ex.frames(0, ex.num_frames)
    for i, a in enumerate(acts):
        changed = np.any(frames[i] != frames[i + 1])
        assert changed == (a == 1), 'a turn changes the view, a stay does not'


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------


def test_model_views_of_a_transition(ex, data):
    ex.open('toroidal_dot/s0')
    with pytest.raises(ExplorerError, match='load_model'):
        ex.analyse(10)
    wb = ex.load_model()
    assert wb.source == (data / 'checkpoints' / 'toroidal_dot').resolve()
    assert dict(ex.model_table().rows)['autoencoder steps'] == 5
    idx, recon, losses = ex.reconstruct(range(3, 6))
    assert idx == [3, 4, 5] and recon.shape == (3, 32, 32, 3) and losses.shape == (3,)
    # the same numbers as the workbench on the same frames
    assert np.allclose(losses, wb.reconstruct(ex.frames(3, 6))[1])
    d = ex.analyse(10)
    assert d.executed == DOT_ACTIONS[0][10] and d.window.frame_indices == (7, 8, 9, 10, 11)
    direct = wb.analyse(d.window.frames, d.window.actions, 3)
    assert np.allclose(direct.errors, d.errors) and np.allclose(direct.uncertainty, d.uncertainty)
    table = ex.sweep_table(d)
    marks = {r['action']: r[''] for r in table.records()}
    assert 'recorded' in marks[d.executed] and 'recorded' not in marks[1 - d.executed]
    assert np.allclose(table.column('MSE vs recorded next'), d.errors)
    att = ex.attention_table(d).records()
    mass = sum(r['value'] for r in att if r['kind'] == 'mass')
    assert math.isclose(mass, 1.0, abs_tol=1e-4) and {r['name'] for r in att} >= {
        'APA',
        'ALF',
        'TTAR',
        'RI@16',
    }
    cf = ex.counterfactual_table(d).records()
    assert [r['action sequence'] for r in cf] == ['true actions', 'shuffled in time', 'all zero']
    assert cf[0]['prediction MSE'] == pytest.approx(float(d.errors[d.executed]), rel=1e-4)
    sweep_fig = ex.sweep_figure(d)
    titles = [ax.get_title() for ax in sweep_fig.axes]
    assert sum('(recorded)' in t for t in titles) == 1 and len(titles) == 4
    att_fig = ex.attention_figure(d)
    assert len(att_fig.axes) == 1 + 1 + 4 + 1  # map, its colour bar, 4 context frames, breakdown
    recon_fig = ex.reconstruction_figure([3, 4])
    assert len(recon_fig.axes) == 4
    light = ex.sweep(10)
    assert (
        light.attention is None
        and light.counterfactual is None
        and np.allclose(light.errors, d.errors)
    )


def test_load_model_refuses_another_action_space_and_missing_checkpoints(ex, data):
    ex.open('jetbot/s0')
    with pytest.raises(ExplorerError, match='another action space'):
        ex.load_model(data / 'checkpoints' / 'toroidal_dot')
    with pytest.raises(ExplorerError, match=r'fresh=True'):
        ex.load_model()  # no jetbot checkpoint
    wb = ex.load_model(fresh=True, config=WorldModelConfig.tiny())
    assert wb.source is None and wb.num_actions == 2
    d = ex.analyse(0)
    assert d.executed == JET_ACTIONS[0][0] and d.window.frame_indices == (0, 1)


def test_training_with_pause_and_resume_changes_only_what_it_trains(ex):
    ex.open('toroidal_dot/s0')
    ex.load_model()
    run = ex.train_autoencoder(
        range(0, 20), steps=6, callback=lambda r: r.pause() if r.steps_done == 2 else None
    )
    assert run.steps_done == 2 and run.paused and not run.done
    run.resume()
    assert run.steps_done == 6 and run.reason == 'steps'
    change = ex.weight_change_table().records()
    ae = [r['relative change'] for r in change if r['layer'].startswith('autoencoder/')]
    pred = [r['relative change'] for r in change if r['layer'].startswith('predictor/')]
    assert max(ae) > 0 and max(pred) == 0
    assert [r['relative change'] for r in change] == sorted(
        (r['relative change'] for r in change), reverse=True
    )
    prun = ex.train_predictor(range(0, 20), steps=2)
    assert prun.steps_done == 2
    assert max(v for k, v in ex.model.weight_change().items() if k.startswith('predictor/')) > 0
    with pytest.raises(ExplorerError, match='no transition'):
        ex.train_predictor([0, 2, 4], steps=1)
    fig = ex.training_figure(run, prun)
    assert [ax.get_title() for ax in fig.axes] == [
        'autoencoder: 6 steps (done: steps)',
        'predictor: 2 steps (done: steps)',
    ]
    assert len(ex.weight_change_figure().axes) == 2
    ae_fig = ex.weights_figure('autoencoder')
    assert any('patch_embed' in ax.get_title() for ax in ae_fig.axes)
    assert any('films' in ax.get_title() for ax in ex.weights_figure('predictor').axes)
    with pytest.raises(ExplorerError, match='network'):
        ex.weights_figure('decoder')


def test_save_never_overwrites_the_live_checkpoint_unless_asked(ex, data, tmp_path):
    ex.open('toroidal_dot/s0')
    ex.load_model()
    live = data / 'checkpoints' / 'toroidal_dot'
    before = {p.name: p.stat().st_mtime_ns for p in live.iterdir()}
    ex.train_autoencoder(range(0, 10), steps=2)
    with pytest.raises(LiveCheckpointError):
        ex.save_model(live)
    assert {p.name: p.stat().st_mtime_ns for p in live.iterdir()} == before
    generation = ex.save_model(tmp_path / 'tuned')
    # the saved model is in the live format: the online learner resumes from it with these weights
    learner = OnlineLearner(
        ex.model.config, DOT_ACTION_SPACE.normalized(), checkpoint_dir=tmp_path / 'tuned'
    )
    assert learner.generation == generation
    for (name, p), q in zip(
        ex.model.autoencoder.state_dict().items(), learner.autoencoder.state_dict().values()
    ):
        assert torch.equal(p, q), name
    with pytest.raises(LiveCheckpointError):
        ex.save_model(tmp_path / 'tuned')  # holds a checkpoint now
    assert ex.save_model(tmp_path / 'tuned', overwrite_live=True) > generation


# ---------------------------------------------------------------------------------------------
# the script twin
# ---------------------------------------------------------------------------------------------


def test_script_lists_and_writes_the_views(data, tmp_path, capsys):
    assert explore_main(['--root', str(data / 'sessions'), '--list']) == 0
    assert 'toroidal_dot  s1' in capsys.readouterr().out
    out = tmp_path / 'report'
    roots = ['--root', str(data / 'sessions'), '--checkpoints', str(data / 'checkpoints')]
    rc = explore_main(
        [
            *roots,
            '--session',
            'toroidal_dot/s0',
            '--frame',
            '10',
            '--playback',
            '0:6',
            '--out',
            str(out),
            '--train-autoencoder',
            '0:10',
            '--steps',
            '2',
            '--threads',
            '1',
        ]
    )
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {
        'summary.md',
        'frame.png',
        'strip.png',
        'actions.png',
        'playback.gif',
        'reconstruction.png',
        'sweep.png',
        'attention.png',
        'training.png',
        'weight_change.png',
        'sweep_after_training.png',
        'weights_autoencoder.png',
        'weights_predictor.png',
    } <= names
    md = (out / 'summary.md').read_text()
    assert '<-- recorded' in md and '| true actions |' in md and '![action sweep](sweep.png)' in md
    live = data / 'checkpoints' / 'toroidal_dot'
    before = {p.name: p.stat().st_mtime_ns for p in live.iterdir()}
    rc = explore_main(
        [
            *roots,
            '--session',
            '2',
            '--no-model',
            '--out',
            str(tmp_path / 'r2'),
        ]
    )
    assert rc == 0 and not (tmp_path / 'r2' / 'sweep.png').exists()
    rc = explore_main(
        [
            *roots,
            '--session',
            'toroidal_dot/s0',
            '--out',
            str(tmp_path / 'r3'),
            '--save',
            str(live),
        ]
    )
    assert rc == 1 and 'not saved' in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in live.iterdir()} == before
    assert (
        explore_main(
            ['--root', str(data / 'sessions'), '--session', 'nope', '--out', str(tmp_path / 'r4')]
        )
        == 1
    )


# ---------------------------------------------------------------------------------------------
# generated sessions, action checks, table
# ---------------------------------------------------------------------------------------------


def test_random_actions_are_reproducible():
    assert random_actions(5, 2, seed=1) == random_actions(5, 2, seed=1)
    assert set(random_actions(200, 3, seed=2)) == {0, 1, 2}
    assert random_actions(50, 2, seed=3, p=[1.0, 0.0]) == [0] * 50


def test_dot_action_check():
    check = DotActionCheck(seed=3)
    x0, y0 = check.pose()
    step = check.act(1)
    assert step.pose_after == ((x0 + 27) % 224, y0) and step.changed_pixels == 162
    assert np.array_equal(step.after, np.roll(step.before, 27, axis=1))
    assert check.act(0).changed_pixels == 0
    check.place(220, 5)
    assert check.act(1).pose_after == (23, 5)
    assert check.moves_to_return() == 224
    with pytest.raises(ValueError, match='integer in'):
        check.act(2)
    positions = check.reset_positions(300)
    stats = uniformity(positions)
    assert positions.shape == (300, 2) and stats['p_value'] > 1e-3
    clumped = np.tile([[3, 3]], (300, 1))
    assert uniformity(clumped)['p_value'] < 1e-9
    assert _chi2_sf(15.0, 15) == pytest.approx(0.4514, abs=1e-4)
    assert _chi2_sf(3.0, 1) == pytest.approx(0.0833, abs=1e-4)


def test_jetbot_action_check_over_the_simulated_server():
    with JetBotActionCheck(connect_timeout=5) as check:
        assert check.simulated and check.action_space == JETBOT
        turn = check.act(1)
        d = math.degrees(turn.pose_after[2] - turn.pose_before[2])
        assert 4 < d < 12 and turn.changed_pixels > 5000 and turn.seconds >= 0.2
        stay = check.act(0)
        # stopped motors: the pose does not change (up to float rounding of the last ramp step)
        assert (
            stay.pose_after == pytest.approx(stay.pose_before, abs=1e-9)
            and stay.changed_pixels == 0
        )
        pose = check.reset(seed=1)
        assert pose != turn.pose_after and check.pose() == pose
        log = check.client.call_extra('get_motor_log')
        assert log == (), 'a reset starts a fresh simulated robot'
    assert check.client.closed


def test_jetbot_action_check_reports_an_unreachable_robot():
    from jetbot_driver.client import ConnectionLost

    with pytest.raises(ConnectionLost, match='no JetBot service'):
        JetBotActionCheck('127.0.0.1', 1, action_space=JETBOT, connect_timeout=0.3)


def test_table_renders_and_checks_its_rows():
    t = Table(
        ['a|b', 'value'],
        [['x', 0.000012345], ['y', float('nan')], ['<z>', True]],
        title='T',
        notes=['n'],
    )
    md = t.to_markdown()
    assert '| a\\|b | value |' in md and '1.234e-05' in md and '| y | - |' in md and '- n' in md
    assert '&lt;z&gt;' in t._repr_html_() and 'yes' in t._repr_html_()
    assert str(t).splitlines()[0] == 'T'
    assert Table.from_records([{'a': 1}, {'b': 2}]).rows == [[1, None], [None, 2]]
    with pytest.raises(ValueError, match='rows'):
        Table(['a', 'b'], [[1]])
    with pytest.raises(KeyError, match='columns'):
        t.column('missing')
