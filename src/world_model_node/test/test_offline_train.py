"""Offline training: the batched step agrees with the online predictor, training lowers the loss,
checkpoints go both ways between the online learner and the offline trainer, an interrupted run
continues exactly, and the ``devbot train`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from devbot.cli import main as devbot_main
from toroidal_sim.env import ToroidalDotConfig
from toroidal_sim.session import write_dot_session
from world_model_node.checkpoint import CheckpointManager
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner
from world_model_node.offline.cli import main as train_main
from world_model_node.offline.evaluation import dot_centroids, torus_distance
from world_model_node.offline.trainer import (
    STATE_FILE,
    OfflineTrainer,
    TrainError,
    TrainSettings,
    lr_factor,
)

torch.set_num_threads(1)
ACTIONS = np.array([[-1.0], [1.0]], np.float32)
SMALL_DOT = ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5, seed=0)


def tiny(**kw) -> WorldModelConfig:
    return WorldModelConfig.tiny(**kw)


def weights(trainer: OfflineTrainer) -> dict[str, torch.Tensor]:
    out = {f'ae.{k}': v.detach().clone() for k, v in trainer.autoencoder.state_dict().items()}
    out.update({f'pred.{k}': v.detach().clone() for k, v in trainer.predictor.state_dict().items()})
    return out


def test_batched_context_prediction_equals_full_sequence_forward():
    """The trainer predicts a batch of samples with build_context + predict (stop-gradient
    history, as online); values equal the full-sequence forward and the one-sample context."""
    cfg = tiny()
    learner = OnlineLearner(cfg, ACTIONS)
    pred = learner.levels[0].predictor
    with torch.no_grad():
        for f in pred.films.values():
            f.gamma.weight.normal_(std=0.5)  # make the candidate action matter
        b, t, d = 3, cfg.tokens_per_frame, cfg.embed_dim
        feats = torch.randn(b, cfg.context_frames, t, d)
        acts = learner.levels[0].actions[torch.randint(0, 2, (b, cfg.context_frames))]  # [B, F, 1]
        ctx = pred.build_context(feats[:, -1], feats[:, :-1], acts[:, :-1])
        batched = pred.predict(ctx, acts[:, -1])
        full = pred(feats, acts)
        assert torch.allclose(batched.prediction, full.prediction, atol=1e-5)
        assert torch.allclose(batched.head_predictions, full.head_predictions, atol=1e-5)
        for i in range(b):
            one = pred.predict(
                pred.build_context(
                    feats[i : i + 1, -1], feats[i : i + 1, :-1], acts[i : i + 1, :-1]
                ),
                acts[i, -1:],
            )
            assert torch.allclose(one.prediction[0], batched.prediction[i], atol=1e-5)


def test_training_lowers_the_loss_and_evaluates_heldout_dot_error(tmp_path, dot_sessions):
    paths = dot_sessions(tmp_path, n=2, steps=60)
    settings = TrainSettings(
        batch_size=8, steps=60, gate=False, save_every=0, val_fraction=0.2, val_block=16
    )
    trainer = OfflineTrainer(
        paths, tmp_path / 'out', tiny(), settings, device='cpu', progress=False
    )
    before = trainer.evaluate_samples(trainer.train_ids[:32])
    result = trainer.train()
    after = trainer.evaluate_samples(trainer.train_ids[:32])
    # the predicted frame and features get much closer to the real next frame (the action CE of a
    # still-blurry prediction stays near chance this early)
    assert after['patch_loss'] < 0.2 * before['patch_loss'], (before, after)
    assert after['latent_loss'] < 0.5 * before['latent_loss'], (before, after)
    assert (
        after['reconstruction_loss'] < 0.2 * before['reconstruction_loss']
        and after['loss'] < before['loss']
    )
    assert not result.interrupted and result.global_step == 60 and result.samples_this_run == 480
    ev = result.eval
    assert ev['samples'] == trainer.val_ids.size > 0
    for a, entry in ev['per_action'].items():
        assert {'explained_variance', 'dot_error_px_median', 'within_3px'} <= set(entry)
    summary = (tmp_path / 'out' / 'offline_summary.json').read_text()
    assert '"joint_steps": 60' in summary


def test_dot_centroid_and_torus_distance():
    img = np.zeros((2, 32, 32, 3), np.uint8)
    img[0, 10:13, 30:32] = 255
    img[0, 10:13, 0:1] = 255  # a dot split by the right border, centred at x = 31.0
    img[1, 5:8, 4:7] = 255  # centred at (5, 6)
    c = dot_centroids(img)
    assert abs(c[0, 0] - 31.0) < 0.2 and abs(c[0, 1] - 11.0) < 0.2
    assert np.allclose(c[1], [5.0, 6.0], atol=0.2)
    assert torus_distance(np.array([[31.0, 11.0]]), np.array([[1.0, 11.0]]), 32)[
        0
    ] == pytest.approx(2.0)
    assert np.isnan(dot_centroids(np.zeros((1, 8, 8, 3)))[0]).all()


def test_dot_centroid_ignores_a_patchy_haze_and_finds_no_dot_in_a_faint_image():
    rng = np.random.default_rng(0)
    img = np.zeros((2, 224, 224, 3))
    img[:, 80:150:2, 40:180:3] = 30.0  # a faint patchy smear, like a decoded prediction's haze
    img += rng.uniform(0, 6, img.shape)
    img[0, 30:39, 180:189] = 255.0  # an 81-pixel dot centred at (184, 34), far off-centre
    img[1, 30:39, 180:189] = 40.0  # only a shadow of a dot: no dot drawn
    c = dot_centroids(img.astype(np.uint8))
    assert np.allclose(c[0], [184.0, 34.0], atol=0.5)
    assert np.isnan(c[1]).all()


def test_online_learner_resumes_from_an_offline_checkpoint(tmp_path, dot_sessions):
    paths = dot_sessions(tmp_path)
    settings = TrainSettings(
        batch_size=8,
        steps=12,
        lr_schedule='cosine',
        warmup_steps=3,
        save_every=0,
        gate_check_interval=2,
    )
    cfg = tiny(reconstruction_threshold=0.03)  # the gate opens within the run
    trainer = OfflineTrainer(paths, tmp_path / 'out', cfg, settings, device='cpu', progress=False)
    trainer.train()
    st = trainer.state
    assert st.autoencoder_only_steps > 0 and st.joint_steps > 0
    online = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'out')
    mine = weights(trainer)
    for k, v in online.autoencoder.state_dict().items():
        assert torch.equal(v, mine[f'ae.{k}']), k
    for k, v in online.levels[0].predictor.state_dict().items():
        assert torch.equal(v, mine[f'pred.{k}']), k
    assert online.step == 12 * 8 and online.autoencoder_steps == 12
    assert online.levels[0].training_steps == st.joint_steps
    assert (
        online.ae_optimizer.param_groups[0]['lr'] == cfg.autoencoder_lr
    )  # base lr, not the decayed one
    assert online.levels[0].optimizer.param_groups[0]['lr'] == cfg.predictor_lr
    # the optimizer moments came along: the online learner continues, it does not restart
    assert online.ae_optimizer.state and online.levels[0].optimizer.state
    frame = write_dot_session(tmp_path / 'x', [1], config=SMALL_DOT)[0]
    r = online.observe(frame)
    assert r.step == 12 * 8 + 1


def test_offline_run_starts_from_an_online_checkpoint_and_leaves_it_untouched(
    tmp_path, dot_sessions
):
    cfg = tiny(reconstruction_threshold=1.0)  # the online learner acts and trains its predictor
    online_dir = tmp_path / 'online'
    online = OnlineLearner(cfg, ACTIONS, checkpoint_dir=online_dir)
    frames = write_dot_session(tmp_path / 'y', [1, 0] * 6, config=SMALL_DOT)
    for i, f in enumerate(frames[:-1]):
        online.observe(f)
        online.record_action(i % 2)
    online.save()
    files = {p.name: p.read_bytes() for p in online_dir.iterdir()}
    counters = (online.step, online.autoencoder_steps, online.levels[0].training_steps)
    assert counters[2] > 0

    settings = TrainSettings(batch_size=8, steps=5, gate=False, save_every=0)
    trainer = OfflineTrainer(
        dot_sessions(tmp_path),
        tmp_path / 'out',
        cfg,
        settings,
        init_dir=online_dir,
        device='cpu',
        progress=False,
    )
    for k, v in online.autoencoder.state_dict().items():  # starts from the online weights
        assert torch.equal(v, trainer.autoencoder.state_dict()[k])
    trainer.train()
    assert {p.name: p.read_bytes() for p in online_dir.iterdir()} == files  # read only
    back = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'out')
    assert (back.step, back.autoencoder_steps, back.levels[0].training_steps) == (
        counters[0] + 40,
        counters[1] + 5,
        counters[2] + 5,
    )
    assert back.generation == online.generation + 1
    # an existing checkpoint is never the output of a new run unless asked
    with pytest.raises(TrainError, match='holds a checkpoint'):
        OfflineTrainer(
            dot_sessions(tmp_path / 'z'), online_dir, cfg, settings, device='cpu', progress=False
        )


def _run(tmp_path: Path, paths, out: str, stop_after=None, resume=False):
    cfg = tiny(reconstruction_threshold=0.03)
    settings = TrainSettings(
        batch_size=8,
        steps=16,
        lr_schedule='cosine',
        warmup_steps=4,
        save_every=5,
        gate_check_interval=2,
        val_fraction=0.1,
        val_block=8,
    )
    trainer = OfflineTrainer(
        [] if resume else paths,
        tmp_path / out,
        None if resume else cfg,
        None if resume else settings,
        resume=resume,
        device='cpu',
        progress=False,
    )
    return trainer, trainer.train(stop_after=stop_after)


def test_interrupted_run_continues_exactly(tmp_path, dot_sessions):
    paths = dot_sessions(tmp_path, n=2, steps=40)
    whole, res = _run(tmp_path, paths, 'whole')
    assert res.global_step == 16 and whole.state.epoch >= 1  # crosses an epoch boundary
    assert whole.state.autoencoder_only_steps > 0 and whole.state.joint_steps > 0

    part, res1 = _run(tmp_path, paths, 'part', stop_after=7)
    assert res1.interrupted and res1.global_step == 7 and (tmp_path / 'part' / STATE_FILE).exists()
    del part
    resumed, res2 = _run(tmp_path, paths, 'part', resume=True)
    assert res2.global_step == 16 and res2.steps_this_run == 9 and not res2.interrupted
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    for oa, ob in zip(whole.optimizers, resumed.optimizers):
        sa, sb = oa.state_dict()['state'], ob.state_dict()['state']
        assert all(torch.equal(sa[i]['exp_avg'], sb[i]['exp_avg']) for i in sa)
        assert oa.param_groups[0]['lr'] == ob.param_groups[0]['lr']
    sw, sr = whole.state, resumed.state
    assert (sw.samples, sw.joint_steps, sw.autoencoder_only_steps, sw.epoch, sw.gate_recon) == (
        sr.samples,
        sr.joint_steps,
        sr.autoencoder_only_steps,
        sr.epoch,
        sr.gate_recon,
    )
    assert whole.state.last_eval['loss'] == pytest.approx(resumed.state.last_eval['loss'], abs=0)


def test_resume_refuses_a_checkpoint_trained_further_online(tmp_path, dot_sessions):
    paths = dot_sessions(tmp_path, n=1, steps=40)
    _run(tmp_path, paths, 'run', stop_after=3)
    cfg = tiny(reconstruction_threshold=0.03)
    online = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'run')
    online.save()  # the node went on from it
    with pytest.raises(TrainError, match='trained further'):
        _run(tmp_path, paths, 'run', resume=True)
    with pytest.raises(TrainError, match='nothing to resume'):
        _run(tmp_path, paths, 'nowhere', resume=True)
    with pytest.raises(TrainError, match='--resume'):  # a new run into a run folder
        _run(tmp_path, paths, 'run')


def test_lr_schedule_warms_up_and_decays():
    f = [lr_factor(s, 20, 'cosine', 5, 0.1) for s in range(20)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert f[5] == pytest.approx(1.0) and all(a >= b for a, b in zip(f[5:], f[6:])) and f[-1] > 0.1
    assert lr_factor(100, 20, 'cosine', 5, 0.1) == pytest.approx(0.1)
    assert [lr_factor(s, 20, 'constant', 2, 0.0) for s in (0, 1, 2, 19)] == [0.5, 1.0, 1.0, 1.0]


def test_bf16_autocast_step_runs_on_cpu(tmp_path, dot_sessions):
    settings = TrainSettings(
        batch_size=4, steps=2, gate=False, save_every=0, precision='bf16', val_fraction=0.0
    )
    trainer = OfflineTrainer(
        dot_sessions(tmp_path, n=1, steps=20),
        tmp_path / 'out',
        tiny(),
        settings,
        device='cpu',
        progress=False,
    )
    res = trainer.train()
    assert res.global_step == 2 and np.isfinite(res.train_metrics['loss'])
    with pytest.raises(TrainError, match='fp16 needs a CUDA'):
        OfflineTrainer(
            dot_sessions(tmp_path / 'b', n=1, steps=20),
            tmp_path / 'out2',
            tiny(),
            TrainSettings(precision='fp16'),
            device='cpu',
            progress=False,
        )


def test_cli_help_shows_examples_and_does_not_import_torch_at_devbot_start(capsys):
    import subprocess
    import sys

    code = (
        'import sys; from devbot.cli import main; from world_model_node.offline import cli; '
        'print("torch" in sys.modules)'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == 'False', out.stderr
    with pytest.raises(SystemExit) as exc:
        devbot_main(['train', '--help'])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert (
        'examples:' in text and 'devbot train --robot toroidal_dot' in text and 'torchrun' in text
    )
    assert '--resume' in text and '--batch-size' in text


def test_cli_trains_from_a_robots_sessions_and_resumes(tmp_path, capsys, dot_sessions):
    dot_sessions(tmp_path, n=2, steps=40)
    root = str(tmp_path / 'sessions')
    out = str(tmp_path / 'ck')
    common = ['--sessions-dir', root, '--preset', 'tiny', '--batch-size', '8', '--no-progress']
    assert (
        train_main(
            [
                '--robot',
                'toroidal_dot',
                *common,
                '--steps',
                '6',
                '--stop-after',
                '3',
                '--out',
                out,
                '--set',
                'reconstruction_threshold=0.03',
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert 'robot toroidal_dot, 2 session(s)' in text and f'devbot train --resume {out}' in text
    assert train_main(['--resume', out, '--no-progress']) == 0
    text = capsys.readouterr().out
    assert (
        'resuming at step 3' in text
        and 'done: 6 steps, 3 in this run' in text
        and 'held-out:' in text
    )
    assert CheckpointManager(out).exists()
    # --init without --preset takes the checkpoint's own model config (tiny here)
    robot = ['--robot', 'toroidal_dot', '--sessions-dir', root]
    next_run = ['--out', str(tmp_path / 'next'), '--steps', '2', '--batch-size', '8']
    assert train_main([*robot, '--init', out, *next_run, '--no-progress']) == 0
    assert 'model 32px width 32' in capsys.readouterr().out
    assert train_main([*robot, '--init', str(tmp_path / 'none'), '--no-progress']) == 2
    assert 'no checkpoint there' in capsys.readouterr().err
    # clear errors, exit status 2
    assert train_main(['--robot', 'nobody', *common]) == 2
    assert 'no session of' in capsys.readouterr().err
    assert train_main([*common]) == 2
    assert train_main(['--robot', 'toroidal_dot', *common, '--out', out]) == 2
    assert 'holds an offline run' in capsys.readouterr().err
    assert (
        train_main(
            [
                '--robot',
                'toroidal_dot',
                *common,
                '--batch-size',
                '4096',
                '--out',
                str(tmp_path / 'big'),
            ]
        )
        == 2
    )
    assert 'fewer than one batch' in capsys.readouterr().err


def test_cli_filter_trains_only_on_the_kept_transitions_and_a_bad_filter_stops_it(
    tmp_path, capsys, dot_sessions
):
    dot_sessions(tmp_path, n=2, steps=40)
    common = [
        '--robot', 'toroidal_dot', '--sessions-dir', str(tmp_path / 'sessions'), '--preset',
        'tiny', '--batch-size', '4', '--no-progress', '--steps', '2',
    ]  # fmt: skip
    out = tmp_path / 'moves'
    assert train_main([*common, '--filter', 'actions=1', '--out', str(out)]) == 0
    text = capsys.readouterr().out
    assert "samples kept by the filter 'actions=1'" in text
    state = torch.load(out / STATE_FILE, weights_only=False)
    assert state['data']['filter'] == 'actions=1'
    assert state['settings']['transition_filter'] == 'actions=1'
    moves = OfflineTrainer(
        [], out, resume=True, device='cpu', progress=False
    )  # the run's own index, rebuilt from its stored settings
    assert moves.index.action_counts()[0] == 0 and moves.index.action_counts()[1] > 0
    assert train_main([*common, '--filter', 'actions=5', '--out', str(tmp_path / 'bad')]) == 2
    err = capsys.readouterr().err
    assert "filter 'actions=5'" in err and 'no action [5]' in err
    assert not (tmp_path / 'bad').exists()


def test_sigint_saves_and_the_run_resumes(tmp_path, dot_sessions):
    import signal
    import subprocess
    import sys
    import time

    dot_sessions(tmp_path, n=1, steps=40)
    out = tmp_path / 'ck'
    cmd = [
        sys.executable,
        '-m',
        'world_model_node.offline.cli',
        '--robot',
        'toroidal_dot',
        '--sessions-dir',
        str(tmp_path / 'sessions'),
        '--preset',
        'tiny',
        '--batch-size',
        '4',
        '--steps',
        '100000',
        '--save-every',
        '0',
        '--no-progress',
        '--threads',
        '1',
        '--out',
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # the start-up line: training begins
        assert '[train] new run' in line, line + proc.stderr.read()
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        # not communicate(): it would skip what readline buffered
        stdout, stderr = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert f'continue with: devbot train --resume {out}' in stdout
    saved = torch.load(out / STATE_FILE, weights_only=True)
    done = saved['run']['global_step']
    assert 0 < done < 100000
    assert OnlineLearner(tiny(), ACTIONS, checkpoint_dir=out).autoencoder_steps == done
    trainer = OfflineTrainer([], out, resume=True, device='cpu', progress=False)
    assert trainer.state.global_step == done and trainer.train(stop_after=2).global_step == done + 2


def test_synthetic_sessions_command_writes_sessions_that_read_back(tmp_path, capsys):
    from devbot.bag import Session
    from world_model_node.offline.synthetic import main as synthetic_main

    assert (
        synthetic_main(['--root', str(tmp_path), '--sessions', '2', '--steps', '7', '--seed', '3'])
        == 0
    )
    paths = sorted((tmp_path / 'toroidal_dot').iterdir())
    assert len(paths) == 2 and capsys.readouterr().out.count(': 7 transitions') == 2
    for p in paths:
        with Session(p) as s:
            assert len(list(s.transitions())) == 7


def test_a_run_waiting_for_data_says_so_and_how_to_feed_it(
    tmp_path, capsys, monkeypatch, dot_sessions
):
    """The share of time spent waiting for batches is measured; when it dominates, the run says
    once how to feed the model faster; when training dominates, it says nothing."""
    import json
    import time as _time

    paths = dot_sessions(tmp_path, n=1, steps=60)
    settings = TrainSettings(batch_size=4, steps=14, gate=False, save_every=0, val_fraction=0.0)
    slow_data = OfflineTrainer(
        paths, tmp_path / 'a', tiny(), settings, device='cpu', progress=False
    )
    get = type(slow_data.train_set).__getitem__
    monkeypatch.setattr(
        type(slow_data.train_set), '__getitem__', lambda ds, i: (_time.sleep(0.15), get(ds, i))[1]
    )
    res = slow_data.train()
    assert res.data_wait_fraction > 0.5
    out = capsys.readouterr().out
    assert out.count('waiting for data takes') == 1 and '--workers N' in out
    summary = json.loads((tmp_path / 'a' / 'offline_summary.json').read_text())
    assert summary['this_run']['data_wait_fraction'] == pytest.approx(
        res.data_wait_fraction, abs=1e-3
    )
    monkeypatch.undo()

    slow_step = OfflineTrainer(
        paths, tmp_path / 'b', tiny(), settings, device='cpu', progress=False
    )
    step = slow_step.train_step
    slow_step.train_step = lambda batch: (_time.sleep(0.3), step(batch))[1]
    res = slow_step.train()
    assert 0.0 <= res.data_wait_fraction < 0.5
    assert 'waiting for data' not in capsys.readouterr().out
