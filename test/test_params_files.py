"""The dot's world-model params file, as its launch file hands it to the full-size node: every key
is a model field, the full config it makes is valid, and it holds what the file says."""

from __future__ import annotations

import yaml
from graphtest import REPO

from world_model_node.config import WorldModelConfig

DOT_PARAMS = REPO / 'config' / 'toroidal_dot.world_model.params.yaml'


def test_the_dots_params_file_makes_a_valid_full_config():
    params = yaml.safe_load(DOT_PARAMS.read_text())['/**']['ros__parameters']
    # from_dict refuses unknown keys and runs every check (e.g. FiLM layers within the depth)
    cfg = WorldModelConfig.from_dict({**WorldModelConfig().to_dict(), **params})
    assert {key: getattr(cfg, key) for key in params} == params
    assert cfg.predictor_depth == 3 and cfg.patch_rope_wrap and cfg.roll_augmentation == 0.25
