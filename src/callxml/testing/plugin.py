"""pytest plugin registered by the ``callxml`` package (entry point ``pytest11``).

Provides the ``callflow`` fixture: a fresh :class:`callxml.testing.CallFlow` per test, for
testing call flows offline with the simulator.
"""

from __future__ import annotations

import pytest

from callxml.testing.flow import CallFlow


@pytest.fixture
def callflow() -> CallFlow:
    """A fresh :class:`~callxml.testing.CallFlow`: ``route()`` documents, then ``run()``."""
    return CallFlow()
