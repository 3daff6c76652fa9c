"""The session explorer without a notebook (``devbot explore``, ``scripts/session_explorer.py``).

Writes the notebook's tables (one markdown file) and figures (PNG, an animated GIF for playback)
into a folder, using the same :class:`devbot_explorer.explorer.SessionExplorer` calls.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'session explorer: sessions and a world model as tables/figures'

EXAMPLES = '''examples:
  # every session of every robot
  devbot explore --list
  # info, action distribution, frame views
  devbot explore --session toroidal_dot/20261125-185501-123456
  devbot explore --session toroidal_dot/20261125-185501-123456 --frame 40 --playback 0:60 \\
                 --out /tmp/x
  # + model views
  devbot explore --session 3 --frame 40 --checkpoint saved/checkpoints/toroidal_dot
  devbot explore --session 3 --fresh --preset tiny --train-autoencoder 0:200 --threshold 5e-4 \\
                 --steps 500 --train-predictor 0:200 --save saved/checkpoints/toroidal_dot_explorer
  # generate demo sessions + a tiny model first
  devbot explore --demo /tmp/demo --list

Model views need a checkpoint (default: <checkpoints>/<robot type>, read-only) or --fresh. The
trained model is saved only with --save, and never over an existing checkpoint unless
--overwrite-live is given.
'''


def _range(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(':')
        start, stop = int(a), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected START:STOP (frame indices), got {text!r}'
        ) from None
    if start < 0 or stop <= start:
        raise argparse.ArgumentTypeError(f'need 0 <= START < STOP, got {text!r}')
    return start, stop


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f'expected a number >= 0, got {text!r}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='devbot explore',
        description=__doc__.split('\n\n')[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('--root', default='saved/sessions', help='sessions root [saved/sessions]')
    parser.add_argument(
        '--checkpoints', default='saved/checkpoints', help='checkpoints root [saved/checkpoints]'
    )
    parser.add_argument(
        '--demo',
        metavar='DIR',
        help='first write demo sessions and a tiny checkpoint into DIR '
        '(DIR/sessions, DIR/checkpoints) and use them',
    )
    parser.add_argument('--list', action='store_true', help='list the sessions and exit')
    parser.add_argument(
        '--session', help="a session: index from --list, '<robot>/<session>', a name or a path"
    )
    parser.add_argument('--frame', type=int, help='the frame to look at [the middle transition]')
    parser.add_argument(
        '--strip',
        type=_range,
        default=None,
        metavar='BEFORE:AFTER',
        help='frames before/after --frame in the history strip [6:2]',
    )
    parser.add_argument(
        '--playback',
        type=_range,
        metavar='START:STOP',
        help='write frames START..STOP-1 as playback.gif',
    )
    parser.add_argument(
        '--out', type=Path, help='output folder [saved/reports/explorer_<robot>_<session>]'
    )
    model = parser.add_argument_group('model')
    model.add_argument(
        '--checkpoint', type=Path, help='checkpoint folder [<checkpoints>/<robot type>]'
    )
    model.add_argument(
        '--fresh', action='store_true', help='an untrained model instead of a checkpoint'
    )
    model.add_argument(
        '--preset', choices=['full', 'tiny'], default='full', help='size of a --fresh model [full]'
    )
    model.add_argument('--no-model', action='store_true', help='session views only')
    model.add_argument(
        '--train-autoencoder',
        type=_range,
        metavar='START:STOP',
        help='train the autoencoder on these frames',
    )
    model.add_argument(
        '--train-predictor',
        type=_range,
        metavar='START:STOP',
        help='train the predictor on these frames',
    )
    model.add_argument(
        '--steps', type=int, default=200, help='training steps of each network [200]'
    )
    model.add_argument(
        '--threshold', type=_positive_float, help='... or stop at this evaluation loss'
    )
    model.add_argument(
        '--save', type=Path, help='save the model here (checkpoint format) after training'
    )
    model.add_argument(
        '--overwrite-live',
        action='store_true',
        help='allow --save into a folder that holds a checkpoint',
    )
    model.add_argument(
        '--threads', type=int, default=0, help="torch CPU threads (0 = torch's default)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1:
        print('devbot explore: --steps must be >= 1', file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use('Agg')
    from devbot.bag import BagError
    from devbot_explorer.explorer import ExplorerError, SessionExplorer

    if args.demo:
        _write_demo(Path(args.demo))
        args.root, args.checkpoints = (
            str(Path(args.demo) / 'sessions'),
            str(Path(args.demo) / 'checkpoints'),
        )
    ex = SessionExplorer(args.root, args.checkpoints)
    if args.list or args.session is None:
        print(ex.session_table())
        if args.session is None and not args.list:
            print('\ngive --session (an index above, <robot>/<session> or a path) to explore one')
        return 0
    try:
        return _explore(ex, args)
    except (ExplorerError, BagError, IndexError, ValueError) as exc:
        print(f'devbot explore: {exc}', file=sys.stderr)
        return 1
    finally:
        ex.close()


def _write_demo(directory: Path) -> None:
    from devbot_explorer.demo import write_demo_checkpoint, write_demo_sessions

    if (directory / 'sessions').exists():
        print(f'{directory / "sessions"} exists: using it as it is')
        return
    infos = write_demo_sessions(directory / 'sessions')
    write_demo_checkpoint(directory / 'checkpoints' / 'toroidal_dot', infos[0].path)
    print(f'wrote {len(infos)} demo sessions and a tiny toroidal_dot checkpoint under {directory}')


class _Report:
    """Collects markdown and writes figures into the output folder."""

    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []

    def table(self, table) -> None:
        self.lines += [table.to_markdown(), '']
        print(table, end='\n\n')

    def text(self, text: str) -> None:
        self.lines += [text, '']
        print(text)

    def figure(self, fig, name: str, caption: str) -> None:
        import matplotlib.pyplot as plt

        path = self.out / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        self.lines += [f'![{caption}]({name})', '']
        print(f'wrote {path}')

    def write(self, title: str) -> Path:
        path = self.out / 'summary.md'
        path.write_text(f'# {title}\n\n' + '\n'.join(self.lines))
        print(f'wrote {path}')
        return path


def _explore(ex, args) -> int:
    session = int(args.session) if args.session.isdigit() else args.session
    summary = ex.open(session)
    out = args.out or Path('saved/reports') / f'explorer_{ex.info.robot}_{ex.info.name}'
    report = _Report(out)
    report.table(summary)
    report.table(ex.action_distribution())
    report.figure(ex.action_distribution_figure(), 'actions.png', 'action distribution')
    starts = [t.frame_index for t in ex.transitions]
    frame = (
        args.frame
        if args.frame is not None
        else (starts[len(starts) // 2] if starts else ex.num_frames // 2)
    )
    before, after = args.strip or (6, 2)
    report.figure(ex.frame_figure(frame), 'frame.png', f'frame {frame}')
    report.figure(ex.strip_figure(frame, before=before, after=after), 'strip.png', 'history strip')
    if args.playback:
        path = ex.save_playback(out / 'playback.gif', *args.playback)
        report.text(f'![playback]({path.name})')
    if args.no_model:
        report.write(f'{ex.info.robot}/{ex.info.name}')
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not _load_model(ex, args, report):
        report.write(f'{ex.info.robot}/{ex.info.name}')
        return 0
    report.table(ex.model_table())
    report.figure(
        ex.reconstruction_figure(range(max(0, frame - 3), min(ex.num_frames, frame + 3))),
        'reconstruction.png',
        'autoencoder reconstructions',
    )
    _analyse(ex, frame, report, suffix='')
    runs = []
    if args.train_autoencoder:
        runs.append(
            ex.train_autoencoder(
                range(*args.train_autoencoder), steps=args.steps, threshold=args.threshold
            )
        )
        report.text(f'autoencoder training: {runs[-1]}')
    if args.train_predictor:
        runs.append(
            ex.train_predictor(
                range(*args.train_predictor), steps=args.steps, threshold=args.threshold
            )
        )
        report.text(f'predictor training: {runs[-1]}')
    if runs:
        report.figure(ex.training_figure(*runs), 'training.png', 'training')
        report.table(ex.weight_change_table(top=20))
        report.figure(ex.weight_change_figure(), 'weight_change.png', 'weight change since load')
        _analyse(ex, frame, report, suffix='_after_training')
    report.figure(
        ex.weights_figure('autoencoder'), 'weights_autoencoder.png', 'autoencoder weights'
    )
    report.figure(ex.weights_figure('predictor'), 'weights_predictor.png', 'predictor weights')
    if args.save:
        from devbot_explorer.workbench import LiveCheckpointError

        try:
            generation = ex.save_model(args.save, overwrite_live=args.overwrite_live)
        except LiveCheckpointError as exc:
            report.write(f'{ex.info.robot}/{ex.info.name}')
            print(f'devbot explore: not saved: {exc}', file=sys.stderr)
            return 1
        report.text(f'saved checkpoint generation {generation} to {args.save}')
    report.write(f'{ex.info.robot}/{ex.info.name}')
    return 0


def _load_model(ex, args, report) -> bool:
    from devbot_explorer.explorer import ExplorerError

    if args.fresh:
        from world_model_node.config import WorldModelConfig

        ex.load_model(
            fresh=True,
            config=WorldModelConfig.tiny() if args.preset == 'tiny' else WorldModelConfig(),
        )
        return True
    try:
        ex.load_model(args.checkpoint)
    except ExplorerError as exc:
        if args.checkpoint is not None or args.train_autoencoder or args.train_predictor:
            raise
        report.text(f'model views skipped: {exc}')
        return False
    return True


def _analyse(ex, frame: int, report, suffix: str) -> None:
    if ex.action_after(frame) is None:
        report.text(
            f'frame {frame} has no recorded action after it: no sweep/attention/counterfactuals'
        )
        return
    d = ex.analyse(frame)
    report.table(ex.sweep_table(d))
    report.figure(ex.sweep_figure(d), f'sweep{suffix}.png', 'action sweep')
    report.table(ex.attention_table(d))
    report.figure(ex.attention_figure(d), f'attention{suffix}.png', 'attention')
    if d.counterfactual is not None:
        report.table(ex.counterfactual_table(d))


if __name__ == '__main__':
    sys.exit(main())
