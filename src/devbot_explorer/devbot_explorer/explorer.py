"""The session explorer: recorded sessions of every robot, and a world model looking at them.

ROS-free. One object, used the same way by the notebook (``notebooks/session_explorer.ipynb``)
and its script twin (``scripts/session_explorer.py``, also ``devbot explore``)::

    from devbot_explorer.explorer import SessionExplorer

    ex = SessionExplorer('saved/sessions', 'saved/checkpoints')
    ex.session_table()                      # every session of every robot (a Table)
    ex.open('toroidal_dot/20261125-185501-123456')   # or an index into that table, or a path
    ex.robot_type, ex.action_space          # from the bag's metadata
    ex.frame(40); ex.frames(30, 50)         # decoded lazily, cached
    ex.frame_figure(40); ex.strip_figure(40, before=6, after=2); ex.playback(0, 60)
    ex.action_distribution()                # this session vs all sessions of the robot type

    ex.load_model()                         # saved/checkpoints/<robot type>, read-only
                                            # (or fresh=True)
    ex.reconstruction_figure(range(30, 38))
    d = ex.analyse(40)                      # action-space sweep + attention + counterfactuals
    ex.sweep_figure(d); ex.sweep_table(d); ex.attention_figure(d); ex.counterfactual_table(d)
    run = ex.train_autoencoder(range(0, 60), threshold=5e-4, steps=500, run=False)
    run.run(100); run.pause(); run.resume()  # see workbench.Training
    ex.training_figure(run); ex.weight_change_figure(); ex.weights_figure('predictor')
    ex.save_model('saved/checkpoints/toroidal_dot_explorer')   # not over the live one unless asked

The model side is :class:`devbot_explorer.workbench.ModelWorkbench` (inference, analysis,
training, weights, saving); this module picks the frames and actions out of the session and
draws. Frames are indexed as the session numbers them (camera frames de-duplicated by stamp);
a *transition* is a frame, the action executed after it and the frame showing its outcome
(:meth:`devbot.bag.Session.transition_list`). Model views of frame ``i`` need the transition
that starts at frame ``i``; its context is the chain of transitions leading to it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devbot import topics
from devbot.action_space import ActionSpace
from devbot.bag.session import BagError, Session, SessionInfo, Transition, list_sessions
from devbot.bag.storage import DEFAULT_ROOT

from .table import Table

DEFAULT_CHECKPOINTS = Path('saved/checkpoints')
CACHE_BYTES = 256 * 1024 * 1024  # decoded frames kept in memory


class ExplorerError(RuntimeError):
    """Something the explorer cannot do with the current session or model (the message says why)."""


class Html:
    """HTML shown by a notebook (``_repr_html_``); ``str()`` gives the markup."""

    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __str__(self) -> str:
        return self.markup


@dataclass(frozen=True)
class Window:
    """Frames and actions handed to the model: ``actions[k]`` was executed after ``frames[k]``
    and led to ``frames[k + 1]`` (-1: unknown, the frames are not joined by an action).

    Attributes:
        frame_indices: the session's index of each frame [N].
        frames: uint8 [N, H, W, 3].
        actions: int64 [N] (the last is always -1).
        index: position of the current frame (for analyses), or None.
    """

    frame_indices: tuple[int, ...]
    frames: np.ndarray
    actions: np.ndarray
    index: int | None = None


class SessionExplorer:
    """Browse recorded sessions and look at them through a world model.

    Args:
        sessions_root: where sessions live (``<root>/<robot>/<session>``).
        checkpoints_root: where robots' checkpoints live (``<root>/<robot type>``).
        cache_bytes: decoded frames kept in memory.
    """

    def __init__(
        self,
        sessions_root: str | Path = DEFAULT_ROOT,
        checkpoints_root: str | Path = DEFAULT_CHECKPOINTS,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.sessions_root = Path(sessions_root)
        self.checkpoints_root = Path(checkpoints_root)
        self.cache_bytes = int(cache_bytes)
        self.session: Session | None = None
        self.model = None  # a ModelWorkbench after load_model
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_used = 0
        self._transitions: list[Transition] = []
        self._by_frame: dict[int, Transition] = {}
        self._counts_cache: dict[Path, np.ndarray | str] = {}

    # =========================================================================================
    # sessions
    # =========================================================================================

    def sessions(self, robot: str | None = None) -> list[SessionInfo]:
        """Every session under the root (of one robot directory).

        Unreadable ones have ``error`` set.
        """
        return list_sessions(self.sessions_root, robot)

    def session_table(self, robot: str | None = None) -> Table:
        """One row per session.

        Columns: index (for :meth:`open`), robot, name, type, actions, frames, time, state.
        """
        rows = []
        for k, info in enumerate(self.sessions(robot)):
            if info.error:
                rows.append(
                    [
                        k,
                        info.robot,
                        info.name,
                        None,
                        None,
                        None,
                        None,
                        None,
                        f'unreadable: {info.error}',
                    ]
                )
                continue
            camera = info.topic(topics.CAMERA_IMAGE)
            executed = info.topic(topics.MOTOR_EXECUTED)
            space = info.action_space
            rows.append(
                [
                    k,
                    info.robot,
                    info.name,
                    info.robot_type or 'unknown',
                    space.num_actions if space else None,
                    info.topics[camera].count if camera else 0,
                    info.topics[executed].count if executed else 0,
                    round(info.duration_ns / 1e9, 3),
                    'ok' if info.complete else 'unfinished (devbot bag reindex)',
                ]
            )
        return Table(
            [
                '#',
                'robot',
                'session',
                'robot type',
                'actions',
                'frame msgs',
                'executed',
                'duration s',
                'state',
            ],
            rows,
            title=f'sessions under {self.sessions_root}',
        )

    def open(self, which: int | str | Path | SessionInfo) -> Table:
        """Open a session: an index into :meth:`session_table`, ``<robot>/<session>``, a session
        name (unique over all robots), a path, or a SessionInfo. Closes the previous one.

        Returns:
            the session's :meth:`summary` (its metadata is ``info``).

        Raises:
            ExplorerError: no such session, or several sessions of that name.
            BagError: the bag cannot be read (unfinished, corrupt, foreign).
        """
        path = self._resolve(which)
        session = Session(path)
        self.close()
        self.session = session
        self._transitions = session.transition_list()
        self._by_frame = {t.frame_index: t for t in self._transitions}
        return self.summary()

    def _resolve(self, which: int | str | Path | SessionInfo) -> Path:
        if isinstance(which, SessionInfo):
            return which.path
        if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
            infos = self.sessions()
            if not 0 <= which < len(infos):
                raise ExplorerError(
                    f'no session #{which}: there are {len(infos)} under {self.sessions_root}'
                )
            return infos[which].path
        text = str(which)
        for candidate in (Path(text), self.sessions_root / text):
            if candidate.is_dir():
                return candidate
        matches = [i.path for i in self.sessions() if i.name == text]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ExplorerError(
                f'several sessions are named {text!r}: {[str(m) for m in matches]}; '
                f'give <robot>/<session>'
            )
        raise ExplorerError(
            f'no session {text!r} (a path, <robot>/<session> under {self.sessions_root}, '
            f'a session name or an index of session_table())'
        )

    def close(self) -> None:
        """Close the open session (the model stays loaded)."""
        if self.session is not None:
            self.session.close()
        self.session = None
        self._cache.clear()
        self._cache_used = 0
        self._transitions = []
        self._by_frame = {}

    def _require(self) -> Session:
        if self.session is None:
            raise ExplorerError(
                'no session is open: call open() first (session_table() lists them)'
            )
        return self.session

    @property
    def info(self) -> SessionInfo:
        return self._require().info

    @property
    def robot_type(self) -> str:
        """The robot type from the bag's metadata ('unknown' when the bag does not say)."""
        return self._require().robot_type or 'unknown'

    @property
    def action_space(self) -> ActionSpace:
        """The action space from the bag's metadata.

        Raises:
            BagError: the bag has none.
        """
        return self._require().action_space

    @property
    def num_frames(self) -> int:
        return self._require().num_frames

    @property
    def transitions(self) -> list[Transition]:
        """The session's transitions (no pixels)."""
        self._require()
        return self._transitions

    def action_labels(self) -> list[str]:
        """A short label per action of the space: ``"1: action=1"``."""
        space = self.action_space
        return [space.label(i, varying_only=True, indexed=True) for i in range(space.num_actions)]

    def summary(self) -> Table:
        """The open session's metadata as a two-column table."""
        info = self.info
        s = self._require()
        space = info.action_space
        rows = [
            ['session', str(info.path)],
            ['robot', info.robot],
            ['robot type', self.robot_type],
            ['software', info.software_version or '-'],
            ['duration s', round(info.duration_ns / 1e9, 3)],
            ['frames', self.num_frames],
            ['transitions', len(self._transitions)],
            ['action channels', ', '.join(space.channel_names) if space else '-'],
            ['actions', '; '.join(self.action_labels()) if space else '-'],
            ['topics', ', '.join(f'{t.name} ({t.count})' for t in info.topics.values())],
        ]
        if s.camera_topic is None:
            rows.append(['note', 'no camera topic: frames cannot be shown'])
        return Table(['field', 'value'], rows, title=f'{info.robot}/{info.name}')

    # =========================================================================================
    # frames
    # =========================================================================================

    def _check_index(self, index: int) -> int:
        n = self.num_frames
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not -n <= index < n
        ):
            raise IndexError(f'frame {index!r} out of range: the session has {n} frames')
        return int(index) % n

    def _remember(self, index: int, image: np.ndarray) -> None:
        if index in self._cache:
            self._cache.move_to_end(index)
            return
        self._cache[index] = image
        self._cache_used += image.nbytes
        while self._cache_used > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_used -= old.nbytes

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (negative counts from the end) as uint8 [H, W, 3] RGB."""
        index = self._check_index(index)
        if index not in self._cache:
            self._remember(index, self._require().frame(index).image)
        self._cache.move_to_end(index)
        return self._cache[index]

    def frames(
        self, start: int = 0, stop: int | None = None, indices: Iterable[int] | None = None
    ) -> np.ndarray:
        """Frames ``start .. stop-1`` (or the given ``indices``), uint8 [N, H, W, 3]; decoded in one
        pass over the bag where they are not cached yet."""
        if indices is None:
            n = self.num_frames
            stop = n if stop is None else min(int(stop), n)
            indices = range(max(0, int(start)), stop)
        wanted = [self._check_index(i) for i in indices]
        if not wanted:
            raise ExplorerError('no frames selected')
        missing = sorted(set(i for i in wanted if i not in self._cache))
        if missing and missing[-1] - missing[0] + 1 <= 4 * len(missing):
            # dense: one pass over the span of the missing frames
            want = set(missing)
            for f in self._require().frames(missing[0], missing[-1] + 1):
                if f.index in want:
                    self._remember(f.index, f.image)
        elif missing:
            # sparse: each one on its own (a seek per frame instead of decoding the whole span)
            for i in missing:
                self._remember(i, self._require().frame(i).image)
        out = []
        for i in wanted:
            if i not in self._cache:  # evicted by a small cache during this very call
                self._remember(i, self._require().frame(i).image)
            out.append(self._cache[i])
        return np.stack(out)

    def action_after(self, index: int) -> int | None:
        """The action executed after frame ``index`` (None when no transition starts there)."""
        t = self._by_frame.get(self._check_index(index))
        return None if t is None else t.action

    def actions_per_frame(self) -> np.ndarray:
        """int64 [num_frames]: the action executed after each frame, -1 where none was recorded."""
        out = np.full(self.num_frames, -1, np.int64)
        for t in self._transitions:
            out[t.frame_index] = t.action
        return out

    def frame_caption(self, index: int) -> str:
        """``frame 12  +1.200 s  -> 1: action=1``."""
        index = self._check_index(index)
        stamp = int(self._require().frame_stamps[index])
        a = self.action_after(index)
        after = (
            f'-> {self.action_space.label(a, varying_only=True, indexed=True)}'
            if a is not None
            else '-> (no action)'
        )
        return f'frame {index}  +{(stamp - self.info.start_ns) / 1e9:.3f} s  {after}'

    def frame_figure(self, index: int):
        """One frame, captioned with its time and the action executed after it."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 4.3))
        ax.imshow(self.frame(index))
        ax.set_title(self.frame_caption(index), fontsize=9)
        ax.axis('off')
        fig.tight_layout()
        return fig

    def _strip_indices(self, index: int, before: int, after: int) -> list[int]:
        index = self._check_index(index)
        return list(range(max(0, index - before), min(self.num_frames, index + after + 1)))

    def history_strip(
        self, index: int, before: int = 6, after: int = 0, tile: int = 112
    ) -> np.ndarray:
        """The frames around ``index`` side by side, each captioned with its index and the action
        executed after it (the current frame marked ``*``): uint8 [tile + caption, n * tile, 3]."""
        from devbot.viewer import contact_sheet

        idx = self._strip_indices(index, before, after)
        current = self._check_index(index)
        entries = []
        for i, img in zip(idx, self.frames(indices=idx)):
            a = self.action_after(i)
            entries.append(
                (
                    f'{"*" if i == current else ""}frame {i}',
                    img,
                    f'then a={a}' if a is not None else 'then -',
                )
            )
        return contact_sheet(entries, tile=tile, columns=len(entries))

    def strip_figure(self, index: int, before: int = 6, after: int = 2):
        """The history strip as a figure.

        Frames around ``index`` with arrows labelled by the actions.
        """
        import matplotlib.pyplot as plt

        idx = self._strip_indices(index, before, after)
        current = self._check_index(index)
        imgs = self.frames(indices=idx)
        fig, axes = plt.subplots(1, len(idx), figsize=(1.7 * len(idx), 2.2), squeeze=False)
        for ax, i, img in zip(axes[0], idx, imgs):
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            a = self.action_after(i)
            ax.set_title(f'{i}', fontsize=8, fontweight='bold' if i == current else 'normal')
            ax.set_xlabel(f'a={a} ->' if a is not None else '-', fontsize=8)
            if i == current:
                for spine in ax.spines.values():
                    spine.set_edgecolor('tab:orange')
                    spine.set_linewidth(3)
        fig.suptitle(
            f'frames {idx[0]}..{idx[-1]} (current {current}); '
            'below each: the action executed after it',
            fontsize=9,
        )
        fig.tight_layout()
        return fig

    def playback(
        self,
        start: int = 0,
        stop: int | None = None,
        fps: float = 5.0,
        every: int = 1,
        max_frames: int = 200,
    ) -> Html:
        """Frames ``start .. stop-1`` as an HTML animation with play/pause and a scrub slider
        (matplotlib's JavaScript player: no widgets needed), captioned with the actions.

        Raises:
            ExplorerError: more than ``max_frames`` frames (the page would get heavy).
        """
        anim, fig = self._animation(start, stop, fps, every, max_frames)
        import matplotlib.pyplot as plt

        try:
            return Html(anim.to_jshtml(fps=fps, default_mode='once'))
        finally:
            plt.close(fig)

    def save_playback(
        self,
        path: str | Path,
        start: int = 0,
        stop: int | None = None,
        fps: float = 5.0,
        every: int = 1,
        max_frames: int = 500,
    ) -> Path:
        """The same animation as an animated GIF file (for the script twin)."""
        import matplotlib.pyplot as plt
        from matplotlib.animation import PillowWriter

        anim, fig = self._animation(start, stop, fps, every, max_frames)
        path = Path(path)
        try:
            anim.save(path, writer=PillowWriter(fps=fps))
        finally:
            plt.close(fig)
        return path

    def _animation(self, start: int, stop: int | None, fps: float, every: int, max_frames: int):
        import matplotlib.pyplot as plt
        from matplotlib.animation import FuncAnimation

        if not fps > 0 or every < 1:
            raise ExplorerError(f'need fps > 0 and every >= 1, got {fps}, {every}')
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        idx = list(range(max(0, start), stop, every))
        if not idx:
            raise ExplorerError(f'no frames in {start}..{stop}')
        if len(idx) > max_frames:
            raise ExplorerError(
                f'{len(idx)} frames is too many for one animation (max {max_frames}): '
                f'narrow the range or raise every='
            )
        imgs = self.frames(indices=idx)
        fig, ax = plt.subplots(figsize=(3.6, 3.9))
        im = ax.imshow(imgs[0])
        title = ax.set_title(self.frame_caption(idx[0]), fontsize=8)
        ax.axis('off')
        fig.tight_layout()

        def draw(k: int):
            im.set_data(imgs[k])
            title.set_text(self.frame_caption(idx[k]))
            return im, title

        return FuncAnimation(fig, draw, frames=len(idx), interval=1000 / fps, blit=False), fig

    # =========================================================================================
    # action statistics
    # =========================================================================================

    def _session_counts(self, info: SessionInfo, space: ActionSpace) -> np.ndarray | str:
        """Action counts of a session over ``space``, or why it cannot be counted."""
        key = info.path.resolve()
        if key not in self._counts_cache:
            try:
                with Session(info.path, action_space=space) as s:
                    self._counts_cache[key] = s.action_counts()
            except BagError as exc:
                self._counts_cache[key] = f'unreadable: {exc}'
        return self._counts_cache[key]

    def action_distribution(self) -> Table:
        """Executed actions of this session vs all sessions of the same robot type and action space.

        Columns: action, its label, count and share in this session, count and share over all
        those sessions. Sessions of the type with another action space (or unreadable) are left
        out and named in the notes.
        """
        s = self._require()
        space = self.action_space
        mine = s.action_counts()
        total = np.zeros(space.num_actions, np.int64)
        used, notes = 0, []
        for info in self.sessions():
            if info.error or info.robot_type != s.robot_type:
                continue
            if info.action_space is None or info.action_space.to_dict() != space.to_dict():
                notes.append(f'left out {info.robot}/{info.name}: another action space')
                continue
            counts = self._session_counts(info, space)
            if isinstance(counts, str):
                notes.append(f'left out {info.robot}/{info.name}: {counts}')
                continue
            total += counts
            used += 1
        if not any(i.path.resolve() == s.path.resolve() for i in self.sessions() if not i.error):
            notes.append(f'this session is not under {self.sessions_root}: not part of "all"')
        labels = self.action_labels()
        n_mine, n_all = max(1, int(mine.sum())), max(1, int(total.sum()))
        rows = [
            [
                i,
                labels[i],
                int(mine[i]),
                round(100.0 * mine[i] / n_mine, 2),
                int(total[i]),
                round(100.0 * total[i] / n_all, 2),
            ]
            for i in range(space.num_actions)
        ]
        rows.append(
            [
                'all',
                '',
                int(mine.sum()),
                100.0 if mine.sum() else 0.0,
                int(total.sum()),
                100.0 if total.sum() else 0.0,
            ]
        )
        return Table(
            ['action', 'label', 'this session', 'this %', f'all {used} sessions', 'all %'],
            rows,
            title=f'executed actions: {self.info.name} vs every {self.robot_type} session',
            notes=notes,
        )

    def action_distribution_figure(self):
        """The action distribution as grouped bars (share of this session vs all sessions)."""
        import matplotlib.pyplot as plt

        table = self.action_distribution()
        rows = [r for r in table.rows if r[0] != 'all']
        x = np.arange(len(rows))
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 2), 3))
        ax.bar(x - 0.2, [r[3] for r in rows], 0.4, label='this session')
        ax.bar(x + 0.2, [r[5] for r in rows], 0.4, label=table.columns[4])
        ax.set_xticks(x, [r[1] for r in rows], fontsize=8)
        ax.set_ylabel('% of actions')
        ax.legend(fontsize=8)
        ax.set_title(table.title, fontsize=9)
        fig.tight_layout()
        return fig

    # =========================================================================================
    # frames and actions for the model
    # =========================================================================================

    def _chain(self, transition: Transition, history: int) -> list[Transition]:
        """The transition and up to ``history`` earlier ones that lead into it without a gap."""
        k = transition.index
        chain = [transition]
        while len(chain) <= history and k > 0:
            prev = self._transitions[k - 1]
            if prev.next_frame_index != chain[0].frame_index:
                break
            chain.insert(0, prev)
            k -= 1
        return chain

    def transition_at(self, index: int) -> Transition:
        """The transition that starts at frame ``index``.

        Raises:
            ExplorerError: no action was recorded after that frame.
        """
        index = self._check_index(index)
        t = self._by_frame.get(index)
        if t is None:
            starts = [t.frame_index for t in self._transitions]
            near = sorted(starts, key=lambda s: abs(s - index))[:5]
            raise ExplorerError(
                f'frame {index} has no recorded action after it'
                + (
                    f'; transitions start at frames such as {sorted(near)}'
                    if near
                    else ': the session has no transitions'
                )
            )
        return t

    def nearest_transition(self, index: int) -> int:
        """The frame nearest to ``index`` that has a recorded action after it.

        On a tie the earlier one.

        Raises:
            ExplorerError: the session has no transitions.
        """
        index = self._check_index(index)
        if not self._transitions:
            raise ExplorerError(
                'the session has no transitions (no executed action between two frames)'
            )
        return min((t.frame_index for t in self._transitions), key=lambda f: (abs(f - index), f))

    def window(self, index: int, history: int | None = None) -> Window:
        """The context of the transition at frame ``index`` plus its outcome frame.

        The context is up to ``history`` earlier transitions joined to it (default the model's
        PREDICTION_HISTORY_SIZE, else 3).
        """
        if history is None:
            history = self.model.config.prediction_history_size if self.model is not None else 3
        chain = self._chain(self.transition_at(index), history)
        idx = [t.frame_index for t in chain] + [chain[-1].next_frame_index]
        actions = np.array([t.action for t in chain] + [-1], np.int64)
        return Window(tuple(idx), self.frames(indices=idx), actions, len(chain) - 1)

    def selection(self, frames: Iterable[int] | slice | None = None) -> Window:
        """Chosen frames for training, with the actions that join them.

        ``frames``: indices, a range or a slice; default all. A transition counts when both its
        frames are chosen.
        """
        if frames is None:
            chosen = list(range(self.num_frames))
        elif isinstance(frames, slice):
            chosen = list(range(self.num_frames))[frames]
        else:
            chosen = [self._check_index(i) for i in frames]
        chosen = sorted(set(chosen))
        if not chosen:
            raise ExplorerError('no frames chosen')
        chosen_set = set(chosen)
        idx: list[int] = []
        actions: list[int] = []
        for t in self._transitions:
            if t.frame_index not in chosen_set or t.next_frame_index not in chosen_set:
                continue
            if not idx or idx[-1] != t.frame_index:
                if idx:
                    actions.append(-1)
                idx.append(t.frame_index)
            actions.append(t.action)
            idx.append(t.next_frame_index)
        covered = set(idx)
        for i in chosen:  # frames in no chosen transition still train the autoencoder
            if i not in covered:
                if idx:
                    actions.append(-1)
                idx.append(i)
        actions.append(-1)
        return Window(tuple(idx), self.frames(indices=idx), np.array(actions, np.int64))

    # =========================================================================================
    # the model
    # =========================================================================================

    def default_checkpoint_dir(self) -> Path:
        """``<checkpoints root>/<robot type>``: where the live world model of this robot saves."""
        return self.checkpoints_root / self.robot_type

    def load_model(
        self,
        checkpoint_dir: str | Path | None = None,
        fresh: bool = False,
        config=None,
        device: str = 'cpu',
    ):
        """Load the world model to look through, read-only (nothing is ever written there).

        Args:
            checkpoint_dir: a checkpoint directory (default: this robot's live one,
                :meth:`default_checkpoint_dir`).
            fresh: an untrained model instead (``config``, default the full-size
                ``WorldModelConfig()``), for the session's action space.
            config: the ``WorldModelConfig`` of a fresh model.
            device: torch device.
        Returns:
            the :class:`~devbot_explorer.workbench.ModelWorkbench` (also ``self.model``).
        Raises:
            ExplorerError: no checkpoint there, or one made for another action space.
        """
        from world_model_node.checkpoint import CheckpointError
        from world_model_node.config import WorldModelConfig

        from .workbench import ModelWorkbench

        space = self.action_space
        if fresh:
            self.model = ModelWorkbench.fresh(
                config or WorldModelConfig(), space.normalized(), device=device
            )
            return self.model
        directory = (
            Path(checkpoint_dir) if checkpoint_dir is not None else self.default_checkpoint_dir()
        )
        try:
            model = ModelWorkbench.from_checkpoint(directory, device=device)
        except CheckpointError as exc:
            raise ExplorerError(f'{exc} (load_model(fresh=True) gives an untrained model)') from exc
        theirs, mine = model.action_space, space.normalized()
        if theirs.shape != mine.shape or not np.allclose(theirs, mine, atol=1e-6):
            raise ExplorerError(
                f'{directory}: the checkpoint was made for another action space '
                f'({theirs.tolist()}) than this session\'s ({mine.tolist()})'
            )
        self.model = model
        return model

    def _model(self):
        if self.model is None:
            raise ExplorerError('no model: call load_model() (or load_model(fresh=True)) first')
        return self.model

    def model_table(self) -> Table:
        """What the loaded model is: sizes, steps, where it came from."""
        wb = self._model()
        cfg, lr = wb.config, wb.learner
        rows = [
            ['source', str(wb.source) if wb.source else 'fresh (untrained)'],
            ['image size', f'{cfg.img_size} px, patch {cfg.patch_size}'],
            ['encoder', f'width {cfg.embed_dim}, depth {cfg.depth}, heads {cfg.num_heads}'],
            [
                'predictor',
                f'depth {cfg.predictor_depth}, heads {cfg.predictor_heads}, '
                f'{cfg.ensemble_heads} ensemble heads',
            ],
            ['context frames', cfg.context_frames],
            ['learner steps', lr.step],
            ['autoencoder steps', lr.autoencoder_steps],
            ['predictor steps (level 0)', lr.levels[0].training_steps],
            ['levels', lr.num_levels],
            ['reconstruction threshold', cfg.reconstruction_threshold],
            ['prediction threshold', cfg.prediction_threshold],
        ]
        return Table(['field', 'value'], rows, title='world model')

    # ------------------------------------------------------------------ autoencoder

    def reconstruct(self, frames: Iterable[int]) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Autoencoder inference on frames (indices): (indices, reconstructions uint8 [N, S, S, 3],
        unmasked MSE per frame [N])."""
        idx = [self._check_index(i) for i in frames]
        recon, losses = self._model().reconstruct(self.frames(indices=idx))
        return idx, recon, losses

    def reconstruction_figure(self, frames: Iterable[int]):
        """Each frame above its reconstruction, with the MSE and whether the gate would be open."""
        import matplotlib.pyplot as plt

        idx, recon, losses = self.reconstruct(frames)
        imgs = self.frames(indices=idx)
        threshold = self._model().config.reconstruction_threshold
        fig, axes = plt.subplots(2, len(idx), figsize=(1.8 * len(idx) + 0.5, 4), squeeze=False)
        for k, i in enumerate(idx):
            axes[0, k].imshow(imgs[k])
            axes[0, k].set_title(f'frame {i}', fontsize=8)
            axes[1, k].imshow(recon[k])
            gate = 'open' if losses[k] <= threshold else 'closed'
            axes[1, k].set_title(f'MSE {losses[k]:.2e}\ngate {gate}', fontsize=7)
            axes[0, k].axis('off')
            axes[1, k].axis('off')
        fig.suptitle(f'autoencoder reconstructions (gate threshold {threshold:g})', fontsize=9)
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------------ predictor and diagnostics

    def analyse(
        self,
        index: int,
        with_attention: bool = True,
        with_counterfactuals: bool = True,
        num_shuffles: int = 4,
    ):
        """Sweep every action of the space from the context of the transition at frame ``index``,
        with the last layer's attention and the counterfactual losses.

        Returns:
            :class:`~world_model_node.diagnostics.TransitionDiagnostics`, with ``.window`` (the
            frames and actions used) attached.
        """
        w = self.window(index)
        d = self._model().analyse(
            w.frames,
            w.actions,
            w.index,
            with_attention=with_attention,
            with_counterfactuals=with_counterfactuals,
            num_shuffles=num_shuffles,
        )
        d.window = w
        return d

    def sweep(self, index: int):
        """Only the action sweep (cheaper than :meth:`analyse`)."""
        return self.analyse(index, with_attention=False, with_counterfactuals=False)

    def sweep_table(self, d) -> Table:
        """Per action: MSE of its prediction against the recorded next frame, its uncertainty, and
        which action was recorded (``<-- recorded``) and which prediction is closest."""
        labels = self.action_labels()
        best = d.best_action
        rows = []
        for a in range(len(labels)):
            mark = []
            if a == d.executed:
                mark.append('<-- recorded')
            if a == best:
                mark.append('closest')
            rows.append(
                [
                    a,
                    labels[a],
                    None if d.errors is None else float(d.errors[a]),
                    float(d.uncertainty[a]),
                    ', '.join(mark),
                ]
            )
        w = d.window
        title = (
            f'action sweep at frame {w.frame_indices[w.index]} -> {w.frame_indices[w.index + 1]} '
            f'(spread {d.spread:.3g})'
        )
        return Table(
            ['action', 'label', 'MSE vs recorded next', 'uncertainty (nats)', ''], rows, title=title
        )

    def sweep_figure(self, d):
        """Current frame, recorded next frame, and the prediction for every action (recorded action
        framed in green, with its MSE and uncertainty)."""
        import matplotlib.pyplot as plt

        w = d.window
        labels = self.action_labels()
        n = len(labels)
        fig, axes = plt.subplots(1, n + 2, figsize=(2.0 * (n + 2), 2.6), squeeze=False)
        axes = axes[0]
        axes[0].imshow(w.frames[w.index])
        axes[0].set_title(f'current: frame {w.frame_indices[w.index]}', fontsize=8)
        axes[1].imshow(w.frames[w.index + 1])
        axes[1].set_title(f'recorded next: {w.frame_indices[w.index + 1]}', fontsize=8)
        for a in range(n):
            ax = axes[a + 2]
            ax.imshow(d.predictions[a])
            err = '' if d.errors is None else f'MSE {d.errors[a]:.2e}\n'
            recorded = a == d.executed
            ax.set_title(
                f'{labels[a]}{" (recorded)" if recorded else ""}\n{err}H {d.uncertainty[a]:.2f}',
                fontsize=7,
                color='tab:green' if recorded else 'black',
                fontweight='bold' if recorded else 'normal',
            )
            if recorded:
                for spine in ax.spines.values():
                    spine.set_edgecolor('tab:green')
                    spine.set_linewidth(4)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle('predicted next frame for every action', fontsize=9)
        fig.tight_layout()
        return fig

    def attention_table(self, d) -> Table:
        """The attention metrics and the mass per segment.

        The metrics are APA, ALF, TTAR, RI@16 and the entropy vs uniform.
        """
        if d.attention is None:
            raise ExplorerError(
                'no attention in these diagnostics: analyse(..., with_attention=True)'
            )
        rows = [[k.replace('attn/', ''), v, 'metric'] for k, v in d.attention_metrics.items()]
        rows += [[k, v, 'mass'] for k, v in d.attention_breakdown.items()]
        label = self.action_labels()[d.attention_index]
        return Table(
            ['name', 'value', 'kind'],
            rows,
            title=f'last-layer attention of the future queries ({label})',
        )

    def attention_figure(self, d):
        """Last-layer attention (heads averaged): the map over the sequence with its segments, the
        mass on each context frame's patches over that frame, and the mass per segment."""
        import matplotlib.pyplot as plt

        from world_model_node.models import ACTION_TOKEN

        if d.attention is None:
            raise ExplorerError(
                'no attention in these diagnostics: analyse(..., with_attention=True)'
            )
        w = d.window
        att = d.attention.mean(axis=0)  # [1+T, L]
        grids = d.attention_grids  # [F, g, g]
        f = grids.shape[0]
        fig = plt.figure(figsize=(max(9, 2.2 * f + 4), 6.4))
        gs = fig.add_gridspec(2, max(f, 2) + 2, height_ratios=[1.1, 1])
        ax = fig.add_subplot(gs[0, :])
        im = ax.imshow(
            att, aspect='auto', cmap='magma', interpolation='nearest', norm=_log_norm(att)
        )
        kt = d.key_types
        for pos in np.flatnonzero(kt == ACTION_TOKEN):
            ax.axvline(pos, color='cyan', lw=0.6, alpha=0.8)
        bounds = np.flatnonzero(np.diff(kt) != 0) + 0.5
        for b in bounds:
            ax.axvline(b, color='white', lw=0.4, alpha=0.5)
        ax.set_xlabel('key position (frames, action tokens in cyan, candidate, queries)')
        ax.set_ylabel('row (0: candidate, then queries)')
        ax.set_title(
            f'attention of {self.action_labels()[d.attention_index]} (mean over heads, log colour)',
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, fraction=0.02)
        ctx_frames = w.frames[: w.index + 1][-f:]
        ctx_idx = w.frame_indices[: w.index + 1][-f:]
        vmax = float(grids.max()) or 1.0
        for k in range(f):
            axk = fig.add_subplot(gs[1, k])
            h, wd = ctx_frames[k].shape[:2]
            axk.imshow(ctx_frames[k])
            axk.imshow(
                grids[k],
                cmap='inferno',
                alpha=0.5,
                extent=(0, wd, h, 0),
                vmin=0,
                vmax=vmax,
                interpolation='nearest',
            )
            axk.set_title(f'frame {ctx_idx[k]}: {grids[k].sum():.2f}', fontsize=8)
            axk.axis('off')
        axb = fig.add_subplot(gs[1, max(f, 2) :])
        names, vals = list(d.attention_breakdown), list(d.attention_breakdown.values())
        colours = [
            'tab:blue'
            if n.startswith('frame')
            else 'tab:orange'
            if n.startswith(('action', 'candidate'))
            else 'tab:gray'
            for n in names
        ]
        axb.barh(range(len(names)), vals, color=colours)
        axb.set_yticks(range(len(names)), names, fontsize=7)
        axb.invert_yaxis()
        axb.set_xlabel('attention mass')
        m = d.attention_metrics
        axb.set_title(
            f"APA {m.get('attn/APA', 0):.3f}  ALF {m.get('attn/ALF', 0):.3f}\n"
            f"TTAR {m.get('attn/TTAR', 0):.3f}  entropy {m.get('attn/entropy', 0):.2f}/"
            f"{m.get('attn/entropy_uniform', 0):.2f}",
            fontsize=8,
        )
        fig.tight_layout()
        return fig

    def counterfactual_table(self, d) -> Table:
        """The prediction loss with the true, shuffled and zeroed action sequence, and the gaps."""
        if d.counterfactual is None:
            raise ExplorerError(
                'no counterfactuals: the transition needs a recorded action and next frame, '
                'and analyse(..., with_counterfactuals=True)'
            )
        cf = d.counterfactual
        rows = [
            ['true actions', cf['true'], 0.0],
            ['shuffled in time', cf['shuffled'], cf['shuffled_gap']],
            ['all zero', cf['zeroed'], cf['zeroed_gap']],
        ]
        return Table(
            ['action sequence', 'prediction MSE', 'gap vs true'],
            rows,
            title='counterfactuals (a model that uses the actions has gaps > 0)',
        )

    # ------------------------------------------------------------------ training

    def train_autoencoder(
        self,
        frames: Iterable[int] | slice | None = None,
        steps: int | None = None,
        threshold: float | None = None,
        run: bool = True,
        **kwargs,
    ):
        """Train the autoencoder on chosen frames for ``steps`` or to ``threshold`` (the unmasked
        reconstruction MSE); ``run=False`` returns the run unstarted (``run.run(n)``, ``pause()``,
        ``resume()``). See :meth:`ModelWorkbench.train_autoencoder`."""
        sel = self.selection(frames)
        return self._model().train_autoencoder(
            sel.frames, steps=steps, threshold=threshold, run=run, **kwargs
        )

    def train_predictor(
        self,
        frames: Iterable[int] | slice | None = None,
        steps: int | None = None,
        threshold: float | None = None,
        run: bool = True,
        **kwargs,
    ):
        """Train the level-0 predictor on the transitions among chosen frames.

        It runs for ``steps`` or to ``threshold`` (the executed action's prediction MSE). See
        :meth:`ModelWorkbench.train_predictor`.
        """
        sel = self.selection(frames)
        if not (sel.actions >= 0).any():
            raise ExplorerError(
                'the chosen frames contain no transition (a frame and the frame after its action)'
            )
        return self._model().train_predictor(
            sel.frames, sel.actions, steps=steps, threshold=threshold, run=run, **kwargs
        )

    @staticmethod
    def training_figure(*runs):
        """Training loss per step and evaluation loss (with the threshold) of one or more runs."""
        import matplotlib.pyplot as plt

        if not runs:
            raise ExplorerError('training_figure needs at least one training run')
        fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.2), squeeze=False)
        for ax, r in zip(axes[0], runs):
            if r.losses:
                ax.plot(
                    np.arange(1, len(r.losses) + 1),
                    r.losses,
                    lw=0.8,
                    alpha=0.7,
                    label='training loss',
                )
            ev = np.array(r.evals, dtype=float)
            ax.plot(ev[:, 0], ev[:, 1], 'o-', ms=3, label='evaluation loss')
            if r.threshold is not None:
                ax.axhline(
                    r.threshold, color='tab:red', ls='--', lw=1, label=f'threshold {r.threshold:g}'
                )
            ax.set_yscale('log')
            ax.set_xlabel('step')
            state = f'done: {r.reason}' if r.done else ('paused' if r.paused else 'not done')
            ax.set_title(f'{r.kind}: {r.steps_done} steps ({state})', fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------------ weights

    def weight_change_table(self, top: int | None = None) -> Table:
        """Relative weight change per layer since the model was loaded (largest first)."""
        change = self._model().weight_change()
        items = sorted(change.items(), key=lambda kv: -kv[1])[:top]
        return Table(
            ['layer', 'relative change'],
            [[k, v] for k, v in items],
            title=(
                'weight change since load: ||w - w0|| / ||w0|| '
                '(absolute for zero-initialised layers)'
            ),
        )

    def weight_change_figure(self):
        """Relative weight change per layer, both networks, as horizontal bars."""
        import matplotlib.pyplot as plt

        change = self._model().weight_change()
        nets = ['autoencoder', 'predictor']
        fig, axes = plt.subplots(1, 2, figsize=(10, 0.22 * max(len(change) // 2, 8) + 1))
        for ax, net in zip(axes, nets):
            items = [(k.split('/', 1)[1], v) for k, v in change.items() if k.startswith(net + '/')]
            ax.barh(
                range(len(items)),
                [v for _, v in items],
                color='tab:blue' if net == 'autoencoder' else 'tab:orange',
            )
            ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel('relative change')
            ax.set_title(net, fontsize=9)
        fig.suptitle('weight change since load', fontsize=10)
        fig.tight_layout()
        return fig

    def weights_figure(self, network: str = 'autoencoder', max_panels: int = 20):
        """Weight images of one network (``autoencoder`` or ``predictor``): patch-embedding filters,
        attention projections, the action pathway (blue < 0 < red)."""
        import matplotlib.pyplot as plt

        if network not in ('autoencoder', 'predictor'):
            raise ExplorerError(f"network must be 'autoencoder' or 'predictor', got {network!r}")
        images = {
            k: v for k, v in self._model().weight_images().items() if k.startswith(network + '/')
        }
        names = list(images)[:max_panels]
        cols = min(4, len(names))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis('off')
        for ax, name in zip(axes.flat, names):
            img = images[name]
            ax.imshow(
                img,
                aspect='auto' if name != 'autoencoder/patch_embed' else 'equal',
                interpolation='nearest',
            )
            ax.set_title(f'{name.split("/", 1)[1]} {img.shape[0]}x{img.shape[1]}', fontsize=8)
        fig.suptitle(f'{network} weights', fontsize=10)
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------------ saving

    def save_model(self, directory: str | Path, overwrite_live: bool = False) -> int:
        """Save the (trained) model in the checkpoint format into ``directory``.

        Never into the checkpoint it was loaded from, nor into any directory that already holds a
        checkpoint (a live robot's), unless ``overwrite_live=True``.

        Returns:
            the checkpoint generation written.
        """
        return self._model().save(directory, overwrite_live=overwrite_live)


def _log_norm(values: np.ndarray):
    """A log colour scale for attention (floor at 1e-4 of the maximum)."""
    from matplotlib.colors import LogNorm

    vmax = float(values.max()) if values.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    return LogNorm(vmin=vmax * 1e-4, vmax=vmax, clip=True)


__all__ = ['SessionExplorer', 'ExplorerError', 'Window', 'Html']
