"""(library) The world-model size and overrides that the learning benchmarks take as arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from world_model_node.config import WorldModelConfig
from world_model_node.core import ONLINE_PRECISIONS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--preset full|tiny``, repeatable ``--set KEY=VALUE`` and ``--precision``."""
    parser.add_argument('--preset', choices=['full', 'tiny'], default='full')
    parser.add_argument(
        '--precision',
        choices=ONLINE_PRECISIONS,
        default='auto',
        help="the learner's forward arithmetic; auto: bf16 on a CPU that computes it natively, "
        'else fp32, as the world_model node does [auto]',
    )
    parser.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='override a WorldModelConfig field (YAML value), repeatable',
    )


def model_config(
    args: argparse.Namespace, params_file: Path | None = None
) -> tuple[WorldModelConfig, dict]:
    """The preset with a robot's params file (its ``ros__parameters``, as the robot's launch file
    reads it) and then the ``--set`` overrides applied, and those overrides together."""
    overrides = {}
    if params_file is not None:
        overrides.update(yaml.safe_load(params_file.read_text())['/**']['ros__parameters'])
    overrides.update(parse_overrides(args.set))
    base = WorldModelConfig() if args.preset == 'full' else WorldModelConfig.tiny()
    return WorldModelConfig.from_dict({**base.to_dict(), **overrides}), overrides


def parse_overrides(pairs: list[str]) -> dict:
    """``['KEY=VALUE', ...]`` (the values in YAML) -> ``{KEY: value}``."""
    return {k: yaml.safe_load(v) for k, v in (pair.split('=', 1) for pair in pairs)}
