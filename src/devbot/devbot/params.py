"""Declaring ROS parameters with descriptors (description, type, range) in one line."""

from __future__ import annotations

from typing import Any


def declare(
    node,
    name: str,
    default: Any,
    description: str,
    *,
    int_range: tuple[int, int] | None = None,
    float_range: tuple[float, float] | None = None,
    read_only: bool = False,
    dynamic_typing: bool = False,
) -> Any:
    """Declare parameter ``name`` on ``node`` with a descriptor and return its value.

    A float parameter also accepts an integer value (``action_delay:=1`` on a launch command
    line arrives as an integer) and returns it as a float.

    Args:
        node: the rclpy Node.
        name: parameter name.
        default: default value; its Python type fixes the parameter type.
        description: shown by ``ros2 param describe``.
        int_range: inclusive (min, max) for an integer parameter.
        float_range: inclusive (min, max) for a float parameter.
        read_only: the value cannot change after start-up.
        dynamic_typing: accept a value of any type (e.g. a sequence given as ``1`` or ``1,1,0``).

    Raises:
        ValueError: a float parameter given a non-numeric value, or out of ``float_range``.
    """
    from rcl_interfaces.msg import IntegerRange, ParameterDescriptor

    is_float = isinstance(default, float)
    descriptor = ParameterDescriptor(
        description=description, read_only=read_only, dynamic_typing=dynamic_typing or is_float
    )
    if int_range is not None:
        descriptor.integer_range = [
            IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)
        ]
    if float_range is not None and not is_float:
        raise ValueError(f'{name}: float_range needs a float default')
    value = node.declare_parameter(name, default, descriptor).value
    if is_float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f'parameter {name} must be a number, got {value!r}')
        value = float(value)
        if float_range is not None and not float_range[0] <= value <= float_range[1]:
            raise ValueError(
                f'parameter {name}={value} is outside [{float_range[0]}, {float_range[1]}]'
            )
    return value


def declare_number(
    node, name: str, default: float, description: str, high: float, low: float = 0.0
) -> float:
    """Declare a float parameter in [low, high] (its range shown in the description).

    An integer value is accepted (launch files pass ``5`` for 5.0) and returned as a float.

    Raises:
        ValueError: a value that is not a number, or outside [low, high].
    """
    return declare(
        node,
        name,
        float(default),
        f'{description} [{low:g}..{high:g}]',
        float_range=(float(low), float(high)),
    )
