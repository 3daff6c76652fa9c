"""The README's first command, `make run`, end to end with a tiny budget."""

from __future__ import annotations

import subprocess

from graphtest import REPO


def test_make_run_learns_and_writes_a_report(ros_env, tmp_path):
    report, ckpt = tmp_path / 'report', tmp_path / 'ckpt'
    out = subprocess.run(
        [
            'make',
            '--no-print-directory',
            'run',
            'DURATION=0',
            'RUN_ARGS=preset:=tiny max_steps:=300 num_threads:=1 '
            f'report_dir:={report} checkpoint_dir:={ckpt}',
        ],
        cwd=REPO,
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'steps/s' in out.stdout  # progress lines
    assert 'policy uncertainty, triggered by scores' in out.stdout  # exploring by curiosity
    for name in ('summary.md', 'curves.png', 'metrics.csv'):
        assert (report / name).stat().st_size > 0, name
    assert (ckpt / 'autoencoder.pth').is_file() and (ckpt / 'learner_state.pth').is_file()
    rows = (report / 'metrics.csv').read_text().splitlines()
    assert len(rows) == 301  # header + one row per learner step
    # the report scores both actions on held-out transitions: on the dot's row and off it
    summary = (report / 'summary.md').read_text()
    for kind in ('home_row', 'unseen_rows'):
        for a in (0, 1):
            for what in ('ev', 'dot_px', 'within_3px'):
                assert f'| {kind}_action_{a}_{what} |' in summary, (kind, a, what)
