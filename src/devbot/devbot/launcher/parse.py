"""ROS 2 YAML launch files (launch_yaml format, a documented subset) -> a flat list of processes.

A launch file is::

    launch:
    - arg: {name: robot, default: toroidal_dot, description: which robot}
    - node: {pkg: toroidal_sim, exec: toroidal_sim_node, name: sim, namespace: $(var robot)}

Every entity is a one-key mapping (tag -> attributes). Entities are visited in order, exactly
like ``ros2 launch`` visits them: ``arg``/``let`` set launch configurations that later
substitutions (``$(var ...)``) see, ``group`` and ``include`` open a scope, and ``node``/
``executable`` entries become :class:`ProcessSpec` s. Everything (substitutions, packages,
executables, params files, include files) is resolved here, so every error is reported with
its file and line before any process starts.

Supported tags and attributes are listed in :data:`TAG_ATTRIBUTES` with the type launch_yaml
wants for each (all tags also take ``if``/``unless``); any other tag or attribute is an error
naming it. launch_yaml converts no types, so the YAML type of a value is checked the way it
checks it: a string where a string is wanted (``default: "5"``, not ``default: 5``), a YAML float
for a timeout (``sigterm_timeout: 30.0``: ``"30"`` makes ros2 launch fail and ``30`` is an int),
a YAML boolean for ``shell``/``scoped`` (ros2 launch would take any string, even ``"false"``,
as true).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Union

import yaml

from . import resolve
from . import substitutions as subst
from .substitutions import Context, SubstitutionError, substitute, to_bool

OUTPUT_MODES = ('screen', 'log', 'both')
DEFAULT_OUTPUT = 'log'  # ros2 launch's default: stdout to the log file, stderr to screen and log
DEFAULT_SIGTERM_TIMEOUT = 5.0
DEFAULT_SIGKILL_TIMEOUT = 5.0

# attribute types, as launch_yaml reads them
STR = 'str'  # a string; substitutions are evaluated
TEXT = 'text'  # a string taken as it is (backslash escapes only): arg name, description, choice
FLOAT = 'float'  # a YAML float
BOOL = 'bool'  # a YAML boolean
ENTITIES = 'entities'  # a list of mappings
VALUE = 'value'  # a parameter value: a YAML scalar or a list of them
TYPE_TEXT = {
    STR: 'a string',
    TEXT: 'a string',
    FLOAT: 'a YAML float such as 30.0',
    BOOL: 'true or false (a YAML boolean)',
    ENTITIES: 'a list of mappings',
    VALUE: 'a YAML scalar or a list of scalars',
}

_CONDITION = {'if': STR, 'unless': STR}
_PROCESS_COMMON = {
    'name': STR,
    'output': STR,
    'env': ENTITIES,
    'cwd': STR,
    'on_exit': STR,
    'sigterm_timeout': FLOAT,
    'sigkill_timeout': FLOAT,
}
TAG_ATTRIBUTES: dict[str, dict[str, str]] = {
    'arg': {'name': TEXT, 'default': STR, 'description': TEXT, 'choice': ENTITIES},
    'let': {'name': STR, 'value': STR},
    'node': {
        'pkg': STR,
        'exec': STR,
        'namespace': STR,
        'param': ENTITIES,
        'remap': ENTITIES,
        'args': STR,
        'ros_args': STR,
        'exec_name': STR,
        **_PROCESS_COMMON,
    },
    'executable': {'cmd': STR, 'shell': BOOL, **_PROCESS_COMMON},
    'include': {'file': STR, 'arg': ENTITIES},
    'group': {'children': ENTITIES, 'scoped': BOOL},
    'push-ros-namespace': {'namespace': STR},
}
# the attributes of the mappings inside list attributes
ENTRY_ATTRIBUTES: dict[str, dict[str, str]] = {
    'arg choice': {'value': TEXT},
    'include arg': {'name': STR, 'value': STR},
    'env': {'name': STR, 'value': STR},
    'remap': {'from': STR, 'to': STR},
    'param': {'name': STR, 'value': VALUE, 'param': ENTITIES},
    'param from': {'from': STR},
}
TAG_ALIASES = {'push_ros_namespace': 'push-ros-namespace'}


def _describe(value: Any) -> str:
    if value is None:
        return 'nothing'
    kind = {str: 'the string', bool: 'the boolean', int: 'the integer', float: 'the float'}
    if type(value) in kind:
        return f'{kind[type(value)]} {value!r}'
    return {list: 'a list', dict: 'a mapping'}.get(type(value), type(value).__name__) + (
        f' {value!r}' if len(repr(value)) < 60 else ''
    )


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def type_error(value: Any, kind: str) -> str | None:
    """Why ``value`` is not of attribute type ``kind`` (None when it is), as launch_yaml checks."""
    if kind in (STR, TEXT):
        ok = isinstance(value, str)
    elif kind == FLOAT:
        ok = isinstance(value, float)
    elif kind == BOOL:
        ok = isinstance(value, bool)
    elif kind == ENTITIES:
        ok = isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    else:  # VALUE: a scalar, or a list of one scalar type (strings may mix in: substitutions)
        if isinstance(value, list):
            kinds = {type(v) for v in value if not isinstance(v, str)}
            ok = all(_is_scalar(v) for v in value) and len(kinds) <= 1
        else:
            ok = _is_scalar(value)
    if ok:
        return None
    hint = ''
    if kind == FLOAT and isinstance(value, str):
        hint = (
            ' (launch_yaml converts no types: ros2 launch fails on a string here; '
            'write the number unquoted with a decimal point)'
        )
    elif kind == FLOAT and isinstance(value, int) and not isinstance(value, bool):
        hint = f' (launch_yaml wants a float here: write {float(value)!r}, not {value})'
    elif kind == BOOL and isinstance(value, str):
        hint = (
            ' (launch_yaml converts no types: ros2 launch takes any string, even "false", '
            'as true; write true or false unquoted)'
        )
    elif kind in (STR, TEXT) and _is_scalar(value):
        hint = f' (launch_yaml wants a string here: quote it, "{_yaml_scalar_text(value)}")'
    return f'must be {TYPE_TEXT[kind]}, got {_describe(value)}{hint}'


def unescape(text: str) -> str:
    """Backslash escapes of launch frontends: ``\\x`` -> ``x``."""
    return re.sub(r'\\(.)', r'\1', text)


class LaunchError(Exception):
    """A launch file problem, with the file/line where it is (and the include chain)."""

    def __init__(self, message: str, where: 'Where | None' = None):
        self.message = message
        self.where = where
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.where is None:
            return self.message
        return f'{self.where}: {self.message}' + self.where.chain_text()


@dataclass(frozen=True)
class Where:
    file: str
    line: int | None
    included_from: tuple['Where', ...] = ()

    def __str__(self) -> str:
        return f'{self.file}:{self.line}' if self.line else self.file

    def chain_text(self) -> str:
        return ''.join(f'\n  included from {w}' for w in self.included_from)


# ---------------------------------------------------------------------------------------------
# the description


@dataclass
class ParamsFile:
    """``param: [{from: FILE}]``: passed to the node as ``--params-file FILE``."""

    path: str


@dataclass
class InlineParams:
    """Consecutive ``param: [{name, value}]`` entries, written to a temporary params file."""

    values: dict[str, Any] = field(default_factory=dict)


ParamsEntry = Union[ParamsFile, InlineParams]


@dataclass
class ProcessSpec:
    """One process to start: a ``node`` or an ``executable``, fully resolved."""

    kind: str  # 'node' | 'executable'
    label: str  # the name its output lines are prefixed with
    cmd: list[str]  # program and its own arguments (for nodes: before --ros-args)
    where: Where
    node_name: str | None = None
    namespace: str | None = None  # absolute ('/a/b') or None
    params: list[ParamsEntry] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    ros_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    shell: bool = False
    output: str = DEFAULT_OUTPUT
    on_exit_shutdown: bool = False
    sigterm_timeout: float = DEFAULT_SIGTERM_TIMEOUT
    sigkill_timeout: float = DEFAULT_SIGKILL_TIMEOUT


@dataclass
class ArgInfo:
    """A declared launch argument (``--show-args``)."""

    name: str
    default: str | None
    description: str
    choices: list[str]
    where: Where


@dataclass
class LaunchDescription:
    processes: list[ProcessSpec]
    arguments: list[ArgInfo]  # declared (and visited) arguments, in order of declaration
    configurations: dict[str, str]  # the top-level file's launch configurations at its end


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict):
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    key_lines: dict

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f'duplicate key {key!r}', key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor('tag:yaml.org,2002:map', _construct_map)


def _load_yaml(path: str, where: Where) -> Any:
    try:
        with open(path, encoding='utf-8') as f:
            return yaml.load(f, Loader=_LineLoader)  # noqa: S506 (SafeLoader subclass)
    except OSError as exc:
        raise LaunchError(f'cannot read launch file: {exc.strerror}', where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        line = mark.line + 1 if mark is not None else None
        raise LaunchError(f'invalid YAML: {exc}', Where(path, line, where.included_from)) from None


# ---------------------------------------------------------------------------------------------
# the walker


@dataclass
class _Scope:
    configurations: dict[str, str]
    namespace: str  # pushed ROS namespace ('' = none)

    def copy(self) -> '_Scope':
        return _Scope(dict(self.configurations), self.namespace)


def _yaml_scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def join_namespace(base: str, ns: str) -> str:
    """Namespace ``ns`` pushed inside ``base`` (an absolute ``ns`` replaces it); '' means none."""
    ns = ns.strip()
    if ns.startswith('/'):
        full = ns
    elif ns:
        full = base.rstrip('/') + '/' + ns
    else:
        full = base
    if not full:
        return ''
    return '/' + '/'.join(part for part in full.split('/') if part)


def typed_param_value(text: str) -> Any:
    """A param ``value`` string typed like ros2 launch types it: YAML scalars and lists keep
    their type."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (bool, int, float, str)):
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, (bool, int, float, str)) for v in value)
    ):
        return _homogeneous(value) if _homogeneous(value) is not None else text
    return text


def _homogeneous(values: list) -> list | None:
    kinds = {type(v) for v in values}
    if len(kinds) == 1:
        return list(values)
    if kinds <= {int, float}:
        return [float(v) for v in values]
    return None


class _Walker:
    def __init__(self, cli_args: dict[str, str]):
        self.cli_args = dict(cli_args)
        self.processes: list[ProcessSpec] = []
        self.arguments: dict[str, ArgInfo] = {}
        self.labels: dict[str, int] = {}
        self.anon_names: dict[str, str] = {}  # $(anon NAME): one value per NAME in a launch

    # -- helpers ------------------------------------------------------------------------------
    def _ctx(self, scope: _Scope, where: Where) -> Context:
        return Context(
            scope.configurations,
            where.file,
            resolve.find_package_share,
            resolve.find_package_prefix,
            anon_names=self.anon_names,
        )

    def _sub(self, value: Any, scope: _Scope, where: Where, what: str) -> str:
        if isinstance(value, (dict, list)) or value is None:
            raise LaunchError(
                f'{what}: expected a string, got {_describe(value)}',
                where,
            )
        try:
            return substitute(_yaml_scalar_text(value), self._ctx(scope, where))
        except SubstitutionError as exc:
            raise LaunchError(f'{what}: {exc}', where) from None

    def _required(self, attrs: _Map, name: str, tag: str, where: Where) -> Any:
        if name not in attrs or attrs[name] is None:
            raise LaunchError(f'{tag}: missing required attribute {name!r}', where)
        return attrs[name]

    def _entries(self, value: Any, tag: str, attr: str, where: Where) -> list[_Map]:
        """An attribute holding a list of mappings (param, remap, env, arg, choice)."""
        if not isinstance(value, list) or not all(isinstance(v, _Map) for v in value):
            raise LaunchError(f'{tag}: attribute {attr!r} must be a list of mappings', where)
        return value

    def _check_keys(self, mapping: _Map, allowed: dict[str, str], what: str, where: Where) -> None:
        """Every attribute of ``mapping`` is known and of the type launch_yaml wants."""
        for key, value in mapping.items():
            w = Where(where.file, mapping.line_of(key), where.included_from)
            if key not in allowed:
                hint = ''
                if what == 'group' and key == 'namespace':
                    hint = (
                        ' (launch_yaml puts a namespace on a group with a '
                        '"- push-ros-namespace: {namespace: NS}" child)'
                    )
                raise LaunchError(
                    f'{what}: unsupported attribute {key!r}{hint} '
                    f'(supported: {", ".join(allowed)})',
                    w,
                )
            problem = type_error(value, allowed[key])
            if problem is not None:
                raise LaunchError(f'{what}: attribute {key!r} {problem}', w)

    # -- files and entity lists ---------------------------------------------------------------
    def walk_file(self, path: str, scope: _Scope, included_from: tuple[Where, ...]) -> _Scope:
        where = Where(path, None, included_from)
        data = _load_yaml(path, where)
        if not isinstance(data, _Map) or list(data) != ['launch']:
            raise LaunchError(
                'a YAML launch file must be a mapping with the single key "launch" '
                '(launch: [ ...entities... ])',
                Where(path, getattr(data, 'line', 1), included_from),
            )
        entities = data['launch']
        if entities is None:
            return scope
        if not isinstance(entities, list):
            raise LaunchError(
                '"launch" must hold a list of entities',
                Where(path, data.line_of('launch'), included_from),
            )
        self.walk_entities(entities, scope, path, included_from, data.line_of('launch'))
        return scope

    def walk_entities(
        self,
        entities: list,
        scope: _Scope,
        path: str,
        included_from: tuple[Where, ...],
        parent_line: int,
    ) -> None:
        for item in entities:
            line = item.line if isinstance(item, _Map) else parent_line
            if not isinstance(item, _Map) or len(item) != 1:
                raise LaunchError(
                    'each entity must be a one-key mapping like "- node: {...}"',
                    Where(path, line, included_from),
                )
            tag = next(iter(item))
            where = Where(path, item.line_of(tag), included_from)
            attrs = item[tag]
            canonical = TAG_ALIASES.get(tag, tag)
            if canonical not in TAG_ATTRIBUTES:
                raise LaunchError(
                    f'unsupported tag {tag!r} (supported: {", ".join(TAG_ATTRIBUTES)})', where
                )
            if not isinstance(attrs, _Map):
                raise LaunchError(f'{tag}: expected a mapping of attributes', where)
            self._check_keys(attrs, {**TAG_ATTRIBUTES[canonical], **_CONDITION}, tag, where)
            if not self._condition(attrs, scope, where, tag):
                continue
            getattr(self, '_tag_' + canonical.replace('-', '_'))(attrs, scope, where)

    def _condition(self, attrs: _Map, scope: _Scope, where: Where, tag: str) -> bool:
        if 'if' in attrs and 'unless' in attrs:
            raise LaunchError(f'{tag}: use either "if" or "unless", not both', where)
        for key, wanted in (('if', True), ('unless', False)):
            if key in attrs:
                w = Where(where.file, attrs.line_of(key), where.included_from)
                text = self._sub(attrs[key], scope, w, f'{tag} {key}')
                try:
                    return to_bool(text, f'{tag} {key}') == wanted
                except SubstitutionError as exc:
                    raise LaunchError(str(exc), w) from None
        return True

    # -- tags -----------------------------------------------------------------------------------
    def _tag_arg(self, attrs: _Map, scope: _Scope, where: Where) -> None:
        # name, description and choices are taken as written (no substitutions), as in launch
        name = unescape(self._required(attrs, 'name', 'arg', where))
        default = attrs.get('default')
        description = unescape(attrs.get('description') or '')
        choices = []
        if 'choice' in attrs:
            for entry in self._entries(attrs['choice'], 'arg', 'choice', where):
                w = Where(where.file, entry.line, where.included_from)
                self._check_keys(entry, ENTRY_ATTRIBUTES['arg choice'], 'arg choice', w)
                choices.append(unescape(self._required(entry, 'value', 'arg choice', w)))
        if name not in self.arguments:
            self.arguments[name] = ArgInfo(
                name,
                default,
                description,
                choices,
                where,
            )
        if name not in scope.configurations:
            if default is None:
                raise LaunchError(
                    f'launch argument {name!r} is required (it has no default): '
                    f'pass {name}:=VALUE' + (f' ({description})' if description else ''),
                    where,
                )
            scope.configurations[name] = self._sub(default, scope, where, f'arg {name!r} default')
        if choices and scope.configurations[name] not in choices:
            raise LaunchError(
                f'launch argument {name!r} is {scope.configurations[name]!r}, '
                f'expected one of: {", ".join(choices)}',
                where,
            )

    def _tag_let(self, attrs: _Map, scope: _Scope, where: Where) -> None:
        name = self._sub(self._required(attrs, 'name', 'let', where), scope, where, 'let name')
        scope.configurations[name] = self._sub(
            self._required(attrs, 'value', 'let', where), scope, where, 'let value'
        )

    def _tag_push_ros_namespace(self, attrs: _Map, scope: _Scope, where: Where) -> None:
        ns = self._sub(
            self._required(attrs, 'namespace', 'push-ros-namespace', where),
            scope,
            where,
            'namespace',
        )
        scope.namespace = join_namespace(scope.namespace, ns)

    def _tag_group(self, attrs: _Map, scope: _Scope, where: Where) -> None:
        scoped = attrs.get('scoped', True)
        children = self._required(attrs, 'children', 'group', where)
        inner = scope.copy() if scoped else scope
        self.walk_entities(children, inner, where.file, where.included_from, where.line or 0)

    def _tag_include(self, attrs: _Map, scope: _Scope, where: Where) -> None:
        path = self._sub(
            self._required(attrs, 'file', 'include', where), scope, where, 'include file'
        )
        inner = scope.copy()
        if 'arg' in attrs:
            for entry in self._entries(attrs['arg'], 'include', 'arg', where):
                w = Where(where.file, entry.line, where.included_from)
                self._check_keys(entry, ENTRY_ATTRIBUTES['include arg'], 'include arg', w)
                name = self._sub(
                    self._required(entry, 'name', 'include arg', w), scope, w, 'include arg name'
                )
                inner.configurations[name] = self._sub(
                    self._required(entry, 'value', 'include arg', w),
                    scope,
                    w,
                    f'include arg {name!r}',
                )
        if not path.endswith(('.yaml', '.yml')):
            raise LaunchError(
                f'include: only YAML launch files can be included, not {path!r}', where
            )
        if not os.path.isfile(path):
            raise LaunchError(f'include: launch file {path!r} not found', where)
        chain = (where,) + where.included_from
        if any(os.path.abspath(w.file) == os.path.abspath(path) for w in chain):
            raise LaunchError(f'include: {path!r} includes itself (include cycle)', where)
        self.walk_file(path, inner, chain)

    def _tag_node(self, attrs: _Map, scope: _Scope, where: Where) -> None:
        exe = self._sub(self._required(attrs, 'exec', 'node', where), scope, where, 'node exec')
        pkg = self._sub(attrs['pkg'], scope, where, 'node pkg') if 'pkg' in attrs else None
        try:
            if pkg:
                cmd = resolve.find_node_executable(pkg, exe)
            else:  # no pkg: exec is a program path or a name on PATH (as in launch_ros)
                resolve.find_program(exe)
                cmd = [exe]
        except resolve.ResolveError as exc:
            raise LaunchError(f'node: {exc}', where) from None
        if 'args' in attrs:
            cmd += self._split(attrs['args'], scope, where, 'node args')
        node_name = self._sub(attrs['name'], scope, where, 'node name') if 'name' in attrs else None
        ns = (
            self._sub(attrs['namespace'], scope, where, 'node namespace')
            if 'namespace' in attrs
            else ''
        )
        namespace = join_namespace(scope.namespace, ns) or None
        if 'exec_name' in attrs:
            label = self._sub(attrs['exec_name'], scope, where, 'node exec_name')
        else:
            label = node_name or os.path.basename(exe)
        spec = ProcessSpec('node', label, cmd, where, node_name=node_name, namespace=namespace)
        if 'param' in attrs:
            spec.params = self._params(attrs['param'], scope, where)
        if 'remap' in attrs:
            for entry in self._entries(attrs['remap'], 'node', 'remap', where):
                w = Where(where.file, entry.line, where.included_from)
                self._check_keys(entry, ENTRY_ATTRIBUTES['remap'], 'remap', w)
                spec.remaps.append(
                    (
                        self._sub(
                            self._required(entry, 'from', 'remap', w), scope, w, 'remap from'
                        ),
                        self._sub(self._required(entry, 'to', 'remap', w), scope, w, 'remap to'),
                    )
                )
        if 'ros_args' in attrs:
            spec.ros_args = self._split(attrs['ros_args'], scope, where, 'node ros_args')
        self._process_common(spec, attrs, scope, where, 'node')

    def _tag_executable(self, attrs: _Map, scope: _Scope, where: Where) -> None:
        shell = attrs.get('shell', False)
        cmd = self._split(
            self._required(attrs, 'cmd', 'executable', where), scope, where, 'executable cmd'
        )
        if not cmd:
            raise LaunchError('executable: "cmd" is empty', where)
        if not shell:
            try:
                resolve.find_program(cmd[0])
            except resolve.ResolveError as exc:
                raise LaunchError(f'executable: {exc}', where) from None
        label = (
            self._sub(attrs['name'], scope, where, 'executable name')
            if 'name' in attrs
            else os.path.basename(cmd[0])
        )
        spec = ProcessSpec('executable', label, cmd, where, shell=shell)
        self._process_common(spec, attrs, scope, where, 'executable')

    # -- pieces of node/executable --------------------------------------------------------------
    def _process_common(
        self, spec: ProcessSpec, attrs: _Map, scope: _Scope, where: Where, tag: str
    ) -> None:
        if 'output' in attrs:
            spec.output = self._sub(attrs['output'], scope, where, f'{tag} output')
            if spec.output not in OUTPUT_MODES:
                raise LaunchError(
                    f'{tag}: output must be one of {", ".join(OUTPUT_MODES)}, got {spec.output!r}',
                    where,
                )
        if 'on_exit' in attrs:
            value = attrs['on_exit']
            if value != 'shutdown':
                raise LaunchError(f'{tag}: on_exit supports only "shutdown", got {value!r}', where)
            spec.on_exit_shutdown = True
        if 'cwd' in attrs:
            spec.cwd = self._sub(attrs['cwd'], scope, where, f'{tag} cwd')
            if not os.path.isdir(spec.cwd):
                raise LaunchError(f'{tag}: cwd {spec.cwd!r} is not a directory', where)
        if 'env' in attrs:
            for entry in self._entries(attrs['env'], tag, 'env', where):
                w = Where(where.file, entry.line, where.included_from)
                self._check_keys(entry, ENTRY_ATTRIBUTES['env'], 'env', w)
                spec.env[
                    self._sub(self._required(entry, 'name', 'env', w), scope, w, 'env name')
                ] = self._sub(self._required(entry, 'value', 'env', w), scope, w, 'env value')
        for key in ('sigterm_timeout', 'sigkill_timeout'):
            if key in attrs:  # a float: _check_keys checked the type
                if attrs[key] < 0:
                    w = Where(where.file, attrs.line_of(key), where.included_from)
                    raise LaunchError(f'{tag}: attribute {key!r} must not be negative', w)
                setattr(spec, key, attrs[key])
        count = self.labels.get(spec.label, 0) + 1
        self.labels[spec.label] = count
        if count > 1:
            spec.label = f'{spec.label}-{count}'
        self.processes.append(spec)

    def _params(self, value: Any, scope: _Scope, where: Where) -> list[ParamsEntry]:
        result: list[ParamsEntry] = []
        for entry in self._entries(value, 'node', 'param', where):
            w = Where(where.file, entry.line, where.included_from)
            if 'from' in entry:
                self._check_keys(entry, ENTRY_ATTRIBUTES['param from'], 'param', w)
                path = self._sub(entry['from'], scope, w, 'param from')
                if not os.path.isfile(path):
                    raise LaunchError(f'param: params file {path!r} not found', w)
                result.append(ParamsFile(os.path.abspath(path)))
                continue
            if not result or not isinstance(result[-1], InlineParams):
                result.append(InlineParams())
            name, val = self._param_entry(entry, scope, w)
            result[-1].values[name] = val
        return result

    def _param_entry(self, entry: _Map, scope: _Scope, where: Where) -> tuple[str, Any]:
        self._check_keys(entry, ENTRY_ATTRIBUTES['param'], 'param', where)
        name = self._sub(self._required(entry, 'name', 'param', where), scope, where, 'param name')
        if ('value' in entry) == ('param' in entry):
            raise LaunchError(
                f'param {name!r}: give exactly one of "value", "param" (nested) or use "from"',
                where,
            )
        if 'param' in entry:
            nested = {}
            for child in self._entries(entry['param'], 'param', 'param', where):
                w = Where(where.file, child.line, where.included_from)
                key, val = self._param_entry(child, scope, w)
                nested[key] = val
            return name, nested
        return name, self._param_value(entry['value'], scope, where, name)

    def _param_value(self, raw: Any, scope: _Scope, where: Where, name: str) -> Any:
        if isinstance(raw, (bool, int, float)):
            return raw
        if isinstance(raw, str):
            return typed_param_value(self._sub(raw, scope, where, f'param {name!r}'))
        if isinstance(raw, list) and raw:
            values = [self._param_value(v, scope, where, name) for v in raw]
            if any(isinstance(v, (list, dict)) for v in values) or _homogeneous(values) is None:
                raise LaunchError(
                    f'param {name!r}: a list value must hold values of one type '
                    '(all ints/floats, all strings or all booleans)',
                    where,
                )
            return _homogeneous(values)
        raise LaunchError(f'param {name!r}: unsupported value {raw!r}', where)

    def _split(self, value: Any, scope: _Scope, where: Where, what: str) -> list[str]:
        """A command line, split like a shell; a substitution's value is never split or unquoted."""
        try:
            parts = subst.parse(value)
            ctx = self._ctx(scope, where)
            values = [subst.evaluate([p], ctx) for p in parts if not isinstance(p, str)]
            marks = iter(range(len(values)))
            template = ''.join(p if isinstance(p, str) else f'\0{next(marks)}\0' for p in parts)
            tokens = shlex.split(template)
        except (SubstitutionError, ValueError) as exc:
            raise LaunchError(f'{what}: {exc}', where) from None
        return [re.sub('\0([0-9]+)\0', lambda m: values[int(m.group(1))], t) for t in tokens]


def parse_launch_file(path: str, cli_args: dict[str, str] | None = None) -> LaunchDescription:
    """Read ``path`` (and its includes) with launch arguments ``cli_args``; raise LaunchError."""
    walker = _Walker(cli_args or {})
    scope = _Scope(dict(cli_args or {}), '')
    if not os.path.isfile(path):
        raise LaunchError(f'launch file {path!r} not found')
    walker.walk_file(path, scope, ())
    return LaunchDescription(
        walker.processes, list(walker.arguments.values()), scope.configurations
    )


def declared_arguments(path: str) -> list[ArgInfo]:
    """The ``arg`` entries of ``path`` and its groups (not evaluated; for ``--show-args``)."""
    where = Where(path, None)
    if not os.path.isfile(path):
        raise LaunchError(f'launch file {path!r} not found')
    data = _load_yaml(path, where)
    if not isinstance(data, _Map) or not isinstance(data.get('launch'), list):
        raise LaunchError(
            'a YAML launch file must be a mapping with the single key "launch"', where
        )
    found: list[ArgInfo] = []

    def visit(entities: list) -> None:
        for item in entities:
            if not isinstance(item, _Map) or len(item) != 1:
                continue
            tag = next(iter(item))
            attrs = item[tag]
            if not isinstance(attrs, _Map):
                continue
            if tag == 'arg' and 'name' in attrs:
                default = attrs.get('default')
                choices = [
                    _yaml_scalar_text(c.get('value'))
                    for c in attrs.get('choice') or []
                    if isinstance(c, _Map)
                ]
                found.append(
                    ArgInfo(
                        _yaml_scalar_text(attrs['name']),
                        None if default is None else _yaml_scalar_text(default),
                        _yaml_scalar_text(attrs.get('description') or ''),
                        choices,
                        Where(path, item.line_of(tag)),
                    )
                )
            elif tag == 'group' and isinstance(attrs.get('children'), list):
                visit(attrs['children'])

    visit(data['launch'])
    return found
