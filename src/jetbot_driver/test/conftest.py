"""Fixtures of the jetbot_driver unit tests.

A simulated JetBot is served over real RPyC on loopback.
"""

from __future__ import annotations

import pytest

from jetbot_driver.client import JetBotClient
from jetbot_driver.sim_server import SimServer


@pytest.fixture
def sim():
    """A simulated JetBot server on 127.0.0.1 with a free port, in a background thread."""
    server = SimServer(port=0).start_in_thread()
    yield server
    server.close()


@pytest.fixture
def client(sim):
    """A driver-side client connected to ``sim``."""
    c = JetBotClient.connect('127.0.0.1', sim.port, connect_timeout=5)
    yield c
    c.close()


@pytest.fixture
def inspector(sim):
    """A second connection, for the sim's test hooks (motor log, pose)."""
    c = JetBotClient.connect('127.0.0.1', sim.port, connect_timeout=5)
    yield c
    c.close()
