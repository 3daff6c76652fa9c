"""Parameters declared with descriptors: a float range accepting integers, on a real rclpy node."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from devbot.params import declare_number


@pytest.fixture
def make_node():
    context = Context()
    rclpy.init(context=context)
    nodes = []

    def make(**overrides) -> Node:
        node = Node(
            'params_test',
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=context)


def test_declare_number_accepts_integers_and_shows_its_range(make_node):
    node = make_node(rate=5)
    value = declare_number(node, 'rate', 1.0, 'speed factor', high=10.0, low=0.5)
    assert value == 5.0 and isinstance(value, float)
    descriptor = node.describe_parameter('rate')
    assert descriptor.description == 'speed factor [0.5..10]'
    assert declare_number(node, 'other', 2.0, 'default kept', high=3.0) == 2.0


@pytest.mark.parametrize('bad', [11.0, -1, 'fast', True])
def test_declare_number_refuses_values_outside_the_range_or_not_numbers(make_node, bad):
    node = make_node(rate=bad)
    with pytest.raises(ValueError, match='rate'):
        declare_number(node, 'rate', 1.0, 'speed factor', high=10.0, low=0.5)
