"""Write the notebooks under notebooks/ from the cell sources below (outputs empty).

The notebooks are generated so that their code stays short, reviewed here as Python, and the
same in every checkout. Run after editing a cell:

    .venv/bin/python tools/make_notebooks.py           # writes notebooks/*.ipynb
    .venv/bin/python tools/make_notebooks.py --check   # exit 1 if a notebook differs from this file

Each notebook starts with a parameter cell (tagged ``parameters``); with its defaults it runs
headless on generated data (test/test_notebooks.py executes all of them with nbclient).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / 'notebooks'


def md(text: str):
    return new_markdown_cell(text.strip('\n'))


def code(text: str, parameters: bool = False):
    cell = new_code_cell(text.strip('\n'))
    if parameters:
        cell.metadata['tags'] = ['parameters']
    return cell


# ---------------------------------------------------------------------------------------------
# the dot
# ---------------------------------------------------------------------------------------------

DOT = [
    md('''
# Action test: the toroidal dot

Executes the dot's actions on the env core (`toroidal_sim.env`, the same code the `toroidal_sim`
node runs) and shows what they do: one action, a sequence with its trajectory, the wrap-around at
the image edge, the before/after difference and the randomisation of resets.
Action 0 keeps the dot where it is; action 1 moves it 27 px to the right; both axes wrap.
'''),
    code(
        '''
SEED = 0              # the env's RNG seed (start and reset positions)
SEQUENCE = [1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]
RESETS = 400          # resets drawn for the randomisation check
''',
        parameters=True,
    ),
    code('''
%matplotlib inline
import numpy as np
from IPython.display import JSON, display
from devbot_explorer.action_check import (DotActionCheck, dot_trajectory_figure, frames_figure,
                                          reset_figure, step_figure, uniformity)
from devbot_explorer.table import Table

check = DotActionCheck(seed=SEED)
size, move = check.config.size, check.config.move_pixels
action_rows = [[label, check.action_space.values(i)] for i, label in enumerate(check.labels())]
display(Table(['action', 'values'], action_rows,
              title=f'action space of {check.action_space.robot_type}'))
print('start position (x, y):', check.pose())
'''),
    md('## A single action'),
    code('''
move_step = check.act(1)
print(f'move: {move_step.pose_before} -> {move_step.pose_after}, '
      f'{move_step.changed_pixels} pixels changed')
_ = step_figure(move_step)
'''),
    code('''
stay_step = check.act(0)
print(f'stay: {stay_step.pose_before} -> {stay_step.pose_after}, '
      f'{stay_step.changed_pixels} pixels changed')
_ = step_figure(stay_step)
'''),
    md('## A sequence and its trajectory'),
    code('''
steps = check.run(SEQUENCE)
_ = dot_trajectory_figure(steps, size)
_ = frames_figure([steps[0].before] + [s.after for s in steps],
                  ['start'] + [f'a={s.action}' for s in steps],
                  columns=9, title='frames of the sequence')
display(Table(['step', 'action', 'x before', 'x after', 'dx (mod size)', 'y'],
              [[k, s.action, s.pose_before[0], s.pose_after[0],
                (s.pose_after[0] - s.pose_before[0]) % size, s.pose_after[1]]
               for k, s in enumerate(steps)], title='trajectory'))
'''),
    md('''
## Wrap-around

A dot near the right edge is drawn on both edges; moving it on wraps its centre to the left.
Because gcd(224, 27) = 1, the dot visits every column and is back at its start after 224 moves.
'''),
    code('''
edge = check.place(size - 3, 100)
wrap_step = check.act(1)
print(f'centre {wrap_step.pose_before} -> {wrap_step.pose_after}')
cols = np.flatnonzero(edge[:, :, 0].any(axis=0))
print('columns of the dot at the edge:', cols.tolist())
_ = step_figure(wrap_step, title='wrap-around: the disc straddles the edge, then its centre wraps')

start = check.frame()
cycle = check.moves_to_return()
for _ in range(cycle):
    check.act(1)
back_to_start = bool(np.array_equal(start, check.frame()))
print(f'after {cycle} moves the frame equals the start frame: {back_to_start}')
'''),
    md('## Before/after difference'),
    code('''
diff_table = Table(['action', 'changed pixels', 'white pixels before', 'white pixels after'],
                   [[s.label, s.changed_pixels, int(s.before[:, :, 0].astype(bool).sum()),
                     int(s.after[:, :, 0].astype(bool).sum())] for s in (move_step, stay_step)],
                   title='difference images (a move clears one disc and paints another: 2 x 81 px)')
display(diff_table)
'''),
    md('## Reset randomisation'),
    code('''
positions = check.reset_positions(RESETS)
_ = reset_figure(positions, size)
stats = uniformity(positions, size)
display(Table(list(stats), [list(stats.values())],
              title='uniformity of the reset positions (chi-square, 4x4 cells)'))
'''),
    code('''
summary = {
    'move': {'before': list(move_step.pose_before), 'after': list(move_step.pose_after),
             'changed': move_step.changed_pixels},
    'stay': {'before': list(stay_step.pose_before), 'after': list(stay_step.pose_after),
             'changed': stay_step.changed_pixels},
    'trajectory': [list(steps[0].pose_before)] + [list(s.pose_after) for s in steps],
    'actions': [s.action for s in steps],
    'wrap': {'before': list(wrap_step.pose_before), 'after': list(wrap_step.pose_after),
             'edge_columns': cols.tolist(), 'cycle_moves': cycle, 'back_to_start': back_to_start},
    'resets': {'count': len(positions), **stats},
    'size': size, 'move_pixels': move,
}
display(JSON(summary))
'''),
]


# ---------------------------------------------------------------------------------------------
# the JetBot
# ---------------------------------------------------------------------------------------------

JETBOT = [
    md('''
# Action test: the JetBot

Executes the JetBot's discrete actions exactly as the driver does (`jetbot_driver.motion`: ramp up
in 4 steps 15 ms apart, hold, ramp down; every value clamped to the safety limits) over the RPyC
protocol. With `JETBOT_IP = None` the simulated JetBot server runs in this kernel on loopback and
is reached over real RPyC; it also reports its pose and can be reset to a random pose.
With a robot address the same cells drive the real robot (no pose, no reset):
**make sure it has room to turn**.
'''),
    code(
        '''
JETBOT_IP = None       # None: the simulated JetBot on 127.0.0.1; else the robot's address
PORT = 18861           # its RPyC port (ignored for the simulator, which picks a free one)
SEED = 0               # seed of the simulated resets
SEQUENCE = [1, 1, 1, 0, 1, 1, 0, 0, 1, 1]
REAL_ROBOT_TURNS = 52  # wrap-around demo on a real robot (no pose): turns for about one full circle
''',
        parameters=True,
    ),
    code('''
%matplotlib inline
import math
import numpy as np
from IPython.display import JSON, display
from devbot_explorer.action_check import (JetBotActionCheck, frames_figure,
                                          jetbot_trajectory_figure, step_figure)
from devbot_explorer.table import Table

check = JetBotActionCheck(JETBOT_IP, PORT)
robot = 'the simulated JetBot' if check.simulated else 'the JetBot'
print(f'connected to {robot} at {check.address}')
action_rows = [[label, check.action_space.values(i)] for i, label in enumerate(check.labels())]
display(Table(['action', 'values'], action_rows,
              title=f'action space of {check.action_space.robot_type}'))


def motor_difference(action: int) -> float:
    values = check.action_space.values(action)
    return abs(values['motor_right'] - values['motor_left'])


turn = max(range(check.action_space.num_actions), key=motor_difference)
print('pose (x m, y m, heading rad):', check.pose(), '| turning action:', check.labels()[turn])
'''),
    md('## A single action'),
    code('''
turn_step = check.act(turn)
if turn_step.pose_before is not None:
    print(f'heading {math.degrees(turn_step.pose_before[2]):.1f} -> '
          f'{math.degrees(turn_step.pose_after[2]):.1f} deg')
print(f'{turn_step.seconds * 1000:.0f} ms, {turn_step.changed_pixels} pixels changed')
_ = step_figure(turn_step)
'''),
    code('''
stay = next(i for i in range(check.action_space.num_actions) if i != turn)
stay_step = check.act(stay)
print(f'{stay_step.label}: {stay_step.changed_pixels} pixels changed, '
      f'pose {stay_step.pose_before} -> {stay_step.pose_after}')
_ = step_figure(stay_step)
'''),
    md('## A sequence and its trajectory'),
    code('''
steps = check.run(SEQUENCE)
_ = frames_figure([steps[0].before] + [s.after for s in steps],
                  ['start'] + [f'a={s.action}' for s in steps],
                  columns=6, title='frames of the sequence')
if check.simulated:
    _ = jetbot_trajectory_figure(steps, check.server.hardware.world.config.room_size)
    display(Table(['step', 'action', 'heading before (deg)', 'heading after (deg)',
                   'turned (deg)'],
                  [[k, s.action, math.degrees(s.pose_before[2]), math.degrees(s.pose_after[2]),
                    math.degrees(math.remainder(s.pose_after[2] - s.pose_before[2], 2 * math.pi))]
                   for k, s in enumerate(steps)], title='trajectory'))
'''),
    md('''
## Wrap-around: a full turn

Turning until the heading has gone once round (the heading angle wraps from +180 to -180 deg on the
way) brings back the view of the start. On a real robot (no pose) it makes `REAL_ROBOT_TURNS` turns.
'''),
    code('''
start_frame, start_pose = check.frame(), check.pose()
turned, wrap_steps = 0.0, []
while len(wrap_steps) < (200 if start_pose is not None else REAL_ROBOT_TURNS):
    wrap_steps.append(check.act(turn))
    if start_pose is not None:
        s = wrap_steps[-1]
        turned += math.remainder(s.pose_after[2] - s.pose_before[2], 2 * math.pi)
        if abs(turned) >= 2 * math.pi:
            break
end_frame = check.frame()
view_change = float(np.abs(end_frame.astype(int) - start_frame.astype(int)).mean())
half_way = wrap_steps[len(wrap_steps) // 2].after
half_change = float(np.abs(half_way.astype(int) - start_frame.astype(int)).mean())
# a real robot reports no pose
turned_deg = math.degrees(turned) if start_pose is not None else None
print(f'{len(wrap_steps)} turns' + (f', {turned_deg:.1f} deg' if turned_deg is not None else '')
      + f'; mean |view - start view|: {view_change:.1f} at the end vs {half_change:.1f} half way')
_ = frames_figure([start_frame, half_way, end_frame],
                  ['start', 'half way', f'after {len(wrap_steps)} turns'],
                  columns=3, title='a full turn brings the start view back')
if check.simulated:
    _ = jetbot_trajectory_figure(wrap_steps, check.server.hardware.world.config.room_size)
'''),
    md('## Before/after difference'),
    code('''
display(Table(['action', 'changed pixels', 'mean |difference|'],
              [[s.label, s.changed_pixels, float(s.difference.mean())]
               for s in (turn_step, stay_step)],
              title='difference images'))
'''),
    md('## Reset randomisation (simulated JetBot only)'),
    code('''
resets = []
if check.simulated:
    for k in range(3):
        pose = check.reset(seed=SEED + k)
        resets.append({'pose': list(pose), 'frame': check.frame()})
    poses = [r['pose'] for r in resets]
    _ = frames_figure([r['frame'] for r in resets],
                      [f'({p[0]:.2f}, {p[1]:.2f}) m, {math.degrees(p[2]):.0f} deg' for p in poses],
                      columns=3, title='views after three random resets')
else:
    print('a real JetBot cannot be reset by software: skipped')
'''),
    code('''
summary = {
    'simulated': check.simulated,
    'turn': {'action': turn_step.action, 'before': turn_step.pose_before,
             'after': turn_step.pose_after, 'changed': turn_step.changed_pixels,
             'ms': turn_step.seconds * 1000},
    'stay': {'action': stay_step.action, 'before': stay_step.pose_before,
             'after': stay_step.pose_after, 'changed': stay_step.changed_pixels},
    'trajectory': [s.pose_after for s in steps],
    'actions': [s.action for s in steps],
    'wrap': {'turns': len(wrap_steps), 'turned_deg': turned_deg, 'end_change': view_change,
             'half_change': half_change},
    'resets': [r['pose'] for r in resets],
}
check.close()
display(JSON(summary))
'''),
]


# ---------------------------------------------------------------------------------------------
# the session explorer
# ---------------------------------------------------------------------------------------------


def open_explorer(tmp_prefix: str) -> str:
    """Code that both explorer notebooks start with: torch threads, the repo root, and a
    SessionExplorer over SESSIONS_ROOT / CHECKPOINTS_ROOT, or over demo sessions and a demo
    checkpoint written to a temporary folder (``tmp_prefix``) when they are None."""
    return (
        '''if TORCH_THREADS:
    torch.set_num_threads(TORCH_THREADS)
REPO = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()
work = Path(WORK_DIR) if WORK_DIR else Path(tempfile.mkdtemp(prefix='''
        + repr(tmp_prefix)
        + '''))
if SESSIONS_ROOT is None:
    from devbot_explorer.demo import write_demo_checkpoint, write_demo_sessions
    demo = write_demo_sessions(work / 'sessions', dot_steps=60, jetbot_steps=10)
    SESSIONS_ROOT = work / 'sessions'
    if CHECKPOINTS_ROOT is None:
        write_demo_checkpoint(work / 'checkpoints' / 'toroidal_dot', demo[0].path,
                              autoencoder_steps=40, predictor_steps=20)
        CHECKPOINTS_ROOT = work / 'checkpoints'
ex = SessionExplorer(REPO / SESSIONS_ROOT, REPO / (CHECKPOINTS_ROOT or 'saved/checkpoints'))
'''
    )


EXPLORER = [
    md('''
# Session explorer

Recorded sessions of every robot, and a world model looking at them. Everything here is
`devbot_explorer.explorer.SessionExplorer`; the script twin `scripts/session_explorer.py`
(`devbot explore`) writes the same tables and figures to files.

With the default parameters the notebook runs on **generated data**: two dot and two JetBot
sessions written by `devbot_explorer.demo` into a temporary folder, and a tiny world model
trained on one of them for a few steps (so its predictions are poor: it shows the views, not a
trained model). Point `SESSIONS_ROOT` / `CHECKPOINTS_ROOT` at `saved/sessions` and
`saved/checkpoints` to explore real ones. Nothing is ever written into a live checkpoint.

Scrubbing: change `FRAME` (or the arguments of the calls) and re-run a cell; `playback` has
play/pause and a slider.
'''),
    code(
        '''
SESSIONS_ROOT = None       # None: generate demo sessions; else 'saved/sessions' (repo-relative)
CHECKPOINTS_ROOT = None    # None: a tiny model trained on the demo data; else 'saved/checkpoints'
SESSION = None             # index, '<robot>/<session>' or a path; None: the first toroidal_dot one
FRAME = 20                 # the frame to look at
TRAIN_FRAMES = (0, 40)     # train on frames start..stop-1
AE_STEPS = 20              # autoencoder steps (paused half way, then resumed)
PRED_STEPS = 10            # predictor steps
THRESHOLD = 5e-4           # ... or stop earlier at this evaluation loss
SAVE_TO = None             # where to save the trained model; None: a temporary folder
TORCH_THREADS = 1          # 0: torch's default (for a full-size model); 1 is fastest for tiny ones
WORK_DIR = None            # where generated data and the saved model go; None: a new temp folder
FRESH_PRESET = 'tiny'      # model size without a checkpoint: 'tiny' or 'full' (untrained)
''',
        parameters=True,
    ),
    code(
        '''
%matplotlib inline
import tempfile
import warnings
from pathlib import Path
import numpy as np
import torch
from IPython.display import JSON, display
# tqdm without ipywidgets: no progress bars needed
warnings.filterwarnings('ignore', message='IProgress not found')
from world_model_node.config import WorldModelConfig
from devbot_explorer.explorer import ExplorerError, SessionExplorer
from devbot_explorer.workbench import LiveCheckpointError

'''
        + open_explorer('session_explorer_')
        + '''ex.session_table()
'''
    ),
    md('''
## A session: robot type and action space from the bag
'''),
    code('''
if SESSION is None:
    SESSION = next(i.path for i in ex.sessions() if i.robot_type == 'toroidal_dot' and not i.error)
display(ex.open(SESSION))
print('robot type:', ex.robot_type, '| actions:', ex.action_labels())
# the model views need a frame with a recorded action after it
if ex.action_after(FRAME) is None:
    FRAME = ex.nearest_transition(FRAME)
    print('looking at frame', FRAME)
'''),
    code('''
# every robot's sessions open the same way: the type and the actions come from each bag
for info in ex.sessions():
    if not info.error and info.robot_type != ex.robot_type:
        other = SessionExplorer(ex.sessions_root)
        other.open(info)
        print(f'{info.robot}/{info.name}: robot type {other.robot_type}, '
              f'actions {other.action_labels()}')
        _ = other.strip_figure(5, before=5, after=0)
        other.close()
        break
'''),
    md('''
## Frames: playback, scrubbing, the history strip
'''),
    code('''
ex.playback(0, 40, fps=4)
'''),
    code('''
_ = ex.frame_figure(FRAME)
_ = ex.strip_figure(FRAME, before=6, after=2)
'''),
    md('''
## Action distribution: this session vs all sessions of the robot
'''),
    code('''
distribution = ex.action_distribution()
display(distribution)
_ = ex.action_distribution_figure()
'''),
    md('''
## The world model: autoencoder inference
'''),
    code('''
try:
    ex.load_model()       # CHECKPOINTS_ROOT/<robot type>, read-only
except ExplorerError as exc:
    print(exc, f'-> an untrained {FRESH_PRESET} model instead', sep='\\n')
    fresh = WorldModelConfig.tiny() if FRESH_PRESET == 'tiny' else WorldModelConfig()
    ex.load_model(fresh=True, config=fresh)
display(ex.model_table())
_ = ex.reconstruction_figure(range(FRAME - 3, FRAME + 3))
'''),
    md('''
## Predictor inference: the whole action space swept from the recorded context
'''),
    code('''
d = ex.analyse(FRAME)
display(ex.sweep_table(d))
_ = ex.sweep_figure(d)
'''),
    md('''
## Attention: heatmap, breakdown, metrics
'''),
    code('''
display(ex.attention_table(d))
_ = ex.attention_figure(d)
'''),
    md('''
## Counterfactuals: the context actions shuffled and zeroed
'''),
    code('''
ex.counterfactual_table(d)
'''),
    md('''
## Training on chosen frames, with pause and resume

`steps` and `threshold`: whichever comes first. The callback pauses the autoencoder run half
way (a notebook can also call `run.pause()` from another cell or thread); `resume()` goes on.
'''),
    code('''
frames = range(*TRAIN_FRAMES)
pause_at = AE_STEPS // 2
ae_run = ex.train_autoencoder(frames, steps=AE_STEPS, threshold=THRESHOLD,
                              callback=lambda r: r.pause() if r.steps_done == pause_at else None)
print('paused:', ae_run)
ae_paused_at = ae_run.steps_done
ae_run.resume()
print('resumed:', ae_run)
pred_run = ex.train_predictor(frames, steps=PRED_STEPS, threshold=THRESHOLD)
print(pred_run)
_ = ex.training_figure(ae_run, pred_run)
'''),
    code('''
display(ex.weight_change_table(top=12))
_ = ex.weight_change_figure()
'''),
    md('''
## Weights of both networks
'''),
    code('''
_ = ex.weights_figure('autoencoder')
_ = ex.weights_figure('predictor')
'''),
    code('''
d_after = ex.analyse(FRAME)
ex.sweep_table(d_after)
'''),
    md('''
## Saving in the checkpoint format (never over the live checkpoint unless asked)
'''),
    code('''
target = Path(SAVE_TO) if SAVE_TO else work / 'explorer_checkpoint'
generation = ex.save_model(target)
print(f'saved generation {generation} to {target}')
# again into a folder holding a checkpoint (the one loaded, else the one just written): refused
try:
    ex.save_model(ex.model.source or target)
    live_refused = False
except LiveCheckpointError as exc:
    live_refused = True
    print('refused:', exc)
'''),
    code('''
summary = {
    'session': str(ex.info.path), 'robot_type': ex.robot_type, 'actions': ex.action_labels(),
    'num_frames': ex.num_frames, 'frame': FRAME, 'distribution': distribution.records(),
    'sweep': {'errors': d.errors.tolist(), 'uncertainty': d.uncertainty.tolist(),
              'recorded': d.executed, 'recorded_in_session': ex.action_after(FRAME)},
    'attention': d.attention_metrics, 'breakdown': d.attention_breakdown,
    'counterfactual': d.counterfactual,
    'training': {'ae_steps': ae_run.steps_done, 'ae_paused_at': ae_paused_at,
                 'ae_reason': ae_run.reason, 'pred_steps': pred_run.steps_done,
                 'pred_reason': pred_run.reason},
    'weight_change': ex.model.weight_change(),
    'saved': {'generation': generation, 'files': sorted(p.name for p in target.iterdir()),
              'live_refused': live_refused},
}
display(JSON(summary))
'''),
]


# ---------------------------------------------------------------------------------------------
# the session explorer as an app (widgets only: Voila shows it as a page)
# ---------------------------------------------------------------------------------------------

EXPLORER_APP = [
    md('''
# Session explorer app

Pick a session, scrub or play its frames, see the reconstruction and the prediction for every
action, train the autoencoder or the predictor (pause/resume), watch the loss and the weights, save.
As a page: `.venv/bin/voila notebooks/session_explorer_app.ipynb`. With the default parameters it
runs on generated demo sessions and a tiny demo model (see `session_explorer.ipynb`).
'''),
    code(
        '''
SESSIONS_ROOT = None     # None: generate demo sessions; else e.g. 'saved/sessions' (repo-relative)
CHECKPOINTS_ROOT = None  # None: a tiny model trained on the demo data; else 'saved/checkpoints'
SESSION = None           # index, '<robot>/<session>' or a path; None: the first toroidal_dot one
TRAIN_STEPS = 100        # default steps of a training run (editable in the app)
TORCH_THREADS = 1        # 0: torch's default (for a full-size model); 1 is fastest for tiny ones
WORK_DIR = None          # where generated data goes; None: a new temporary folder
FRESH_PRESET = 'tiny'    # untrained model offered to a robot without checkpoint: 'tiny' or 'full'
''',
        parameters=True,
    ),
    code(
        '''
import tempfile
from pathlib import Path
import torch
from world_model_node.config import WorldModelConfig
from devbot_explorer.explorer import SessionExplorer
from devbot_explorer.explorer_widgets import ExplorerApp

'''
        + open_explorer('session_explorer_app_')
        + '''if SESSION is None:
    dots = [i.path for i in ex.sessions() if i.robot_type == 'toroidal_dot' and not i.error]
    SESSION = dots[0] if dots else None
fresh = WorldModelConfig.tiny() if FRESH_PRESET == 'tiny' else WorldModelConfig()
app = ExplorerApp(ex, session=SESSION, train_steps=TRAIN_STEPS, fresh_config=fresh)
app.widget
'''
    ),
]


# ---------------------------------------------------------------------------------------------

NOTEBOOKS = {
    'session_explorer.ipynb': EXPLORER,
    'session_explorer_app.ipynb': EXPLORER_APP,
    'dot_action_test.ipynb': DOT,
    'jetbot_action_test.ipynb': JETBOT,
}


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata['kernelspec'] = {
        'name': 'python3',
        'display_name': 'Python 3 (ipykernel)',
        'language': 'python',
    }
    nb.metadata['language_info'] = {'name': 'python'}
    for i, cell in enumerate(nb.cells):  # stable ids: the files do not change when regenerated
        cell['id'] = f'cell-{i:02d}'
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--check', action='store_true', help='only compare; exit 1 when a notebook is out of date'
    )
    parser.add_argument('--out', type=Path, default=OUT, help='output folder [notebooks/]')
    args = parser.parse_args(argv)
    stale = []
    for name, cells in NOTEBOOKS.items():
        nb = build(cells)
        nbformat.validate(nb)
        text = nbformat.writes(nb) + '\n'
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f'wrote {path}')
    if stale:
        print(f'out of date (run tools/make_notebooks.py): {", ".join(stale)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
