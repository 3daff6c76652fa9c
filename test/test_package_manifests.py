"""Every package's package.xml declares what its Python code imports, as rosdep keys.

On a machine with ROS 2, ``rosdep install --from-paths src --ignore-src`` installs a package's
dependencies from its manifest alone, so a module imported but not declared is a node that fails
on that machine. Each package (any folder under src/ with a package.xml) is scanned with ``ast``:
the top-level names of its imports, less the standard library and the package's own modules, are
mapped to manifest keys by the one table below and must be declared with a fitting tag.

An import that the table does not know fails too: a new dependency needs its rosdep key chosen
(see rosdep.yaml for the keys this repository defines itself).
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from graphtest import REPO

SRC = REPO / 'src'

# import name -> the key that declares it in package.xml (a workspace package by its name, a ROS
# package by its name, a Python library by its rosdep key). Keys ending in -pip install with pip;
# those not in ros/rosdistro's rosdep/python.yaml are defined in this repository's rosdep.yaml.
IMPORT_KEYS: dict[str, str] = {
    # workspace packages
    'devbot': 'devbot',
    'toroidal_sim': 'toroidal_sim',
    'jetbot_driver': 'jetbot_driver',
    'action_selectors': 'action_selectors',
    'world_model_node': 'world_model_node',
    'devbot_explorer': 'devbot_explorer',
    'devbot_bringup': 'devbot_bringup',
    # ROS 2 packages
    'rclpy': 'rclpy',
    'builtin_interfaces': 'builtin_interfaces',
    'std_msgs': 'std_msgs',
    'std_srvs': 'std_srvs',
    'sensor_msgs': 'sensor_msgs',
    'geometry_msgs': 'geometry_msgs',
    'diagnostic_msgs': 'diagnostic_msgs',
    'rcl_interfaces': 'rcl_interfaces',
    'ament_index_python': 'ament_index_python',
    'launch': 'launch',
    'launch_ros': 'launch_ros',
    # Python libraries with a system package (rosdep/python.yaml)
    'numpy': 'python3-numpy',
    'yaml': 'python3-yaml',
    'cv2': 'python3-opencv',
    'matplotlib': 'python3-matplotlib',
    'torch': 'python3-torch',
    'torchvision': 'python3-torchvision',
    'tqdm': 'python3-tqdm',
    'PIL': 'python3-pil',
    'websockets': 'python3-websockets',
    'ruamel': 'python3-ruamel.yaml',
    'setuptools': 'python3-setuptools',
    'pytest': 'python3-pytest',
    # Python libraries from PyPI only (rosdep/python.yaml)
    'timm': 'python3-timm-pip',
    'wandb': 'python3-wandb-pip',
    'rosbags': 'python3-rosbags-pip',
    'mcap_ros2': 'mcap-ros2-support',
    # Python libraries from PyPI only (this repository's rosdep.yaml)
    'rpyc': 'python3-rpyc-pip',
    'mcap': 'python3-mcap-pip',
    'foxglove': 'python3-foxglove-sdk-pip',
    'ipywidgets': 'python3-ipywidgets-pip',
    'IPython': 'python3-ipython-pip',
    'lz4': 'python3-lz4-pip',
    'zstandard': 'python3-zstandard-pip',
    'backports': 'python3-backports.zstd-pip',
}

# imports that no manifest can declare, with the reason
NOT_DECLARED: dict[str, str] = {
    'jetbot': "the JetBot's own library: only on the robot, for jetbot_server (imported there "
    'with a clear error elsewhere)',
    'graphtest': "the repository's test helpers (test/graphtest.py, on pytest's pythonpath)",
}

# (package, workspace package its tests import) that cannot be a <test_depend>: the imported
# package depends on the importing one, and colcon refuses to order a cycle, test edges included
TEST_ONLY_CYCLES: dict[tuple[str, str], str] = {
    ('devbot', 'toroidal_sim'): 'test_bag.py records the dot world; toroidal_sim uses devbot',
}

# tags that satisfy each kind of use
RUN_TAGS = ('exec_depend', 'depend')
TEST_TAGS = ('test_depend', *RUN_TAGS)
BUILD_TAGS = ('buildtool_depend', 'build_depend', 'depend')


@dataclass
class Package:
    name: str
    root: Path
    depends: dict[str, set[str]]  # tag -> keys

    def declared(self, tags: tuple[str, ...]) -> set[str]:
        return set().union(*(self.depends.get(tag, set()) for tag in tags))


def packages() -> list[Package]:
    found = []
    for manifest in sorted(SRC.glob('*/package.xml')):
        tree = ET.parse(manifest).getroot()
        depends: dict[str, set[str]] = {}
        for element in tree:
            if element.tag.endswith('depend'):
                depends.setdefault(element.tag, set()).add((element.text or '').strip())
        found.append(Package(tree.findtext('name'), manifest.parent, depends))
    return found


def top_level_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one Python file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names


def own_modules(root: Path) -> set[str]:
    """Top-level modules a package's own folder provides (its Python packages and modules)."""
    return {p.parent.name for p in root.glob('*/__init__.py')} | {p.stem for p in root.glob('*.py')}


def use_of(root: Path, path: Path) -> str:
    """'build' for setup.py, 'test' for files under test/, 'run' for the rest."""
    rel = path.relative_to(root)
    if rel.parts == ('setup.py',):
        return 'build'
    return 'test' if rel.parts[0] == 'test' else 'run'


PACKAGES = packages()


def test_packages_are_found():
    names = {p.name for p in PACKAGES}
    assert {'devbot', 'toroidal_sim', 'jetbot_driver', 'action_selectors'} <= names, names
    for package in PACKAGES:
        assert package.name == package.root.name, f'{package.root}/package.xml names {package.name}'


@pytest.mark.parametrize('package', PACKAGES, ids=[p.name for p in PACKAGES])
def test_every_import_is_declared_in_package_xml(package):
    tags = {'build': BUILD_TAGS, 'test': TEST_TAGS, 'run': RUN_TAGS}
    own = own_modules(package.root)
    problems = []
    for path in sorted(package.root.rglob('*.py')):
        use = use_of(package.root, path)
        for name in sorted(top_level_imports(path)):
            if name in sys.stdlib_module_names or name in own or name in NOT_DECLARED:
                continue
            where = f'{package.name}: {path.relative_to(REPO)} imports {name!r}'
            key = IMPORT_KEYS.get(name)
            if use == 'test' and (package.name, key) in TEST_ONLY_CYCLES:
                continue
            if key is None:
                problems.append(f'{where}, which has no rosdep key in IMPORT_KEYS')
            elif key not in package.declared(tags[use]):
                problems.append(
                    f'{where} ({use} use) but package.xml has no '
                    f'{" / ".join(f"<{t}>{key}</{t}>" for t in tags[use])}'
                )
    assert not problems, '\n'.join(problems)


def test_test_only_cycles_are_real_and_undeclared():
    by_name = {p.name: p for p in PACKAGES}
    for (name, imported), why in TEST_ONLY_CYCLES.items():
        if name not in by_name or imported not in by_name:
            continue
        assert name in by_name[imported].declared(RUN_TAGS + BUILD_TAGS), (
            f'{imported} no longer depends on {name} ({why}): declare <test_depend>{imported}'
            f'</test_depend> in {name} and drop the TEST_ONLY_CYCLES entry'
        )
        assert imported not in by_name[name].declared(TEST_TAGS + BUILD_TAGS), (
            f'{name} declares {imported}, which depends on {name}: colcon cannot order the cycle'
        )


def test_repository_rosdep_yaml_defines_the_pip_keys_it_is_cited_for():
    """Keys marked as this repository's own resolve to a pip package in rosdep.yaml."""
    rules = yaml.safe_load((REPO / 'rosdep.yaml').read_text())
    own = ['rpyc', 'mcap', 'foxglove', 'lz4', 'zstandard', 'backports']
    for name in own:
        key = IMPORT_KEYS[name]
        assert key in rules, f'rosdep.yaml lacks {key}'
        for os_name in ('ubuntu', 'debian'):
            packages = rules[key][os_name]['pip']['packages']
            assert packages and all(isinstance(p, str) for p in packages), (key, os_name)
    used = set().union(*(p.declared(TEST_TAGS + BUILD_TAGS) for p in PACKAGES))
    assert set(rules) <= used, f'rosdep.yaml defines keys no package uses: {set(rules) - used}'
