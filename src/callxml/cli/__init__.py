"""The ``callxml`` command line: the top layer, above the engine, the simulator and the runtime.

Each subcommand is a module of this package (``validate``, ``simulate``, ``call``, ``serve``)
and is imported lazily, so ``callxml validate`` does not pay for importing SIP or media.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> "module:attribute" of a click.Command
_COMMANDS: dict[str, str] = {
    "validate": "callxml.cli.validate:validate_command",
    "simulate": "callxml.cli.simulate:simulate_command",
    "call": "callxml.cli.call:call_command",
    "serve": "callxml.cli.serve:serve_command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in _COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only hide commands whose own module is not there yet; a broken import inside an
            # existing module must surface.
            if exc.name and module_name.startswith(exc.name):
                return None
            raise
        command: Any = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="callxml")
def main() -> None:
    """callxml: run TwiML-like call flows over SIP, RTP and SRTP."""


if __name__ == "__main__":  # pragma: no cover
    main()
