"""Helpers for testing call flows offline: the ``callflow`` pytest fixture and its object.

:class:`CallFlow` wraps :func:`callxml.simulator.simulate` with in-memory routes, so an app's
tests can serve documents (or handler functions) without a web server::

    def test_menu(callflow):
        callflow.route("https://app.test/voice", "<Response><Say>Hi</Say></Response>")
        result = callflow.run("https://app.test/voice")
        assert result.said == ["Hi"]
"""

from callxml.testing.flow import CallFlow

__all__ = ["CallFlow"]
