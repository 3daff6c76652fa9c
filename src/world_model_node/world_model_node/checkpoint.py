"""Checkpoint files of the world model (SPEC D4).

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

Files contain only tensors and plain Python values, are read with ``torch.load(weights_only=True)``
(no code runs while loading), are written from CPU tensors, and load onto any device via
``map_location``.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STATE_NAME = 'learner_state'  # the component that lists the others
SUFFIX = '.pth'
BACKUP = '_backup'


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or is inconsistent (the message names the file and why)."""


def to_cpu(obj: Any) -> Any:
    """Recursively detach tensors and move them to the CPU (dicts, lists, tuples preserved)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(v) for v in obj)
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


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to ``path`` atomically: temporary file in the same directory, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'wb') as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
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

    def path(self, name: str, backup: bool = False) -> Path:
        return self.directory / f'{name}{BACKUP if backup else ""}{SUFFIX}'

    def exists(self) -> bool:
        """Whether any learner state (primary or backup) is present."""
        return self.path(STATE_NAME).exists() or self.path(STATE_NAME, backup=True).exists()

    # ------------------------------------------------------------------ save

    def save(self, components: Mapping[str, Mapping[str, Any]], generation: int) -> None:
        """Write one generation. ``components`` maps a name (e.g. 'autoencoder', 'predictor_0',
        'learner_state') to a dict of tensors / plain values; it must contain ``learner_state``
        with a list ``components`` naming every other component of this generation."""
        if STATE_NAME not in components:
            raise ValueError(f'components must include {STATE_NAME!r}')
        required = set(components[STATE_NAME].get('components', []))
        missing = required - set(components)
        if missing:
            raise ValueError(
                f'learner_state lists components that are not given: {sorted(missing)}'
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        tmps = []
        for name, payload in components.items():  # 1. write every file of the generation aside
            data = dict(to_cpu(dict(payload)))
            data['generation'] = int(generation)
            data['format_version'] = FORMAT_VERSION
            data['name'] = name
            tmp = self.directory / f'{name}{SUFFIX}.tmp'
            with open(tmp, 'wb') as fh:
                torch.save(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
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


__all__ = [
    'CheckpointManager',
    'CheckpointError',
    'atomic_save',
    'load_file',
    'to_cpu',
    'FORMAT_VERSION',
]
