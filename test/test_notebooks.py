"""The notebooks run headless from top to bottom on generated data.

They run under nbclient with the venv's python3 kernel, and their key outputs (tables, figures, the
summary each one ends with) are real and sensible.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nbformat
import numpy as np
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / 'notebooks'
CELL_TIMEOUT = 180


def execute(name: str, parameters: str = '') -> nbformat.NotebookNode:
    """Run a notebook in its folder.

    ``parameters`` is appended to its parameters cell (as papermill does).
    """
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if parameters:
        cell = next(c for c in nb.cells if 'parameters' in c.metadata.get('tags', []))
        cell.source += '\n' + parameters
    env_before = os.environ.get('MPLBACKEND')
    os.environ.pop('MPLBACKEND', None)  # the kernel uses the inline backend
    try:
        NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            kernel_name='python3',
            resources={'metadata': {'path': str(NOTEBOOKS)}},
        ).execute()
    finally:
        if env_before is not None:
            os.environ['MPLBACKEND'] = env_before
    return nb


def outputs(nb, mime: str) -> list:
    return [
        o['data'][mime]
        for c in nb.cells
        if c.cell_type == 'code'
        for o in c.get('outputs', [])
        if mime in o.get('data', {})
    ]


def errors_and_warnings(nb) -> list[str]:
    return [
        o.get('text', '')
        for c in nb.cells
        if c.cell_type == 'code'
        for o in c.get('outputs', [])
        if o.get('name') == 'stderr'
    ]


def summary(nb) -> dict:
    """The JSON the notebook's last cell displays."""
    found = outputs(nb, 'application/json')
    assert len(found) == 1, 'each notebook ends with one JSON summary'
    data = found[0]
    return json.loads(data) if isinstance(data, str) else data


def test_generated_notebooks_match_the_generator():
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location('make_notebooks', REPO / 'tools' / 'make_notebooks.py')
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(['--check']) == 0, 'run tools/make_notebooks.py after editing it'


def test_dot_action_test_notebook():
    nb = execute('dot_action_test.ipynb')
    s = summary(nb)
    size, move = s['size'], s['move_pixels']
    assert (size, move) == (224, 27)
    # one move: 27 px right (mod size), y unchanged, one disc cleared and one painted
    (x0, y0), (x1, y1) = s['move']['before'], s['move']['after']
    assert x1 == (x0 + move) % size and y1 == y0 and s['move']['changed'] == 2 * 81
    assert s['stay']['before'] == s['stay']['after'] and s['stay']['changed'] == 0
    # the trajectory follows the actions exactly, wrapping at the edge
    traj = np.array(s['trajectory'])
    assert len(traj) == len(s['actions']) + 1
    for (xa, ya), (xb, yb), a in zip(traj[:-1], traj[1:], s['actions']):
        assert xb == (xa + move * a) % size and yb == ya
    assert (np.diff(traj[:, 0]) < 0).any(), 'the sequence crosses the right edge at least once'
    w = s['wrap']
    assert w['after'][0] == (w['before'][0] + move) % size < w['before'][0]
    assert 0 in w['edge_columns'] and size - 1 in w['edge_columns'], (
        'a disc at the edge is drawn on both sides'
    )
    assert w['cycle_moves'] == size and w['back_to_start'] is True
    r = s['resets']
    assert r['count'] == 400 and r['unique_fraction'] > 0.9 and r['p_value'] > 1e-3
    tables = outputs(nb, 'text/html')
    assert any('0: action=0' in t and '1: action=1' in t for t in tables)
    assert any('trajectory' in t and '<td>27</td>' in t for t in tables)
    assert len(outputs(nb, 'image/png')) == 6  # move, stay, trajectory, its frames, wrap, resets
    assert not errors_and_warnings(nb)


def test_jetbot_action_test_notebook_against_the_simulated_server():
    nb = execute('jetbot_action_test.ipynb')
    s = summary(nb)
    assert s['simulated'] is True
    turn = s['turn']
    turned = math.degrees(math.remainder(turn['after'][2] - turn['before'][2], 2 * math.pi))
    assert 4 < turned < 12, 'the turn action (right motor 0.12 for 0.2 s) turns left by ~7 degrees'
    assert turn['changed'] > 5000 and 150 < turn['ms'] < 2000
    assert s['stay']['before'] == s['stay']['after'] and s['stay']['changed'] == 0
    # trajectory: every turn action turns left, every stay keeps the heading
    headings = [p[2] for p in s['trajectory']]
    for a, h0, h1 in zip(s['actions'][1:], headings[:-1], headings[1:]):
        d = math.degrees(math.remainder(h1 - h0, 2 * math.pi))
        assert (4 < d < 12) if a == turn['action'] else d == 0
    w = s['wrap']
    assert 360 <= w['turned_deg'] < 375 and 30 < w['turns'] < 90
    assert w['end_change'] < 0.5 * w['half_change'], (
        'after a full turn the view is close to the start view'
    )
    poses = s['resets']
    assert len(poses) == 3 and len({tuple(p) for p in poses}) == 3
    assert all(abs(p[0]) < 1 and abs(p[1]) < 1 for p in poses)
    assert any('motor_right=0.12' in t for t in outputs(nb, 'text/html'))
    assert len(outputs(nb, 'image/png')) >= 7
    assert not errors_and_warnings(nb)


def test_session_explorer_notebook_on_generated_sessions(tmp_path):
    from devbot.bag import Session

    nb = execute('session_explorer.ipynb', f'WORK_DIR = {str(tmp_path)!r}')
    s = summary(nb)
    assert s['robot_type'] == 'toroidal_dot' and s['actions'] == ['0: action=0', '1: action=1']
    with Session(s['session']) as session:
        counts = session.action_counts()
        recorded = {t.frame_index: t.action for t in session.transition_list()}[s['frame']]
    # the distribution table: this session's counts from the bag, all = both dot sessions
    rows = {r['action']: r for r in s['distribution']}
    assert [rows[0]['this session'], rows[1]['this session']] == counts.tolist()
    assert rows['all']['this session'] == counts.sum() and rows['all']['all 2 sessions'] == 120
    assert math.isclose(rows[0]['this %'] + rows[1]['this %'], 100, abs_tol=0.02)
    # the sweep covers the action space and marks the recorded action
    sweep = s['sweep']
    assert (
        len(sweep['errors']) == 2
        and all(np.isfinite(sweep['errors']))
        and len(sweep['uncertainty']) == 2
    )
    assert sweep['recorded'] == sweep['recorded_in_session'] == recorded
    att = s['attention']
    assert {
        'attn/APA',
        'attn/ALF',
        'attn/TTAR',
        'attn/RI@16',
        'attn/entropy',
        'attn/entropy_uniform',
    } <= set(att)
    assert 0 < att['attn/entropy'] <= att['attn/entropy_uniform'] + 1e-6
    assert math.isclose(sum(s['breakdown'].values()), 1.0, abs_tol=1e-4)
    assert set(s['counterfactual']) == {'true', 'shuffled', 'zeroed', 'shuffled_gap', 'zeroed_gap'}
    tr = s['training']
    assert tr['ae_paused_at'] == 10 and (tr['ae_steps'] == 20 or tr['ae_reason'] == 'threshold')
    assert 1 <= tr['pred_steps'] <= 10 and tr['pred_reason'] in ('steps', 'threshold')
    wc = s['weight_change']
    assert any(v > 0 for k, v in wc.items() if k.startswith('autoencoder/'))
    assert any(v > 0 for k, v in wc.items() if k.startswith('predictor/'))
    assert s['saved']['files'] == ['autoencoder.pth', 'learner_state.pth', 'predictor_0.pth']
    assert s['saved']['live_refused'] is True
    # the session table lists both robots, the playback is a scrubbable animation of 40 frames
    html = outputs(nb, 'text/html')
    assert any('jetbot' in t and 'toroidal_dot' in t and 'demo-01' in t for t in html)
    player = [t for t in html if 'data:image/png;base64' in t]
    assert (
        len(player) == 1
        and player[0].count('data:image/png;base64') == 40
        and 'slider' in player[0].lower()
    )
    # the other robot's strip, frame, strip, actions, reconstructions, sweep, attention, training,
    # weight change, weights of both networks
    assert len(outputs(nb, 'image/png')) == 11
    assert not errors_and_warnings(nb)
