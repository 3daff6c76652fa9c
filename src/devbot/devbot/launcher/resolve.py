"""Find packages, their files and node executables, the way ``ros2 launch`` / ``ros2 run`` do.

Packages resolve through the ament index, exactly as ``ament_index_python`` resolves them: the
first prefix of the search path holding ``share/ament_index/resource_index/packages/<pkg>`` is
the package's prefix, ``<prefix>/share/<pkg>`` its share directory. The search path is
``AMENT_PREFIX_PATH`` (a sourced colcon workspace or ROS 2 install) followed by this Python
environment's prefix when it holds an ament index (a venv: pip installs the index entries and
``share/<pkg>`` of non-editable installs there). ``devbot launch`` exports that search path as
``AMENT_PREFIX_PATH`` to the processes it starts, so they see the same packages.

A ``node`` entry names ``pkg`` and ``exec``. They resolve, in order, to:

1. ``<prefix>/lib/<pkg>/<exec>`` in the package's ament prefix (colcon installs ament_python
   console scripts there; this is what ``ros2 run`` starts);
2. a ``console_scripts`` entry point named ``exec`` of the installed Python distribution
   ``pkg`` (a pip/venv install, editable or not): the script in the environment's scripts
   directory, or, when no script file exists, ``python -c`` calling the entry point.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import shutil
import sys
import sysconfig

PACKAGE_INDEX = os.path.join('share', 'ament_index', 'resource_index', 'packages')


class ResolveError(LookupError):
    """A package, executable or file that cannot be found."""


def ament_prefixes(environ: dict[str, str] | None = None) -> list[str]:
    """The ament search path: ``AMENT_PREFIX_PATH``, then this environment's prefix when it
    holds an ament index (and is not in the list yet)."""
    environ = os.environ if environ is None else environ
    prefixes = [p for p in environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    if os.path.isdir(os.path.join(sys.prefix, PACKAGE_INDEX)) and not any(
        os.path.realpath(p) == os.path.realpath(sys.prefix) for p in prefixes
    ):
        prefixes.append(sys.prefix)
    return prefixes


def ament_prefix_path(environ: dict[str, str] | None = None) -> str:
    """:func:`ament_prefixes` as an ``AMENT_PREFIX_PATH`` value (for the processes started)."""
    return os.pathsep.join(ament_prefixes(environ))


def _not_found(pkg: str, also: str = '') -> ResolveError:
    prefixes = ament_prefixes()
    searched = ', '.join(prefixes) if prefixes else 'nothing: AMENT_PREFIX_PATH is not set'
    return ResolveError(
        f'package {pkg!r} not found in the ament index (searched {searched}){also}; in a '
        'colcon workspace build it and source install/setup.bash, in the venv run make setup'
    )


def find_package_prefix(pkg: str) -> str:
    """The install prefix of ``pkg`` (``$(find-pkg-prefix pkg)``)."""
    for prefix in ament_prefixes():
        if os.path.isfile(os.path.join(prefix, PACKAGE_INDEX, pkg)):
            return prefix
    raise _not_found(pkg)


def find_package_share(pkg: str) -> str:
    """The share directory of ``pkg`` (``$(find-pkg-share pkg)``)."""
    return os.path.join(find_package_prefix(pkg), 'share', pkg)


def find_package_file(pkg: str, file_name: str) -> str:
    """The file named ``file_name`` anywhere in the share directory of ``pkg`` (the
    ``<pkg> <file>`` form of ``ros2 launch``); an error when there is none or more than one."""
    share = find_package_share(pkg)
    found = sorted(
        os.path.join(root, name)
        for root, _dirs, files in os.walk(share)
        for name in files
        if name == file_name
    )
    if not found:
        raise ResolveError(
            f'file {file_name!r} not found in the share directory of package {pkg!r} ({share})'
        )
    if len(found) > 1:
        raise ResolveError(
            f'file {file_name!r} is in the share directory of package {pkg!r} more than once: '
            + ', '.join(found)
        )
    return found[0]


def _distribution(pkg: str):
    try:
        return metadata.distribution(pkg)
    except metadata.PackageNotFoundError:
        return None


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _console_scripts(dist) -> dict:
    return {ep.name: ep for ep in dist.entry_points if ep.group == 'console_scripts'}


def find_node_executable(pkg: str, exe: str) -> list[str]:
    """The command (argv prefix) that runs executable ``exe`` of package ``pkg``."""
    available: list[str] = []
    try:
        lib = os.path.join(find_package_prefix(pkg), 'lib', pkg)
    except ResolveError:
        lib = None
    if lib is not None:
        path = os.path.join(lib, exe)
        if _is_executable_file(path):
            return [path]
        if os.path.isdir(lib):
            available.extend(
                n for n in os.listdir(lib) if _is_executable_file(os.path.join(lib, n))
            )
    dist = _distribution(pkg)
    if dist is not None:
        scripts = _console_scripts(dist)
        available.extend(scripts)
        if exe in scripts:
            path = os.path.join(sysconfig.get_path('scripts'), exe)
            if _is_executable_file(path):
                return [path]
            ep = scripts[exe]
            call = (
                f'import sys, importlib; obj = importlib.import_module({ep.module!r})\n'
                f'for part in {ep.attr!r}.split("."): obj = getattr(obj, part)\n'
                f'sys.argv[0] = {exe!r}; sys.exit(obj())'
            )
            return [sys.executable, '-c', call]
    if lib is None and dist is None:
        raise _not_found(pkg, f' and no Python distribution {pkg!r} is installed')
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
