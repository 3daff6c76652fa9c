"""The world model on a CUDA device: the online learner, checkpoints from the GPU to the CPU, and
offline training in fp32 / bf16 / fp16 (loss scaling) and compiled.

Every test here is skipped where torch sees no CUDA device (CI has none); run them on a GPU
machine with ``bench/gpu_check.sh`` (or ``pytest -m cuda``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from toroidal_sim.env import ToroidalDotConfig
from toroidal_sim.session import write_dot_session
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner
from world_model_node.offline.trainer import OfflineTrainer, TrainSettings

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device'),
]
ACTIONS = np.array([[-1.0], [1.0]], np.float32)


def dot_frames(root: Path, n: int) -> list[np.ndarray]:
    return write_dot_session(
        root,
        [i % 2 for i in range(n)],
        config=ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5, seed=3),
    )


def test_online_learner_trains_on_cuda_and_its_checkpoint_scores_the_same_on_cpu(tmp_path):
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0, prediction_threshold=0.0
    )  # act and train every frame
    gpu = OnlineLearner(cfg, ACTIONS, device='cuda', checkpoint_dir=tmp_path)
    assert all(p.is_cuda for p in gpu.autoencoder.parameters())
    assert all(p.is_cuda for p in gpu.levels[0].predictor.parameters())
    frames = dot_frames(tmp_path / 'frames', 12)
    before = {k: v.detach().clone() for k, v in gpu.levels[0].predictor.state_dict().items()}
    for i, f in enumerate(frames[:-1]):
        r = gpu.observe(f)
        assert r.gate_open and np.all(np.isfinite(r.scores))
        gpu.record_action(i % 2)
    assert gpu.levels[0].training_steps > 0
    changed = [
        k for k, v in gpu.levels[0].predictor.state_dict().items() if not torch.equal(v, before[k])
    ]
    assert changed, 'no predictor parameter moved on the GPU'
    gpu.save()

    # a real CUDA checkpoint, loaded onto the CPU: the same weights, and the same scores
    cpu = OnlineLearner(cfg, ACTIONS, device='cpu', checkpoint_dir=tmp_path)
    assert all(p.device.type == 'cpu' for p in cpu.autoencoder.parameters())
    for k, v in gpu.levels[0].predictor.state_dict().items():
        assert torch.equal(v.cpu(), cpu.levels[0].predictor.state_dict()[k]), k
    g, c = gpu.observe(frames[-1]), cpu.observe(frames[-1])
    np.testing.assert_allclose(g.scores, c.scores, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize('precision', ['fp32', 'bf16', 'fp16'])
def test_offline_training_on_cuda_lowers_the_heldout_loss(tmp_path, precision, dot_sessions):
    paths = dot_sessions(tmp_path, steps=80)
    settings = TrainSettings(
        batch_size=16,
        steps=80,
        gate=False,
        save_every=0,
        val_fraction=0.2,
        val_block=16,
        precision=precision,
    )
    trainer = OfflineTrainer(
        paths, tmp_path / 'out', WorldModelConfig.tiny(), settings, device='cuda', progress=False
    )
    assert trainer.device.type == 'cuda' and trainer.scaler.is_enabled() == (precision == 'fp16')
    start = trainer.evaluate_samples(trainer.val_ids[:32])
    res = trainer.train()
    end = trainer.evaluate_samples(trainer.val_ids[:32])
    assert res.global_step == 80 and np.isfinite(res.train_metrics['loss'])
    # (the CPU run of the same test data falls 5x in 60 steps; reduced precision must still learn)
    assert end['reconstruction_loss'] < 0.5 * start['reconstruction_loss'], (start, end)
    assert end['patch_loss'] < 0.5 * start['patch_loss'], (start, end)
    # the run's checkpoint is the online format and loads on the CPU
    online = OnlineLearner(
        WorldModelConfig.tiny(), ACTIONS, device='cpu', checkpoint_dir=tmp_path / 'out'
    )
    for k, v in trainer.predictor.state_dict().items():
        assert torch.equal(v.cpu(), online.levels[0].predictor.state_dict()[k]), k


def test_compiled_training_step_on_cuda_follows_the_eager_one(tmp_path, dot_sessions):
    paths = dot_sessions(tmp_path, steps=80)
    weights = {}
    for compiled in (False, True):
        settings = TrainSettings(
            batch_size=8, steps=4, gate=False, save_every=0, val_fraction=0.0, compile=compiled
        )
        trainer = OfflineTrainer(
            paths,
            tmp_path / f'out{compiled}',
            WorldModelConfig.tiny(),
            settings,
            device='cuda',
            progress=False,
        )
        res = trainer.train()
        assert res.global_step == 4 and np.isfinite(res.train_metrics['loss'])
        weights[compiled] = {
            k: v.detach().float().cpu() for k, v in trainer.predictor.state_dict().items()
        }
    # 4 Adam steps of lr 1e-4 move a weight by at most ~4e-4: the two runs must agree far closer
    # than they moved, or the compiled step trains something else
    for k, v in weights[False].items():
        torch.testing.assert_close(weights[True][k], v, rtol=0, atol=2e-4, msg=k)
