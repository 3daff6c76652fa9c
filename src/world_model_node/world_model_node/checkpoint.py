"""Checkpoint files of the world model, and the online learner's checkpoint payload.

One directory per robot holds one file per component, each with a rolling backup::

    autoencoder.pth          autoencoder_backup.pth
    predictor_0.pth          predictor_0_backup.pth      (one pair per hierarchy level)
    learner_state.pth        learner_state_backup.pth

Every save writes one *generation* (a counter stored inside every file): all files are first
written to temporary files and fsynced, then each primary becomes the backup and the temporary
file becomes the primary (``os.replace``, atomic), then the directory is fsynced. Loading picks
the newest generation for which every required file (the learner state names them) has an
intact copy, primary or backup, so a crash at any point, or one corrupted file, yields one
consistent older or newer generation, never a mix (the original loaded the older predictor
backup after a newer primary and silently rolled progress back).

``CheckpointManager.save_in_background`` keeps the learning loop off the disk: the loop thread
only copies the generation's tensors to CPU memory (a snapshot of one step), a writer thread
serializes and writes it as above; at most one write is in flight and ``wait()`` finishes it.

``learner_components`` builds one generation of an ``OnlineLearner`` (its core's weights and
optimizers, its counters, level statistics and newest history) and ``restore_learner`` loads one
into a ``WorldModelCore`` after checking that it was made for the same model and action space.

Files contain only tensors and plain Python values, are read with ``torch.load(weights_only=True)``
(no code runs while loading), are written from CPU tensors, and load onto any device via
``map_location``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .config import WorldModelConfig
from .core import WeightAverage, WorldModelCore, load_optimizer_state, set_lr

if TYPE_CHECKING:
    from .learner import OnlineLearner

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STATE_NAME = 'learner_state'  # the component that lists the others
SUFFIX = '.pth'
BACKUP = '_backup'


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or is inconsistent (the message names the file and why)."""


def to_cpu(obj: Any, copy: bool = False) -> Any:
    """Recursively detach tensors and move them to the CPU (dicts, lists, tuples preserved).

    Args:
        obj: tensors, possibly nested in dicts, lists and tuples; other values pass through.
        copy: copy every tensor into memory of its own, also one already on the CPU (a snapshot
            that later in-place updates of the original do not change).
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to('cpu', copy=True) if copy else obj.detach().cpu()
    if isinstance(obj, Mapping):
        return {k: to_cpu(v, copy) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v, copy) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(v, copy) for v in obj)
    return obj


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(obj: Any, path: Path) -> None:
    """torch.save to ``path`` and fsync it (the caller renames it into place)."""
    with open(path, 'wb') as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to ``path`` atomically: temporary file in the same directory, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    write_file(obj, tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load_file(
    path: str | os.PathLike, map_location: str | torch.device | None = 'cpu'
) -> dict[str, Any]:
    """Read one checkpoint file safely (``weights_only=True``) onto ``map_location``.

    Raises:
        CheckpointError: missing, empty, truncated or corrupted file, or not a checkpoint of this
            format; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: checkpoint file not found')
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f'{path}: checkpoint file is empty (0 bytes), probably an interrupted write'
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f'{path}: checkpoint file is truncated or corrupted ({size} bytes): '
            f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'
        ) from exc
    except Exception as exc:  # e.g. pickle.UnpicklingError for disallowed objects
        raise CheckpointError(
            f'{path}: not a safe world-model checkpoint: {type(exc).__name__}: {exc}'
        ) from exc
    if (
        not isinstance(obj, dict)
        or 'generation' not in obj
        or obj.get('format_version') != FORMAT_VERSION
    ):
        raise CheckpointError(f'{path}: not a world-model checkpoint of format {FORMAT_VERSION}')
    return obj


class CheckpointManager:
    """Generation-consistent save/load of named components in one directory.

    Args:
        directory: the robot's checkpoint directory (created on the first save).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._writer: threading.Thread | None = None
        #: the error of the last background write, until ``wait()`` returns it
        self.write_error: BaseException | None = None
        #: the last save's generation and seconds: 'snapshot_s' (on the caller's thread),
        #: 'write_s' (serialization + files + fsync) and 'bytes' once written
        self.last_save: dict[str, Any] = {}

    def path(self, name: str, backup: bool = False) -> Path:
        return self.directory / f'{name}{BACKUP if backup else ""}{SUFFIX}'

    def exists(self) -> bool:
        """Whether any learner state (primary or backup) is present."""
        return self.path(STATE_NAME).exists() or self.path(STATE_NAME, backup=True).exists()

    # ------------------------------------------------------------------ save

    def save(self, components: Mapping[str, Mapping[str, Any]], generation: int) -> None:
        """Write one generation on this thread (waits first for a background write in flight).

        ``components`` maps a name (e.g. 'autoencoder', 'predictor_0', 'learner_state') to a dict
        of tensors / plain values; it must contain ``learner_state`` with a list ``components``
        naming every other component of this generation.

        Raises:
            ValueError: ``components`` is not one complete generation.
            OSError: the files could not be written (the previous generation stays loadable).
        """
        self.wait()
        self._write(self.snapshot(components, generation, copy=False))

    def save_in_background(
        self, components: Mapping[str, Mapping[str, Any]], generation: int
    ) -> bool:
        """Snapshot one generation on this thread, then serialize and write it on a writer thread.

        The snapshot copies every tensor to CPU memory, so the caller may go on training at once
        and the files hold the state of this moment. At most one write is in flight: while one is,
        this takes no snapshot and returns False (the caller tries again later; waiting here
        would stall the caller for the whole write). ``wait()`` finishes the write.

        Returns:
            True when the write started.

        Raises:
            ValueError: ``components`` is not one complete generation.
        """
        if self.writing:
            return False
        snap = self.snapshot(components, generation, copy=True)
        self._writer = threading.Thread(
            target=self._write_logged, args=(snap,), name='checkpoint-writer'
        )
        self._writer.start()
        return True

    @property
    def writing(self) -> bool:
        """Whether a background write is in flight."""
        return self._writer is not None and self._writer.is_alive()

    def wait(self) -> BaseException | None:
        """Wait for the background write in flight, if any; returns its error (None: written or
        nothing was in flight). The error was logged when it happened."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        error, self.write_error = self.write_error, None
        return error

    def snapshot(
        self, components: Mapping[str, Mapping[str, Any]], generation: int, copy: bool = True
    ) -> dict[str, dict[str, Any]]:
        """One generation as plain CPU data, ready to write: every tensor on the CPU (``copy``:
        in memory of its own, so later training does not change it), the generation stamped into
        every component.

        Raises:
            ValueError: ``learner_state`` is missing or lists components that are not given.
        """
        if STATE_NAME not in components:
            raise ValueError(f'components must include {STATE_NAME!r}')
        required = set(components[STATE_NAME].get('components', []))
        missing = required - set(components)
        if missing:
            raise ValueError(
                f'learner_state lists components that are not given: {sorted(missing)}'
            )
        t0 = time.perf_counter()
        snap = {}
        for name, payload in components.items():
            data = dict(to_cpu(dict(payload), copy=copy))
            data['generation'] = int(generation)
            data['format_version'] = FORMAT_VERSION
            data['name'] = name
            snap[name] = data
        self.last_save = {'generation': int(generation), 'snapshot_s': time.perf_counter() - t0}
        return snap

    def _write_logged(self, snap: Mapping[str, dict[str, Any]]) -> None:
        """The writer thread: ``_write``, its error kept for ``wait()`` and logged."""
        try:
            self._write(snap)
        except BaseException as exc:  # noqa: BLE001 - a thread's error would otherwise vanish
            self.write_error = exc
            log.error(
                'checkpoint generation %s could not be written to %s (the previous generation '
                'stays loadable): %s: %s',
                next(iter(snap.values()))['generation'],
                self.directory,
                type(exc).__name__,
                exc,
            )

    def _write(self, snap: Mapping[str, dict[str, Any]]) -> None:
        """Write a snapshot as one generation: every file aside and fsynced first, then the
        rotation, the learner state last (it names the generation loading looks for)."""
        t0 = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmps = []
        size = 0
        for name, data in snap.items():  # 1. write every file of the generation aside
            tmp = self.directory / f'{name}{SUFFIX}.tmp'
            write_file(data, tmp)
            size += tmp.stat().st_size
            tmps.append((name, tmp))
        _fsync_dir(self.directory)
        # 2. rotate: primary -> backup, new -> primary; the state goes last
        tmps.sort(key=lambda item: item[0] == STATE_NAME)
        for name, tmp in tmps:
            primary = self.path(name)
            if primary.exists():
                os.replace(primary, self.path(name, backup=True))
            os.replace(tmp, primary)
        _fsync_dir(self.directory)
        self.last_save = {**self.last_save, 'write_s': time.perf_counter() - t0, 'bytes': size}

    # ------------------------------------------------------------------ load

    def load(
        self, map_location: str | torch.device | None = 'cpu'
    ) -> dict[str, dict[str, Any]] | None:
        """Load the newest consistent generation; None when the directory holds no checkpoint.

        Raises:
            CheckpointError: files exist but no generation can be assembled from intact files
                (the message lists every file and what is wrong with it).
        """
        if not self.exists():
            return None
        problems: list[str] = []
        cache: dict[Path, dict[str, Any] | None] = {}

        def read(p: Path) -> dict[str, Any] | None:
            if p not in cache:
                try:
                    cache[p] = load_file(p, map_location)
                except CheckpointError as exc:
                    if p.exists():
                        problems.append(str(exc))
                    cache[p] = None
            return cache[p]

        states = [
            s for s in (read(self.path(STATE_NAME)), read(self.path(STATE_NAME, backup=True))) if s
        ]
        for state in sorted(states, key=lambda s: -s['generation']):
            gen = state['generation']
            found: dict[str, dict[str, Any]] = {STATE_NAME: state}
            for name in state.get('components', []):
                copy = None
                for backup in (False, True):
                    obj = read(self.path(name, backup))
                    if obj is not None and obj['generation'] == gen:
                        copy = obj
                        if backup:
                            log.warning(
                                'checkpoint: %s is missing/corrupt or of another generation; '
                                'using %s (generation %d)',
                                self.path(name),
                                self.path(name, True),
                                gen,
                            )
                        break
                if copy is None:
                    problems.append(f'generation {gen}: no intact copy of {name}')
                    break
                found[name] = copy
            else:
                if problems:
                    log.warning(
                        'checkpoint: loaded generation %d from %s; problems: %s',
                        gen,
                        self.directory,
                        '; '.join(problems) or 'none',
                    )
                return found
        raise CheckpointError(
            f'no consistent checkpoint generation in {self.directory}: ' + '; '.join(problems)
        )


# ---------------------------------------------------------------------------------------------
# the online learner's generation
# ---------------------------------------------------------------------------------------------


def learner_components(learner: 'OnlineLearner') -> dict[str, dict[str, Any]]:
    """One checkpoint generation of an online learner: 'autoencoder' and 'predictor_<k>' (weights
    and optimizer state) and the learner state (config, action space, counters, per-level
    statistics, masking RNG, the newest SAVED_HISTORY_SIZE history entries)."""
    core = learner.core
    comps: dict[str, dict[str, Any]] = {
        'autoencoder': {
            'model': core.autoencoder.state_dict(),
            'optimizer': core.ae_optimizer.state_dict(),
        }
    }
    if core.ae_average is not None:
        comps['autoencoder']['average'] = core.ae_average.state_dict()
    for lvl in core.levels:
        comps[f'predictor_{lvl.index}'] = {
            'model': lvl.predictor.state_dict(),
            'optimizer': lvl.optimizer.state_dict(),
        }
        if lvl.average is not None:
            comps[f'predictor_{lvl.index}']['average'] = lvl.average.state_dict()
    cfg = core.config
    n = cfg.saved_history_size
    entries = list(learner.history)[-n:] if n > 0 else []
    t, d, s = cfg.tokens_per_frame, cfg.embed_dim, cfg.img_size
    hist = {
        'frames': torch.stack([e.frame for e in entries])
        if entries
        else torch.zeros(0, s, s, cfg.in_chans, dtype=torch.uint8),
        'features': torch.stack([e.features for e in entries]) if entries else torch.zeros(0, t, d),
        'actions': torch.tensor([e.action for e in entries], dtype=torch.long),
        'steps': torch.tensor([e.step for e in entries], dtype=torch.long),
        'checked': torch.tensor([e.checked for e in entries], dtype=torch.bool),
        'trainable': torch.tensor([e.trainable for e in entries], dtype=torch.bool),
    }
    comps[STATE_NAME] = {
        'components': list(comps),
        'config': cfg.to_dict(),
        'action_space': core.base_actions,
        'num_levels': len(core.levels),
        'levels': [
            {
                'consecutive_accurate': st.consecutive_accurate,
                'training_steps': lvl.training_steps,
                'last_error': st.last_error,
                'residual': st.residual,
            }
            for lvl, st in zip(core.levels, learner.stats)
        ],
        'step': learner.step,
        'autoencoder_steps': core.autoencoder_steps,
        'consecutive_autoencoder_iterations': learner.consecutive_autoencoder_iterations,
        'generator': learner.generator.get_state(),
        'history': hist,
    }
    return comps


def check_compatible(
    state: Mapping[str, Any],
    config: WorldModelConfig,
    base_actions: torch.Tensor,
    directory: str | os.PathLike,
) -> None:
    """Raise ``CheckpointError`` when a learner state was made with other model fields
    (``WorldModelConfig.MODEL_FIELDS``) or another action space than ``config`` /
    ``base_actions`` [A, C]; the message names the differences and how to resume."""
    saved = WorldModelConfig.checkpoint_values(state.get('config', {}))
    mine = config.to_dict()
    diff = [k for k in WorldModelConfig.MODEL_FIELDS if k in saved and saved[k] != mine[k]]
    if diff:
        raise CheckpointError(
            f'{directory}: checkpoint was made with another model: '
            + ', '.join(f'{k}={saved[k]!r} (config: {mine[k]!r})' for k in diff)
            + '; set these parameters to the checkpoint\'s values to resume it, or use '
            'another checkpoint folder to start a new model'
        )
    acts = state.get('action_space')
    if (
        acts is None
        or tuple(acts.shape) != tuple(base_actions.shape)
        or not torch.allclose(acts.to(base_actions.device), base_actions)
    ):
        raise CheckpointError(
            f'{directory}: checkpoint was made for another action space '
            f'({None if acts is None else acts.tolist()} vs {base_actions.tolist()})'
        )


@dataclass
class RestoredState:
    """The online learner's part of a loaded generation (the core's part is loaded in place)."""

    generation: int
    step: int
    consecutive_autoencoder_iterations: int
    generator_state: torch.Tensor  # the masking RNG's state (CPU)
    levels: list[dict[str, Any]]  # per level: consecutive_accurate, last_error, residual
    history: list[tuple[torch.Tensor, torch.Tensor, int, int, bool, bool]]  # frame, features,
    # step, action, checked, trainable
    # the learning rates given for this resume that replaced saved ones, e.g.
    # 'autoencoder_lr 0.0001 (saved 0.0003)'; empty when the saved rates were kept
    lr_changes: list[str]


def restore_learner(
    core: WorldModelCore,
    comps: Mapping[str, Mapping[str, Any]],
    directory: str | os.PathLike,
    autoencoder_lr: float | None = None,
    predictor_lr: float | None = None,
) -> RestoredState:
    """Load a generation (from ``CheckpointManager.load``) into ``core``: fresh levels as many as
    saved, weights, optimizer moments, step counters; return the learner's own state.

    Args:
        core: the networks and optimizers to load into.
        comps: the generation's components.
        directory: where it was read from (for messages).
        autoencoder_lr, predictor_lr: learning rates that replace the saved ones (the
            autoencoder's; every level's predictor's) while the optimizer moments and step
            counts stay as saved. None: the saved rate.

    Raises:
        CheckpointError: made for another model or action space, or does not fit this model.
        ValueError: a learning rate that is not a finite number > 0.
    """
    state = comps[STATE_NAME]
    check_compatible(state, core.config, core.base_actions, directory)
    core.reset_levels(int(state['num_levels']))
    try:
        core.autoencoder.load_state_dict(comps['autoencoder']['model'])
        load_optimizer_state(core.ae_optimizer, comps['autoencoder']['optimizer'])
        _load_average(core.ae_average, comps['autoencoder'])
        for lvl, saved in zip(core.levels, state['levels']):
            payload = comps[f'predictor_{lvl.index}']
            lvl.predictor.load_state_dict(payload['model'])
            load_optimizer_state(lvl.optimizer, payload['optimizer'])
            _load_average(lvl.average, payload)
            lvl.training_steps = int(saved['training_steps'])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f'{directory}: checkpoint does not fit this model: {exc}') from exc
    core.autoencoder_steps = int(state['autoencoder_steps'])
    core.ae_version += 1
    lr_changes = []
    if autoencoder_lr is not None:
        lr_changes.append(_replace_lr('autoencoder_lr', [core.ae_optimizer], autoencoder_lr))
    if predictor_lr is not None:
        optimizers = [lvl.optimizer for lvl in core.levels]
        lr_changes.append(_replace_lr('predictor_lr', optimizers, predictor_lr))
    h = state['history']
    n = h['actions'].shape[0]
    # checkpoints without the field: every saved transition could train
    trainable = h.get('trainable', torch.ones(n, dtype=torch.bool))
    history = [
        (
            h['frames'][i].cpu(),
            h['features'][i],
            int(h['steps'][i]),
            int(h['actions'][i]),
            bool(h['checked'][i]),
            bool(trainable[i]),
        )
        for i in range(n)
    ]
    return RestoredState(
        int(state['generation']),
        int(state['step']),
        int(state['consecutive_autoencoder_iterations']),
        state['generator'].cpu(),
        list(state['levels']),
        history,
        lr_changes,
    )


def _load_average(average: WeightAverage | None, payload: Mapping[str, Any]) -> None:
    """The saved weight average, or (saved without one) an average that starts at the loaded
    weights."""
    if average is None:
        return
    if 'average' in payload:
        average.load_state_dict(payload['average'])
    else:
        average.restart()


def _replace_lr(name: str, optimizers: list[torch.optim.Optimizer], lr: float) -> str:
    """Set ``lr`` on loaded optimizers (their moments untouched); describe the change."""
    saved = sorted({float(g['lr']) for opt in optimizers for g in opt.param_groups})
    for opt in optimizers:
        set_lr(opt, lr)
    return f'{name} {lr:g} (saved {"/".join(f"{v:g}" for v in saved)})'


__all__ = [
    'CheckpointManager',
    'CheckpointError',
    'atomic_save',
    'load_file',
    'to_cpu',
    'FORMAT_VERSION',
    'learner_components',
    'check_compatible',
    'restore_learner',
    'RestoredState',
]
