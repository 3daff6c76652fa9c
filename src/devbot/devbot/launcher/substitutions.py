"""``$(...)`` substitutions of ROS 2 launch files, parsed and evaluated without ``eval``.

Grammar (the launch frontend's, restricted to what devbot supports)::

    text         := (plain | substitution)*
    substitution := '$(' NAME (WS argument)* WS? ')'
    argument     := (plain-without-space-or-paren | quoted | substitution)+
    quoted       := "'" (plain | substitution)* "'"  |  '"' (plain | substitution)* '"'

Substitutions nest: ``$(var $(var which)_topic)``. Supported names:

    var NAME                  a launch argument / ``let`` value
    env NAME [DEFAULT]        environment variable (error when unset and no default)
    optenv NAME [DEFAULT]     environment variable, '' (or DEFAULT) when unset
    dirname                   directory of the launch file being read
    filename                  path of the launch file being read
    find-pkg-share PKG        share directory of a package
    find-pkg-prefix PKG       install prefix of a package
    equal A B / not-equal A B 'true'/'false' (booleans and numbers compare by value)
    not A / and A B / or A B  boolean logic on 'true'/'false'/'1'/'0'

``eval`` (Python expressions) is deliberately not supported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Union


class SubstitutionError(ValueError):
    """A malformed or unresolvable substitution (the caller adds file/line context)."""


@dataclass
class Sub:
    """One ``$(name arg ...)``; each argument is a list of parts (str or nested Sub)."""

    name: str
    args: list[list['Part']] = field(default_factory=list)


Part = Union[str, Sub]

_NAME_CHARS = set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-')


def parse(text: str) -> list[Part]:
    """Split ``text`` into literal strings and :class:`Sub` nodes."""
    parts, pos = _parse_sequence(text, 0, mode='top')
    assert pos == len(text)
    return parts


def _parse_sequence(text: str, pos: int, mode: str) -> tuple[list[Part], int]:
    """Parse until the end (mode 'top'), the end of an argument ('arg') or a quote char."""
    parts: list[Part] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            parts.append(''.join(buf))
            buf.clear()

    while pos < len(text):
        if text.startswith('$(', pos):
            flush()
            sub, pos = _parse_sub(text, pos + 2)
            parts.append(sub)
            continue
        ch = text[pos]
        if mode == 'arg':
            if ch.isspace() or ch == ')':
                break
            if ch in ('"', "'"):
                flush()
                inner, pos = _parse_sequence(text, pos + 1, mode=ch)
                if pos >= len(text):
                    raise SubstitutionError(f'unterminated quote {ch} in {text!r}')
                parts.extend(inner)
                pos += 1  # closing quote
                continue
        elif mode in ('"', "'") and ch == mode:
            break
        buf.append(ch)
        pos += 1
    flush()
    return parts, pos


def _parse_sub(text: str, pos: int) -> tuple[Sub, int]:
    start = pos
    while pos < len(text) and text[pos] in _NAME_CHARS:
        pos += 1
    name = text[start:pos]
    if not name:
        raise SubstitutionError(f'missing substitution name after "$(" in {text!r}')
    sub = Sub(name)
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            raise SubstitutionError(
                f'unterminated substitution "$({name} ..." in {text!r} (missing ")")'
            )
        if text[pos] == ')':
            return sub, pos + 1
        arg, pos = _parse_sequence(text, pos, mode='arg')
        sub.args.append(arg)


# ---------------------------------------------------------------------------------------------
# evaluation


class Context:
    """What substitutions can see: launch configurations, the current file, package lookup."""

    def __init__(
        self,
        configurations: dict[str, str] | None = None,
        current_file: str | None = None,
        find_share: Callable[[str], str] | None = None,
        find_prefix: Callable[[str], str] | None = None,
        environ: dict[str, str] | None = None,
    ):
        self.configurations = dict(configurations or {})
        self.current_file = current_file
        self.find_share = find_share
        self.find_prefix = find_prefix
        self.environ = os.environ if environ is None else environ


def substitute(text: str, ctx: Context) -> str:
    """Parse and evaluate ``text``."""
    return evaluate(parse(text), ctx)


def evaluate(parts: list[Part], ctx: Context) -> str:
    return ''.join(p if isinstance(p, str) else _evaluate_sub(p, ctx) for p in parts)


def _nargs(sub: Sub, low: int, high: int) -> None:
    n = len(sub.args)
    if not low <= n <= high:
        want = str(low) if low == high else f'{low}-{high}'
        raise SubstitutionError(f'$({sub.name}) takes {want} argument(s), got {n}')


def _evaluate_sub(sub: Sub, ctx: Context) -> str:
    args = [evaluate(a, ctx) for a in sub.args]
    name = sub.name
    if name == 'var':
        _nargs(sub, 1, 1)
        if args[0] not in ctx.configurations:
            known = ', '.join(sorted(ctx.configurations)) or 'none'
            raise SubstitutionError(
                f'$(var {args[0]}): launch argument {args[0]!r} is not set '
                f'(declare it with an arg or let entry; set here: {known})'
            )
        return ctx.configurations[args[0]]
    if name in ('env', 'optenv'):
        _nargs(sub, 1, 2)
        value = ctx.environ.get(args[0])
        if value is not None:
            return value
        if len(args) == 2:
            return args[1]
        if name == 'optenv':
            return ''
        raise SubstitutionError(
            f'$(env {args[0]}): environment variable {args[0]!r} is not set and no default is given'
        )
    if name in ('dirname', 'filename'):
        _nargs(sub, 0, 0)
        if ctx.current_file is None:
            raise SubstitutionError(f'$({name}) used outside a launch file')
        path = os.path.abspath(ctx.current_file)
        return os.path.dirname(path) if name == 'dirname' else path
    if name in ('find-pkg-share', 'find-pkg-prefix'):
        _nargs(sub, 1, 1)
        finder = ctx.find_share if name == 'find-pkg-share' else ctx.find_prefix
        if finder is None:
            raise SubstitutionError(f'$({name}) is not available here')
        try:
            return finder(args[0])
        except LookupError as exc:
            raise SubstitutionError(f'$({name} {args[0]}): {exc}') from None
    if name in ('equal', 'not-equal'):
        _nargs(sub, 2, 2)
        same = _comparable(args[0]) == _comparable(args[1])
        return _bool_text(same if name == 'equal' else not same)
    if name == 'not':
        _nargs(sub, 1, 1)
        return _bool_text(not to_bool(args[0], f'$(not {args[0]})'))
    if name in ('and', 'or'):
        _nargs(sub, 2, 2)
        a = to_bool(args[0], f'$({name} ...) first argument')
        b = to_bool(args[1], f'$({name} ...) second argument')
        return _bool_text(a and b if name == 'and' else a or b)
    if name == 'eval':
        raise SubstitutionError(
            '$(eval ...) is not supported (devbot never evaluates Python); '
            'use $(equal a b), $(not-equal a b), $(not x), $(and a b), $(or a b)'
        )
    raise SubstitutionError(
        f'unsupported substitution $({name} ...); supported: var, env, optenv, dirname, filename, '
        'find-pkg-share, find-pkg-prefix, equal, not-equal, not, and, or'
    )


def _bool_text(value: bool) -> str:
    return 'true' if value else 'false'


def _comparable(text: str):
    """Booleans and numbers compare by value ('1.0' equals '1', 'True' equals 'true')."""
    low = text.strip().lower()
    if low in ('true', 'false'):
        return low == 'true'
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def to_bool(text: str, what: str = 'condition') -> bool:
    """A launch condition value: true/false/1/0 (any case); anything else is an error."""
    low = str(text).strip().lower()
    if low in ('true', '1'):
        return True
    if low in ('false', '0'):
        return False
    raise SubstitutionError(f'{what}: expected true, false, 1 or 0, got {text!r}')
