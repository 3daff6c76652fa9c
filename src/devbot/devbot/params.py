"""Declaring ROS parameters with descriptors (description, type, range) in one line."""

from __future__ import annotations

from typing import Any


def declare(node, name: str, default: Any, description: str, *, int_range: tuple[int, int] | None = None,
            float_range: tuple[float, float] | None = None, read_only: bool = False,
            dynamic_typing: bool = False) -> Any:
    """Declare parameter ``name`` on ``node`` with a descriptor and return its value.

    Args:
        node: the rclpy Node.
        name: parameter name.
        default: default value; its Python type fixes the parameter type.
        description: shown by ``ros2 param describe``.
        int_range: inclusive (min, max) for an integer parameter.
        float_range: inclusive (min, max) for a float parameter.
        read_only: the value cannot change after start-up.
        dynamic_typing: accept a value of any type (e.g. a sequence given as ``1`` or ``1,1,0``).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    descriptor = ParameterDescriptor(description=description, read_only=read_only, dynamic_typing=dynamic_typing)
    if int_range is not None:
        descriptor.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    if float_range is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                              to_value=float(float_range[1]), step=0.0)]
    return node.declare_parameter(name, default, descriptor).value
