"""Training samples from recorded sessions: a map-style dataset of context windows.

A *sample* is what one online prediction step sees: ``F = PREDICTION_HISTORY_SIZE + 1`` context
frames, the action executed after each of them, and the frame that followed the last action::

    frames  [f_{t-3}, f_{t-2}, f_{t-1}, f_t, f_{t+1}]      (F + 1 frames; the last is the target)
    actions [a_{t-3}, a_{t-2}, a_{t-1}, a_t]               (F actions; a_t is the one predicted for)

Actions and frames are paired by the session API (:meth:`devbot.bag.Session.transition_list`): an
executed action (stamp = completion) goes with the last frame before it and the first frame at
or after it, the same rule as the online loop (``world_model_node.loop``). A window is made of
F consecutive transitions that form a chain (each one starts on the frame the previous one ended
on); where a frame or an action is missing the chain breaks and no window crosses the gap, as
the online learner's context never reaches across an unlabelled frame.

A transition filter (:mod:`devbot.bag.filter`, the recorded selector's language, e.g.
``actions=1`` or ``motor_right>0; from=10``) keeps the samples whose *predicted-for* transition
(the last of the window) it keeps; the context frames before it stay whatever the robot did, as
they were when the online learner made that prediction.

The held-out split is by blocks of consecutive samples, chosen by a hash of (seed, session
name, block number): deterministic, independent of the order sessions are given in, and stable
when sessions are added. Training samples whose frames overlap a held-out window are dropped.

Frames are decoded lazily (on first use, a short run of neighbouring frames at once) and kept in
a per-process LRU cache with a byte budget, resized to the model's image size exactly as the
online learner resizes them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from devbot.action_space import ActionSpace
from devbot.bag import BagError, FilterError, Session, TransitionFilter, read_info

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """Sessions that cannot be trained from (unreadable, empty, mixed robots or action spaces)."""


# ---------------------------------------------------------------------------------------------
# the index: which frames and actions make each sample (no pixels)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionWindows:
    """The samples of one session.

    Attributes:
        path: the session (bag) directory.
        name: its name (used by the held-out split).
        num_frames: frames in the session (after de-duplication by stamp).
        frames: int64 [N, F+1] frame indices of each sample (context frames, then the target).
        actions: int64 [N, F] action executed after each context frame.
        positions: int64 [N] index of each sample's last transition (consecutive samples of a
            chain have consecutive positions).
    """

    path: Path
    name: str
    num_frames: int
    frames: np.ndarray
    actions: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def chain_windows(
    frame_index: Sequence[int],
    next_frame_index: Sequence[int],
    actions: Sequence[int],
    context_frames: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Context windows over a list of transitions.

    Args:
        frame_index, next_frame_index, actions: per transition (in order): the frame it starts
            on, the frame it ends on, the executed action.
        context_frames: F, context frames per sample.
    Returns:
        (frames int64 [N, F+1], actions int64 [N, F], positions int64 [N]): one sample for every
        transition k that ends a chain of at least F linked transitions (k-F+1 .. k).
    """
    if context_frames < 1:
        raise ValueError(f'context_frames must be >= 1, got {context_frames}')
    n = len(actions)
    f_out, a_out, p_out = [], [], []
    run = 0
    for k in range(n):
        linked = k > 0 and next_frame_index[k - 1] == frame_index[k]
        run = run + 1 if linked else 1
        if run >= context_frames:
            ks = range(k - context_frames + 1, k + 1)
            f_out.append([frame_index[j] for j in ks] + [next_frame_index[k]])
            a_out.append([actions[j] for j in ks])
            p_out.append(k)
    if not f_out:
        return (
            np.zeros((0, context_frames + 1), np.int64),
            np.zeros((0, context_frames), np.int64),
            np.zeros(0, np.int64),
        )
    return np.asarray(f_out, np.int64), np.asarray(a_out, np.int64), np.asarray(p_out, np.int64)


def index_session(
    path: str | Path,
    context_frames: int,
    action_space: ActionSpace | None = None,
    transition_filter: str = '',
) -> SessionWindows:
    """Read one session's frame stamps and executed actions and list its samples.

    Args:
        path: the session (bag) directory.
        context_frames: F, context frames per sample.
        action_space: the session's action space (default: from the bag's metadata).
        transition_filter: keep only the samples whose last transition this filter keeps
            ('' keeps all).
    Raises:
        DatasetError: the bag cannot be read, or the filter does not fit its action space (the
            message names the session and says why).
    """
    path = Path(path)
    try:
        with Session(path, action_space=action_space) as session:
            trans = session.transition_list()
            num_frames = session.num_frames
            keep = TransitionFilter.parse(transition_filter, session.action_space)
            start_ns = session.start_ns
    except FilterError as exc:
        raise DatasetError(f'{path}: filter {transition_filter!r}: {exc}') from exc
    except BagError as exc:
        raise DatasetError(f'cannot read session {path}: {exc}') from exc
    frames, actions, positions = chain_windows(
        [t.frame_index for t in trans],
        [t.next_frame_index for t in trans],
        [t.action for t in trans],
        context_frames,
    )
    if not keep.empty:
        kept = np.array([keep(trans[p], start_ns) for p in positions], dtype=bool)
        frames, actions, positions = frames[kept], actions[kept], positions[kept]
    return SessionWindows(path, path.name, num_frames, frames, actions, positions)


@dataclass(frozen=True)
class TransitionIndex:
    """The samples of several sessions of one robot.

    Attributes:
        sessions: per session, its windows (sample ids run over the sessions in this order).
        robot_type: from the bags' metadata.
        action_space: the action space every bag declares (all must agree).
        context_frames: F.
        transition_filter: the filter the samples were chosen by ('' for all).
    """

    sessions: tuple[SessionWindows, ...]
    robot_type: str
    action_space: ActionSpace
    context_frames: int
    transition_filter: str = ''

    @property
    def offsets(self) -> np.ndarray:
        """int64 [S+1]: sample ids of session s are offsets[s] .. offsets[s+1]-1."""
        return np.concatenate([[0], np.cumsum([len(s) for s in self.sessions])]).astype(np.int64)

    def __len__(self) -> int:
        return int(sum(len(s) for s in self.sessions))

    def locate(self, sample_id: int) -> tuple[int, int]:
        """(session number, row within that session) of a global sample id."""
        offsets = self.offsets
        if not 0 <= sample_id < offsets[-1]:
            raise IndexError(f'sample {sample_id} out of range: {offsets[-1]} samples')
        s = int(np.searchsorted(offsets, sample_id, side='right') - 1)
        return s, int(sample_id - offsets[s])

    def action_counts(self, sample_ids: Sequence[int] | None = None) -> np.ndarray:
        """How often each action is the predicted-for action (the last of a window): int64 [A]."""
        last = (
            np.concatenate([s.actions[:, -1] for s in self.sessions])
            if self.sessions
            else np.zeros(0, np.int64)
        )
        if sample_ids is not None:
            last = last[np.asarray(sample_ids, np.int64)]
        return np.bincount(last, minlength=self.action_space.num_actions).astype(np.int64)

    def fingerprint(self) -> dict:
        """What a resumed run checks to be sure it trains on the same data."""
        out = {
            'sessions': [str(s.path) for s in self.sessions],
            'samples': [len(s) for s in self.sessions],
            'context_frames': self.context_frames,
        }
        if self.transition_filter:  # runs without a filter keep the fingerprint they had
            out['filter'] = self.transition_filter
        return out


def build_index(
    paths: Sequence[str | Path],
    context_frames: int,
    skip_bad: bool = False,
    transition_filter: str = '',
) -> TransitionIndex:
    """Index the samples of the given sessions (all of one robot and one action space).

    Args:
        paths: session (bag) directories.
        context_frames: F = PREDICTION_HISTORY_SIZE + 1.
        skip_bad: leave out unreadable sessions and sessions without a single sample (with a
            warning) instead of failing.
        transition_filter: keep only the samples whose predicted-for transition this filter
            keeps (the recorded selector's filter language; '' keeps all).
    Raises:
        DatasetError: no sessions; an unreadable or empty session (unless skip_bad); sessions of
            different robots or action spaces; a filter that does not fit the action space; no
            sample at all.
    """
    transition_filter = (transition_filter or '').strip()
    if not paths:
        raise DatasetError('no sessions given')
    windows: list[SessionWindows] = []
    problems: list[str] = []
    space: ActionSpace | None = None
    robot: str | None = None

    def bad(msg: str) -> None:
        if not skip_bad:
            raise DatasetError(
                f'{msg}\n(give --skip-bad-sessions to train from the other sessions)'
            )
        problems.append(msg)
        log.warning('skipped: %s', msg)

    for p in paths:
        path = Path(p)
        try:
            info = read_info(path)
        except BagError as exc:
            bad(f'cannot read session {path}: {exc}')
            continue
        if info.action_space is None:
            bad(
                f'{path}: the bag has no devbot action space in its metadata '
                f'(devbot.action_space in custom_data)'
            )
            continue
        if space is not None and info.action_space != space:
            raise DatasetError(
                f'{path}: its action space {info.action_space.to_dict()} (robot '
                f'{info.action_space.robot_type}) differs from that of {windows[0].path} '
                f'({space.to_dict()}, robot {space.robot_type}); train one robot at a time'
            )
        try:
            TransitionFilter.parse(transition_filter, info.action_space)
        except FilterError as exc:  # the same mistake in every session: never skipped
            raise DatasetError(f'{path}: filter {transition_filter!r}: {exc}') from exc
        try:
            w = index_session(path, context_frames, info.action_space, transition_filter)
        except DatasetError as exc:
            bad(str(exc))
            continue
        if len(w) == 0:
            kept = f' kept by the filter {transition_filter!r}' if transition_filter else ''
            bad(
                f'{path}: no training sample{kept}: {w.num_frames} frames and no chain of '
                f'{context_frames} consecutive transitions (frame, executed action, next frame)'
            )
            continue
        space = space or info.action_space
        robot = robot or info.robot_type or info.action_space.robot_type
        windows.append(w)
    if not windows:
        raise DatasetError('no usable session: ' + '; '.join(problems))
    return TransitionIndex(tuple(windows), str(robot), space, context_frames, transition_filter)


# ---------------------------------------------------------------------------------------------
# held-out split
# ---------------------------------------------------------------------------------------------


def _unit_hash(seed: int, name: str, block: int) -> float:
    """A number in [0, 1) fixed by (seed, session name, block), well spread for similar names."""
    digest = hashlib.blake2b(f'{seed}:{name}:{block}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'big') / 2**64


def split_samples(
    index: TransitionIndex, val_fraction: float, seed: int = 0, block: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train / held-out split by blocks of consecutive samples.

    Each session's samples are cut into blocks of ``block`` consecutive positions; a block is
    held out when a hash of (seed, session name, block number) falls under ``val_fraction`` (at
    least one block is held out when val_fraction > 0 and there are two blocks or more). Training
    samples that share a frame with a held-out sample are dropped.

    Returns:
        (train ids, held-out ids): sorted int64 arrays of global sample ids.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
    if block < 1:
        raise ValueError(f'block must be >= 1, got {block}')
    offsets = index.offsets
    blocks = []  # (hash, session number, block number)
    for s, w in enumerate(index.sessions):
        for b in np.unique(w.positions // block):
            blocks.append((_unit_hash(seed, w.name, int(b)), s, int(b)))
    chosen = {(s, b) for h, s, b in blocks if h < val_fraction}
    if val_fraction > 0 and not chosen and len(blocks) >= 2:
        h, s, b = min(blocks)
        chosen = {(s, b)}
    train, val = [], []
    gap = index.context_frames  # windows closer than this share a frame
    for s, w in enumerate(index.sessions):
        held = np.array([(s, int(b)) in chosen for b in w.positions // block], dtype=bool)
        ids = offsets[s] + np.arange(len(w))
        val.append(ids[held])
        if held.any():
            vp = w.positions[held]
            nearest = np.min(np.abs(w.positions[:, None] - vp[None, :]), axis=1)
            keep = ~held & (nearest > gap)
        else:
            keep = ~held
        train.append(ids[keep])
    return np.concatenate(train).astype(np.int64), np.concatenate(val).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# frames: lazy decoding, LRU cache
# ---------------------------------------------------------------------------------------------


def resize_frame(u8: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [H, W, C] -> uint8 [size, size, C]: bilinear with antialiasing, rounded (the online
    learner's resize, so an offline-trained model sees the same pixels as online)."""
    if u8.shape[0] == size and u8.shape[1] == size:
        return u8
    img = u8.permute(2, 0, 1)[None].float()
    img = F.interpolate(
        img, size=(size, size), mode='bilinear', antialias=True, align_corners=False
    )
    return img.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).contiguous()


class FrameStore:
    """Decoded frames of several sessions, read on demand and kept in an LRU cache.

    One instance per process: a DataLoader worker gets a copy without open files or cached
    frames (see ``__getstate__``) and opens the sessions it needs itself.

    Args:
        paths: session directories, by session number.
        img_size: frames are resized to img_size x img_size (uint8, channels first).
        cache_bytes: byte budget of the cache (decoded, resized frames).
        readahead: on a miss, also decode up to this many following frames (one pass over the bag).
        max_open: sessions kept open at once (each holds a file and its frame index).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        img_size: int,
        cache_bytes: int = 1 << 30,
        readahead: int = 16,
        max_open: int = 8,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.img_size = int(img_size)
        self.cache_bytes = int(cache_bytes)
        self.readahead = max(0, int(readahead))
        self.max_open = max(1, int(max_open))
        self._reset()

    def _reset(self) -> None:
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._open: OrderedDict[int, Session] = OrderedDict()
        self._pid = os.getpid()
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ('_cache', '_open', '_bytes', '_pid', 'hits', 'misses'):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def close(self) -> None:
        for s in self._open.values():
            s.close()
        self._open.clear()

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def _session(self, s: int) -> Session:
        if self._pid != os.getpid():  # forked after use: never share a reader
            self._reset()
        if s in self._open:
            self._open.move_to_end(s)
            return self._open[s]
        try:
            session = Session(self.paths[s])
        except BagError as exc:
            raise DatasetError(f'cannot read session {self.paths[s]}: {exc}') from exc
        self._open[s] = session
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return session

    def _put(self, key: tuple[int, int], frame: torch.Tensor) -> None:
        if key in self._cache:
            return
        self._cache[key] = frame
        self._bytes += frame.numel()
        while self._bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._bytes -= old.numel()

    def _decode(self, image: np.ndarray) -> torch.Tensor:
        u8 = torch.from_numpy(np.ascontiguousarray(image))
        return resize_frame(u8, self.img_size).permute(2, 0, 1).contiguous()  # [3, S, S]

    def get(self, s: int, frame_indices: Sequence[int]) -> torch.Tensor:
        """Frames of session s: uint8 [len(frame_indices), 3, S, S].

        Raises:
            DatasetError: the bag cannot be read or a frame cannot be decoded.
        """
        out: list[torch.Tensor | None] = []
        missing = []
        for i in frame_indices:
            frame = self._cache.get((s, int(i)))
            if frame is None:
                missing.append(int(i))
            else:
                self._cache.move_to_end((s, int(i)))
            out.append(frame)
        if missing:
            self.misses += len(missing)
            self._load(s, missing)
            out = [self._cache.get((s, int(i))) for i in frame_indices]
            if any(f is None for f in out):  # cache smaller than one sample: decode directly
                session = self._session(s)
                out = [
                    self._cache.get((s, int(i)))
                    if self._cache.get((s, int(i))) is not None
                    else self._read_one(session, int(i))
                    for i in frame_indices
                ]
        self.hits += len(frame_indices) - len(missing)
        return torch.stack(out)

    def _read_one(self, session: Session, i: int) -> torch.Tensor:
        try:
            return self._decode(session.frame(i).image)
        except (BagError, IndexError) as exc:
            raise DatasetError(f'{session.path}: cannot read frame {i}: {exc}') from exc

    def _load(self, s: int, missing: list[int]) -> None:
        session = self._session(s)
        lo, hi = min(missing), max(missing) + 1
        span_limit = max(4 * len(missing), self.readahead + len(missing))
        if hi - lo > span_limit:  # far apart: one by one
            for i in missing:
                self._put((s, i), self._read_one(session, i))
            return
        hi = max(hi, min(lo + self.readahead, session.num_frames))
        try:
            for frame in session.frames(lo, hi):
                self._put((s, frame.index), self._decode(frame.image))
        except BagError as exc:
            raise DatasetError(f'{session.path}: cannot read frames {lo}..{hi - 1}: {exc}') from exc


# ---------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------


class TransitionDataset(Dataset):
    """Map-style dataset over some samples of a :class:`TransitionIndex`.

    Item ``i`` (of ``sample_ids[i]``) is a dict:
        frames: uint8 [F+1, 3, S, S] (context frames oldest first, then the target frame),
        actions: int64 [F] (action after each context frame; the last is the predicted-for action),
        sample: int64 0-d, the global sample id.

    Args:
        index: the sessions' samples.
        sample_ids: which global sample ids this dataset serves (e.g. the training split).
        img_size: the model's image size.
        cache_bytes, readahead: see :class:`FrameStore`.
    """

    def __init__(
        self,
        index: TransitionIndex,
        sample_ids: Sequence[int] | np.ndarray,
        img_size: int,
        cache_bytes: int = 1 << 30,
        readahead: int = 16,
    ) -> None:
        self.index = index
        self.sample_ids = np.asarray(sample_ids, dtype=np.int64)
        if self.sample_ids.size and (
            self.sample_ids.min() < 0 or self.sample_ids.max() >= len(index)
        ):
            raise IndexError(f'sample ids outside 0..{len(index) - 1}')
        self._offsets = index.offsets
        self.frames = FrameStore([w.path for w in index.sessions], img_size, cache_bytes, readahead)

    def __len__(self) -> int:
        return int(self.sample_ids.size)

    def locate(self, i: int) -> tuple[int, int]:
        sid = int(self.sample_ids[i])
        s = int(np.searchsorted(self._offsets, sid, side='right') - 1)
        return s, sid - int(self._offsets[s])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f'item {i} out of range: {len(self)} samples')
        i %= len(self)
        s, row = self.locate(i)
        w = self.index.sessions[s]
        frames = self.frames.get(s, w.frames[row].tolist())  # [F+1, 3, S, S] uint8
        return {
            'frames': frames,
            'actions': torch.from_numpy(w.actions[row].copy()),
            'sample': torch.tensor(int(self.sample_ids[i])),
        }


__all__ = [
    'DatasetError',
    'SessionWindows',
    'TransitionIndex',
    'TransitionDataset',
    'FrameStore',
    'build_index',
    'index_session',
    'chain_windows',
    'split_samples',
    'resize_frame',
]
