"""Find packages and node executables, the way ``ros2 run`` would, plus pip-installed packages.

A ``node`` entry names ``pkg`` and ``exec``. They resolve, in order, to:

1. a ``console_scripts`` entry point named ``exec`` of the installed Python distribution
   ``pkg`` (a pip/venv install of an ament_python package); the script in the environment's
   scripts directory (``sysconfig.get_path('scripts')``) or ``<prefix>/lib/<pkg>/``, or, when
   no script file exists, ``python -c`` calling the entry point;
2. on a full ROS 2 install, ``<prefix>/lib/<pkg>/<exec>`` for each prefix in
   ``AMENT_PREFIX_PATH``.

Package share directories resolve through the ament index of each ``AMENT_PREFIX_PATH``
prefix and of this Python environment's prefix (pip installs ``share/<pkg>/package.xml``
there from setup.py's data_files), and for an editable (``pip install -e``) install, to the
package's source directory when it holds ``package.xml``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import sys
import sysconfig
from urllib.parse import unquote, urlparse


class ResolveError(LookupError):
    """A package, executable or file that cannot be found."""


def _prefixes() -> list[str]:
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    if sys.prefix not in prefixes:
        prefixes.append(sys.prefix)
    return prefixes


def _distribution(pkg: str):
    try:
        return metadata.distribution(pkg)
    except metadata.PackageNotFoundError:
        return None


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _editable_source_dir(dist) -> str | None:
    text = dist.read_text('direct_url.json')
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = info.get('url', '')
    if not info.get('dir_info', {}).get('editable') or not url.startswith('file://'):
        return None
    return unquote(urlparse(url).path)


def find_package_prefix(pkg: str) -> str:
    """The install prefix holding ``pkg`` (ament index marker or ``share/<pkg>``)."""
    for prefix in _prefixes():
        marker = os.path.join(prefix, 'share', 'ament_index', 'resource_index', 'packages', pkg)
        if os.path.exists(marker) or os.path.isfile(
            os.path.join(prefix, 'share', pkg, 'package.xml')
        ):
            return prefix
    dist = _distribution(pkg)
    if dist is not None:
        return sys.prefix
    raise ResolveError(
        f'package {pkg!r} not found (not in AMENT_PREFIX_PATH or {sys.prefix}, '
        'and no installed Python distribution of that name)'
    )


def find_package_share(pkg: str) -> str:
    """The share directory of ``pkg`` (see the module doc for the search order)."""
    for prefix in _prefixes():
        share = os.path.join(prefix, 'share', pkg)
        marker = os.path.join(prefix, 'share', 'ament_index', 'resource_index', 'packages', pkg)
        if os.path.isdir(share) and (
            os.path.exists(marker) or os.path.isfile(os.path.join(share, 'package.xml'))
        ):
            return share
    dist = _distribution(pkg)
    if dist is not None:
        source = _editable_source_dir(dist)
        if source and os.path.isfile(os.path.join(source, 'package.xml')):
            return source
        raise ResolveError(
            f'package {pkg!r} is installed but has no share directory '
            f'(no share/{pkg}/package.xml under {sys.prefix} or AMENT_PREFIX_PATH)'
        )
    raise ResolveError(
        f'package {pkg!r} not found (no share/{pkg} in AMENT_PREFIX_PATH or {sys.prefix}, '
        'and no installed Python distribution of that name)'
    )


def _console_scripts(dist) -> dict:
    return {ep.name: ep for ep in dist.entry_points if ep.group == 'console_scripts'}


def find_node_executable(pkg: str, exe: str) -> list[str]:
    """The command (argv prefix) that runs executable ``exe`` of package ``pkg``."""
    available: list[str] = []
    found_pkg = False
    dist = _distribution(pkg)
    if dist is not None:
        found_pkg = True
        scripts = _console_scripts(dist)
        available.extend(sorted(scripts))
        if exe in scripts:
            for folder in (sysconfig.get_path('scripts'), os.path.join(sys.prefix, 'lib', pkg)):
                path = os.path.join(folder, exe)
                if _is_executable_file(path):
                    return [path]
            ep = scripts[exe]
            call = (
                f'import sys, importlib; obj = importlib.import_module({ep.module!r})\n'
                f'for part in {ep.attr!r}.split("."): obj = getattr(obj, part)\n'
                f'sys.argv[0] = {exe!r}; sys.exit(obj())'
            )
            return [sys.executable, '-c', call]
    for prefix in [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]:
        lib = os.path.join(prefix, 'lib', pkg)
        if os.path.isdir(lib) or os.path.isdir(os.path.join(prefix, 'share', pkg)):
            found_pkg = True
            path = os.path.join(lib, exe)
            if _is_executable_file(path):
                return [path]
            if os.path.isdir(lib):
                available.extend(
                    sorted(n for n in os.listdir(lib) if _is_executable_file(os.path.join(lib, n)))
                )
    if not found_pkg:
        raise ResolveError(
            f'package {pkg!r} not found: no installed Python distribution {pkg!r} and '
            f'no lib/{pkg} in AMENT_PREFIX_PATH ({os.environ.get("AMENT_PREFIX_PATH", "unset")})'
        )
    listing = ', '.join(sorted(set(available))) or 'none'
    raise ResolveError(f'executable {exe!r} not found in package {pkg!r} (available: {listing})')


def find_program(exe: str) -> str:
    """A plain program: an existing path, or a name on PATH."""
    if os.sep in exe:
        if _is_executable_file(exe):
            return exe
        raise ResolveError(f'executable {exe!r} does not exist or is not executable')
    path = shutil.which(exe)
    if path is None:
        raise ResolveError(f'executable {exe!r} not found on PATH')
    return path
