"""``$(...)`` substitutions of ROS 2 launch files, parsed and evaluated without ``eval``.

The grammar is the launch frontend's::

    template     := (text | substitution)*
    substitution := '$(' NAME (' ' argument)* ')'       one space before each argument
    NAME         := letter (letter | digit | '_' | '-')*
    argument     := (unquoted-text | substitution)+ | "'" template "'" | '"' template '"'

A backslash makes the next character plain text (``\\$(`` is not a substitution, ``\\)`` in
an unquoted argument is a parenthesis). Substitutions nest: ``$(var $(var which)_topic)``.

Supported, with the names and meanings of ROS 2 launch (:data:`SUPPORTED`)::

    var NAME [DEFAULT]        a launch argument / ``let`` value (DEFAULT when it is not set)
    env NAME [DEFAULT]        environment variable (error when unset and no default)
    dirname / filename        directory / path of the launch file being read
    find-pkg-share PKG        share directory of a package (ament index)
    find-pkg-prefix PKG       install prefix of a package (ament index)
    find-exec NAME            a program on PATH
    anon NAME                 NAME made unique to this launch (the same NAME gives the same value)
    equals A B / not-equals A B   'true'/'false'; true/false/1/0 compare as booleans and numbers
                                  as numbers
    not A / and A B / or A B  boolean logic
    if COND THEN [ELSE]       THEN when COND is true, else ELSE ('' when not given)

Substitutions of ROS 2 launch that devbot does not evaluate (``eval`` runs Python, ``command``
runs a shell command, ...) and names ROS 2 launch does not have (``optenv``, ``equal``) are
errors that say what to write instead.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import sys
from dataclasses import dataclass, field
from typing import Callable, Union

import yaml


class SubstitutionError(ValueError):
    """A malformed or unresolvable substitution (the caller adds file/line context)."""


@dataclass
class Sub:
    """One ``$(name arg ...)``; each argument is a list of parts (str or nested Sub)."""

    name: str
    args: list[list['Part']] = field(default_factory=list)


Part = Union[str, Sub]

# name -> (fewest, most) arguments
SUPPORTED: dict[str, tuple[int, int]] = {
    'var': (1, 2),
    'env': (1, 2),
    'dirname': (0, 0),
    'filename': (0, 0),
    'find-pkg-share': (1, 1),
    'find-pkg-prefix': (1, 1),
    'find-exec': (1, 1),
    'anon': (1, 1),
    'equals': (2, 2),
    'not-equals': (2, 2),
    'not': (1, 1),
    'and': (2, 2),
    'or': (2, 2),
    'if': (2, 3),
}
# substitutions ROS 2 launch has that devbot launch does not evaluate
NOT_SUPPORTED = {
    'eval': 'it evaluates Python; use $(equals a b), $(not-equals a b), $(not x), $(and a b), '
    '$(or a b) or $(if cond a b)',
    # launch's frontend registers them but fails to construct them (launch 3.7)
    'any': 'ros2 launch fails on $(any ...) in launch files; use $(or a b)',
    'all': 'ros2 launch fails on $(all ...) in launch files; use $(and a b)',
    'command': 'it runs a shell command while the launch file is read',
    'file-content': 'devbot launch does not read files into values',
    'exec-in-pkg': 'use a node entry with pkg and exec',
    'param': 'it reads parameters of running nodes',
    'launch_log_dir': 'devbot launch writes no launch log folder',
    'log_dir': 'devbot launch writes no launch log folder',
}
# names ROS 2 launch does not have, and what it has instead
RENAMED = {
    'equal': '$(equals A B)',
    'not-equal': '$(not-equals A B)',
    'optenv': '$(env NAME DEFAULT) (ROS 2 has no optenv; $(env NAME \'\') for an empty default)',
    'find': '$(find-pkg-share PKG)',
    'arg': '$(var NAME)',
}


def _letter(ch: str) -> bool:
    return ('a' <= ch <= 'z') or ('A' <= ch <= 'Z')


def _name_char(ch: str) -> bool:
    return _letter(ch) or ch.isdigit() or ch in '_-'


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, message: str) -> SubstitutionError:
        return SubstitutionError(f'{message} at column {self.pos + 1} of {self.text!r}')

    def template(self, quote: str | None) -> list[Part]:
        """Text and substitutions up to the end (or the closing ``quote``)."""
        parts: list[Part] = []
        buf: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if quote is not None and ch == quote:
                break
            if self.escape_or_substitution(parts, buf, quote):
                continue
            buf.append(ch)
            self.pos += 1
        if buf:
            parts.append(''.join(buf))
        return parts

    def escape_or_substitution(self, parts: list[Part], buf: list[str], quote: str | None) -> bool:
        """Read a backslash escape into ``buf`` or a ``$(...)`` into ``parts`` at ``pos``.

        Returns:
            False (nothing read) when neither starts at ``pos``.
        """
        text = self.text
        if text[self.pos] == '\\' and self.pos + 1 < len(text):
            buf.append(text[self.pos + 1])
            self.pos += 2
            return True
        if text.startswith('$(', self.pos):
            if buf:
                parts.append(''.join(buf))
                buf.clear()
            parts.append(self.substitution(quote))
            return True
        return False

    def substitution(self, quote: str | None) -> Sub:
        text = self.text
        self.pos += 2
        start = self.pos
        if self.pos >= len(text) or not _letter(text[self.pos]):
            raise self.error('a substitution name (starting with a letter) must follow "$("')
        while self.pos < len(text) and _name_char(text[self.pos]):
            self.pos += 1
        sub = Sub(text[start : self.pos])
        while True:
            if self.pos >= len(text):
                raise self.error(f'unterminated substitution "$({sub.name} ..." (missing ")")')
            ch = text[self.pos]
            if ch == ')':
                self.pos += 1
                return sub
            if ch != ' ':
                raise self.error(
                    f'$({sub.name} ...): expected one space and an argument, or ")", got {ch!r}'
                )
            self.pos += 1
            sub.args.append(self.argument(quote))

    def argument(self, quote: str | None) -> list[Part]:
        text = self.text
        if self.pos < len(text) and text[self.pos] in '\'"' and text[self.pos] != quote:
            opening = text[self.pos]
            self.pos += 1
            parts = self.template(opening)
            if self.pos >= len(text):
                raise self.error(f'unterminated quote {opening}')
            self.pos += 1
            if self.pos < len(text) and text[self.pos] not in ' )':
                raise self.error('a quoted argument must be followed by a space or ")"')
            return parts
        parts: list[Part] = []
        buf: list[str] = []
        while self.pos < len(text):
            ch = text[self.pos]
            if self.escape_or_substitution(parts, buf, quote):
                continue
            if ch in ' )':
                break
            if ch == '(' or ch in '\'"':
                raise self.error(
                    f'{ch!r} inside an unquoted argument (quote the argument or write \\{ch})'
                )
            buf.append(ch)
            self.pos += 1
        if buf:
            parts.append(''.join(buf))
        if not parts:
            raise self.error('empty argument (one space between arguments; quote empty ones: \'\')')
        return parts


def parse(text: str) -> list[Part]:
    """Split ``text`` into literal strings and :class:`Sub` nodes, checking every name."""
    parser = _Parser(text)
    parts = parser.template(None)
    for part in parts:
        _check_names(part)
    return parts


def _check_names(part: Part) -> None:
    if isinstance(part, str):
        return
    name = part.name
    if name in RENAMED:
        raise SubstitutionError(
            f'$({name} ...) is not a ROS 2 launch substitution: use {RENAMED[name]}'
        )
    if name in NOT_SUPPORTED:
        raise SubstitutionError(
            f'$({name} ...) is not supported by devbot launch: {NOT_SUPPORTED[name]}'
        )
    if name not in SUPPORTED:
        raise SubstitutionError(
            f'unknown substitution $({name} ...); supported: {", ".join(SUPPORTED)}'
        )
    low, high = SUPPORTED[name]
    if not low <= len(part.args) <= high:
        want = str(low) if low == high else f'{low}-{high}'
        raise SubstitutionError(f'$({name}) takes {want} argument(s), got {len(part.args)}')
    if name in ('equals', 'not-equals') and not all(part.args):
        # launch turns an empty quoted argument of these into the text '[]'
        raise SubstitutionError(
            f"$({name}) with an empty quoted argument ('' or \"\"): ros2 launch compares it as "
            "'[]'; compare a non-empty text, e.g. $(equals x$(var a) x)"
        )
    for arg in part.args:
        for inner in arg:
            _check_names(inner)


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
        anon_names: dict[str, str] | None = None,
    ):
        self.configurations = dict(configurations or {})
        self.current_file = current_file
        self.find_share = find_share
        self.find_prefix = find_prefix
        self.environ = os.environ if environ is None else environ
        self.anon_names = {} if anon_names is None else anon_names


def substitute(text: str, ctx: Context) -> str:
    """Parse and evaluate ``text``."""
    return evaluate(parse(text), ctx)


def evaluate(parts: list[Part], ctx: Context) -> str:
    return ''.join(p if isinstance(p, str) else _evaluate_sub(p, ctx) for p in parts)


def _evaluate_sub(sub: Sub, ctx: Context) -> str:
    name = sub.name
    if name == 'if':  # only the chosen branch is evaluated
        cond = typed_bool(evaluate(sub.args[0], ctx), '$(if) condition')
        if cond:
            return evaluate(sub.args[1], ctx)
        return evaluate(sub.args[2], ctx) if len(sub.args) == 3 else ''
    if name == 'var':
        key = evaluate(sub.args[0], ctx)
        if key in ctx.configurations:
            return ctx.configurations[key]
        if len(sub.args) == 2:
            return evaluate(sub.args[1], ctx)
        known = ', '.join(sorted(ctx.configurations)) or 'none'
        raise SubstitutionError(
            f'$(var {key}): launch argument {key!r} is not set '
            f'(declare it with an arg or let entry; set here: {known})'
        )
    args = [evaluate(a, ctx) for a in sub.args]
    if name == 'env':
        value = ctx.environ.get(args[0])
        if value is not None:
            return value
        if len(args) == 2:
            return args[1]
        raise SubstitutionError(
            f'$(env {args[0]}): environment variable {args[0]!r} is not set and no default is given'
        )
    if name in ('dirname', 'filename'):
        if ctx.current_file is None:
            raise SubstitutionError(f'$({name}) used outside a launch file')
        path = os.path.abspath(ctx.current_file)
        return os.path.dirname(path) if name == 'dirname' else path
    if name in ('find-pkg-share', 'find-pkg-prefix'):
        finder = ctx.find_share if name == 'find-pkg-share' else ctx.find_prefix
        if finder is None:
            raise SubstitutionError(f'$({name}) is not available here')
        try:
            return finder(args[0])
        except LookupError as exc:
            raise SubstitutionError(f'$({name} {args[0]}): {exc}') from None
    if name == 'find-exec':
        path = shutil.which(args[0])
        if path is None:
            raise SubstitutionError(f'$(find-exec {args[0]}): {args[0]!r} not found on PATH')
        return path
    if name == 'anon':
        if args[0] not in ctx.anon_names:
            unique = (
                f'{args[0]}_{socket.gethostname()}_{os.getpid()}_{random.randint(0, sys.maxsize)}'
            )
            ctx.anon_names[args[0]] = unique.replace('.', '_').replace('-', '_')
        return ctx.anon_names[args[0]]
    if name in ('equals', 'not-equals'):
        same = values_equal(args[0], args[1])
        return _bool_text(same if name == 'equals' else not same)
    if name == 'not':
        return _bool_text(not typed_bool(args[0], '$(not) argument'))
    if name in ('and', 'or'):
        left, right = (typed_bool(a, f'$({name}) argument') for a in args)
        return _bool_text(left and right if name == 'and' else left or right)
    raise SubstitutionError(f'unknown substitution $({name} ...)')  # parse() checked the names


def _bool_text(value: bool) -> str:
    return 'true' if value else 'false'


def _bool_like(text: str) -> bool:
    return text.lower() in ('true', 'false', '1', '0')


def values_equal(left: str, right: str) -> bool:
    """``$(equals)``: true/false/1/0 (any case) compare as booleans, numbers as numbers (close
    enough counts), anything else as text."""
    if _bool_like(left) and _bool_like(right):
        return (left.lower() in ('true', '1')) == (right.lower() in ('true', '1'))
    try:
        return math.isclose(float(left), float(right))
    except ValueError:
        return left == right


def typed_bool(text: str, what: str) -> bool:
    """A boolean argument of not/and/or/if: '1', '0' or a YAML boolean (true, False, yes, off,
    ...)."""
    if text in ('1', '0'):
        return text == '1'
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        value = None
    if isinstance(value, bool):
        return value
    raise SubstitutionError(f'{what}: expected a boolean (true, false, 1 or 0), got {text!r}')


def to_bool(text: str, what: str = 'condition') -> bool:
    """A launch condition value: true/false/1/0 (any case); anything else is an error."""
    low = str(text).strip().lower()
    if low in ('true', '1'):
        return True
    if low in ('false', '0'):
        return False
    raise SubstitutionError(f'{what}: expected true, false, 1 or 0, got {text!r}')
