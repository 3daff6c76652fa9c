"""``devbot train``: train the world model offline from recorded sessions, batched and resumable.

Reads every session of a robot (or the bags you name), trains the same models with the same
losses as the online learner on batches of transitions, evaluates on held-out transitions and
writes a checkpoint in the online format: the world-model node resumes from it
(``checkpoint_dir:=<out>``), and ``--init`` starts an offline run from an online checkpoint.
An interrupted run (Ctrl-C, SIGTERM, ``--stop-after``) saves and continues exactly with
``--resume <out>``. The same command runs on N processes or GPUs under ``torchrun``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'batched, resumable offline training from sessions (torchrun-ready)'

EXAMPLES = '''examples:
  devbot train --robot toroidal_dot                    # all sessions, full model, 1 epoch
  devbot train --robot toroidal_dot --preset tiny --steps 200 --batch-size 16
  devbot train --bags saved/sessions/toroidal_dot/20261125-101500-000001 \\
      --epochs 5 --lr-schedule cosine --warmup-steps 100
  devbot train --robot toroidal_dot --init saved/checkpoints/toroidal_dot \\
      --out saved/checkpoints/dot_offline
  devbot train --resume saved/checkpoints/dot_offline  # continue an interrupted run exactly
  devbot train --robot toroidal_dot --filter actions=1 # only the transitions of action 1
  devbot train --robot jetbot --device cuda --precision bf16 --compile --workers 4
  torchrun --nproc-per-node 4 -m world_model_node.offline.cli \\
      --robot jetbot --batch-size 256                                       # 4 GPUs
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint host0:29500 \\
      -m world_model_node.offline.cli --robot jetbot --batch-size 1024      # 2 nodes

then run the robot on the result:
  devbot launch launch/toroidal_dot_world_model.launch.yaml \\
      checkpoint_dir:=saved/checkpoints/dot_offline
  (or the world_model_node parameter checkpoint_dir; the node resumes from the checkpoint)

--batch-size is the global batch (all processes together), so 1 process and N processes take the
same optimizer steps on the same samples.
'''


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='devbot train',
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = p.add_argument_group('data')
    data.add_argument(
        '--robot',
        help='train from every session of this robot (saved/sessions/<robot>/*), oldest first',
    )
    data.add_argument(
        '--bags', nargs='+', metavar='SESSION', help='train from these session folders instead'
    )
    data.add_argument(
        '--sessions-dir', default='saved/sessions', help='sessions root [saved/sessions]'
    )
    data.add_argument(
        '--skip-bad-sessions',
        action='store_true',
        help='leave out unreadable or empty sessions (with a warning) instead of stopping',
    )
    data.add_argument(
        '--filter',
        default='',
        metavar='EXPR',
        help="train only on transitions this filter keeps, e.g. 'actions=1' or "
        "'motor_right>0; from=10' (the recorded selector's filter language) ['': all]",
    )
    data.add_argument(
        '--val-fraction', type=float, default=0.05, help='held-out share of the samples [0.05]'
    )
    data.add_argument(
        '--val-block', type=int, default=64, help='consecutive samples per held-out block [64]'
    )
    data.add_argument(
        '--workers', type=int, default=0, help='DataLoader worker processes per process [0]'
    )
    data.add_argument(
        '--cache-mb', type=float, default=1024, help='decoded-frame cache per process, MiB [1024]'
    )

    out = p.add_argument_group('checkpoints')
    out.add_argument(
        '--out',
        help='output checkpoint folder [saved/checkpoints/<robot>_offline_<time>]; '
        'never an existing checkpoint unless --overwrite',
    )
    out.add_argument(
        '--init',
        metavar='DIR',
        help='start from this online checkpoint (read only; counters continue)',
    )
    out.add_argument(
        '--resume',
        metavar='DIR',
        help='continue the interrupted offline run in DIR exactly '
        '(its data and settings; training options are ignored)',
    )
    out.add_argument(
        '--overwrite',
        action='store_true',
        help='allow --out to be a folder that holds a checkpoint',
    )
    out.add_argument(
        '--save-every', type=int, default=500, help='checkpoint every N steps; 0 = at the end [500]'
    )
    out.add_argument(
        '--stop-after', type=int, help='end this invocation after N steps (saved; --resume goes on)'
    )

    model = p.add_argument_group('model')
    model.add_argument(
        '--preset',
        choices=['full', 'tiny'],
        help="base model config [full; with --init: the checkpoint's own config]",
    )
    model.add_argument(
        '--params-file',
        help='world-model parameters (a ROS params file like '
        'config/world_model.params.yaml, or a plain mapping)',
    )
    model.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='override one WorldModelConfig field (YAML value); repeatable',
    )

    opt = p.add_argument_group('optimisation')
    opt.add_argument('--batch-size', type=int, default=32, help='global batch size [32]')
    opt.add_argument(
        '--steps', type=int, default=0, help='optimizer steps of the run; 0 = from --epochs [0]'
    )
    opt.add_argument(
        '--epochs', type=float, default=1.0, help='passes over the training samples [1]'
    )
    opt.add_argument(
        '--lr-schedule',
        choices=['constant', 'cosine'],
        default='constant',
        help='learning-rate schedule after the warm-up [constant]',
    )
    opt.add_argument('--warmup-steps', type=int, default=0, help='linear learning-rate warm-up [0]')
    opt.add_argument(
        '--min-lr-ratio', type=float, default=0.0, help='cosine floor, fraction of the base lr [0]'
    )
    opt.add_argument(
        '--autoencoder-lr', type=float, help='base lr of the autoencoder [config / checkpoint]'
    )
    opt.add_argument(
        '--predictor-lr', type=float, help='base lr of the predictor [config / checkpoint]'
    )
    opt.add_argument(
        '--no-gate',
        action='store_true',
        help='joint steps from the start (default: masked autoencoder steps while the '
        'reconstruction MSE is above reconstruction_threshold, as online)',
    )
    opt.add_argument(
        '--gate-check-interval',
        type=int,
        default=5,
        help='while the gate is closed, measure the reconstruction every N steps [5]',
    )
    opt.add_argument(
        '--precision',
        choices=['fp32', 'bf16', 'fp16'],
        default='fp32',
        help='autocast precision (fp16 only on CUDA) [fp32]',
    )
    opt.add_argument('--compile', action='store_true', help='torch.compile the training step')
    opt.add_argument('--seed', type=int, default=0, help='data order, held-out split, masks [0]')

    run = p.add_argument_group('run')
    run.add_argument('--device', default='auto', help='auto | cpu | cuda [auto]')
    run.add_argument(
        '--threads', type=int, default=0, help="torch CPU threads per process; 0 = torch's default"
    )
    run.add_argument(
        '--eval-every',
        type=int,
        default=0,
        help='held-out evaluation every N steps; 0 = at the end',
    )
    run.add_argument(
        '--eval-samples',
        type=int,
        default=512,
        help='held-out samples per evaluation; 0 = all [512]',
    )
    run.add_argument('--log-every', type=int, default=10, help='metrics every N steps [10]')
    run.add_argument(
        '--wandb-project', help='log to Weights & Biases (offline mode without an API key)'
    )
    run.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def load_config(
    preset: str | None, params_file: str | None, overrides: list[str], init_dir: str | None = None
):
    """The model config: the preset (default: full; with ``init_dir`` and no preset, the config
    stored in that checkpoint), then a params file, then --set overrides."""
    import yaml

    from world_model_node.config import ConfigError, WorldModelConfig, read_yaml

    if preset is None and init_dir is not None:
        base = checkpoint_config(init_dir).to_dict()
    else:
        base = (WorldModelConfig.tiny() if preset == 'tiny' else WorldModelConfig()).to_dict()
    values: dict = {}
    if params_file:
        path = Path(params_file)
        values = _params_mapping(read_yaml(path))
        ignored = sorted(k for k in values if k not in base)
        values = {k: v for k, v in values.items() if k in base}
        if ignored:
            print(
                f'[train] {path}: not model parameters, ignored: {", ".join(ignored)}',
                file=sys.stderr,
            )
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f'--set needs KEY=VALUE, got {item!r}')
        key, text = item.split('=', 1)
        values[key.strip()] = yaml.safe_load(text)
    return WorldModelConfig.from_dict({**base, **values})


def checkpoint_config(directory: str):
    """The WorldModelConfig a checkpoint was made with.

    Raises:
        ConfigError: no checkpoint in the directory, or it cannot be read.
    """
    from world_model_node.checkpoint import STATE_NAME, CheckpointError, CheckpointManager
    from world_model_node.config import ConfigError, WorldModelConfig

    try:
        comps = CheckpointManager(directory).load()
    except CheckpointError as exc:
        raise ConfigError(f'--init {directory}: {exc}') from exc
    if comps is None:
        raise ConfigError(f'--init {directory}: no checkpoint there')
    return WorldModelConfig.from_checkpoint(comps[STATE_NAME]['config'])


def _params_mapping(doc) -> dict:
    """The parameters of a ROS params file (``<node>: ros__parameters: {...}``), a ``world_model:``
    section, or a plain mapping."""
    if not isinstance(doc, dict):
        return {}
    for value in doc.values():
        if isinstance(value, dict) and isinstance(value.get('ros__parameters'), dict):
            return dict(value['ros__parameters'])
    if isinstance(doc.get('world_model'), dict):
        return dict(doc['world_model'])
    return dict(doc)


def session_paths(args: argparse.Namespace) -> list[Path]:
    """The sessions to train from (--bags, else every session of --robot, oldest first)."""
    if args.bags:
        return [Path(b) for b in args.bags]
    from devbot.bag import list_sessions

    infos = list_sessions(args.sessions_dir, robot=args.robot)
    return [i.path for i in sorted(infos, key=lambda i: i.name)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.robot or args.bags or args.resume):
        print(
            'devbot train: give --robot NAME, --bags SESSION..., or --resume DIR (see --help)',
            file=sys.stderr,
        )
        return 2
    if args.resume and (args.init or args.out):
        print(
            'devbot train: --resume continues a run in its own folder; it takes no --init or --out',
            file=sys.stderr,
        )
        return 2
    import logging

    logging.basicConfig(level=logging.WARNING, format='[train] %(levelname)s %(name)s: %(message)s')

    import torch

    from world_model_node.config import ConfigError
    from world_model_node.offline.dataset import DatasetError
    from world_model_node.offline.trainer import (
        OfflineTrainer,
        TrainError,
        TrainSettings,
        broadcast_text,
        cleanup_distributed,
        format_eval,
        init_distributed,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        info = init_distributed(args.device)
        sessions: list[Path] = []
        if not args.resume:
            sessions = session_paths(args)
            if not sessions:
                raise TrainError(
                    f'no session of {args.robot!r} under {args.sessions_dir} (record one with '
                    f'`devbot launch ... record:=true`, or name bags with --bags)'
                )
        config = (
            None if args.resume else load_config(args.preset, args.params_file, args.set, args.init)
        )
        settings = TrainSettings(
            batch_size=args.batch_size,
            steps=args.steps,
            epochs=args.epochs,
            lr_schedule=args.lr_schedule,
            warmup_steps=args.warmup_steps,
            min_lr_ratio=args.min_lr_ratio,
            autoencoder_lr=args.autoencoder_lr,
            predictor_lr=args.predictor_lr,
            gate=not args.no_gate,
            gate_check_interval=args.gate_check_interval,
            precision=args.precision,
            compile=args.compile,
            val_fraction=args.val_fraction,
            val_block=args.val_block,
            seed=args.seed,
            eval_every=args.eval_every,
            eval_samples=args.eval_samples,
            save_every=args.save_every,
            log_every=args.log_every,
            transition_filter=args.filter,
        )
        out = args.resume or args.out
        if out is None:
            from datetime import datetime

            robot = args.robot or Path(sessions[0]).parent.name
            out = str(
                Path('saved') / 'checkpoints' / f'{robot}_offline_{datetime.now():%Y%m%d-%H%M%S}'
            )
        out = broadcast_text(out)
        trainer = OfflineTrainer(
            sessions,
            out,
            config=config,
            settings=settings,
            init_dir=args.init,
            resume=bool(args.resume),
            device=args.device,
            workers=args.workers,
            cache_mb=args.cache_mb,
            wandb_project=args.wandb_project,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            skip_bad=args.skip_bad_sessions,
            dist_info=info,
        )
        if args.robot and not args.resume and trainer.index.robot_type != args.robot and args.bags:
            raise TrainError(
                f'the bags are of robot {trainer.index.robot_type!r}, not {args.robot!r}'
            )
        if info.is_main:
            print(describe(trainer, resumed=bool(args.resume)), flush=True)
        result = trainer.train(stop_after=args.stop_after)
    except (TrainError, DatasetError, ConfigError, ValueError) as exc:
        print(f'devbot train: {exc}', file=sys.stderr)
        cleanup_distributed()
        return 2
    cleanup_distributed()
    if info.is_main:
        rate = f'{result.samples_per_s:.2f} samples/s'
        if math.isfinite(result.data_wait_fraction):
            rate += f', {100 * result.data_wait_fraction:.0f}% of it waiting for data'
        if result.interrupted:
            print(
                f'[train] stopped at step {result.global_step}/{result.total_steps} ({rate}); '
                f'saved to {result.out_dir}; continue with: devbot train --resume {result.out_dir}',
                flush=True,
            )
        else:
            print(
                f'[train] done: {result.global_step} steps, {result.steps_this_run} in this run, '
                f'{rate}; held-out: {format_eval(result.eval)}',
                flush=True,
            )
            print(
                f'[train] checkpoint: {result.out_dir} '
                f'(world_model_node checkpoint_dir:={result.out_dir})',
                flush=True,
            )
    return 130 if result.interrupted and trainer.stop_requested else 0


def describe(trainer, resumed: bool) -> str:
    """The start-up line: what is trained from what, where to."""
    idx, s, st = trainer.index, trainer.settings, trainer.state
    what = f'resuming at step {st.global_step}' if resumed else 'new run'
    kept = f'kept by the filter {idx.transition_filter!r} ' if idx.transition_filter else ''
    cfg = trainer.config
    return (
        f'[train] {what}: robot {idx.robot_type}, {len(idx.sessions)} session(s), '
        f'{len(idx)} samples {kept}({trainer.train_ids.size} train, {trainer.val_ids.size} held '
        f'out); model {cfg.img_size}px width {cfg.embed_dim}; batch {s.batch_size} on '
        f'{trainer.dist.world_size} process(es) ({trainer.device}); {trainer.total_steps} steps '
        f'({trainer.batches_per_epoch} per epoch), lr {s.lr_schedule}, {s.precision}; '
        f'out {trainer.out_dir}'
    )


if __name__ == '__main__':
    sys.exit(main())
