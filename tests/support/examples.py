"""The repository's examples/ as the tests see them: the directory, and a script loaded as a module.

The examples are not a package (they are run as scripts), yet tests import the example IVR app to
serve it for real; loading a file by path is done here once. Each test module passes its own
module name, so each gets its own copy of the example, as when it loaded it itself.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["EXAMPLES", "load_example"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(filename: str, module_name: str) -> ModuleType:
    """Import ``examples/<filename>`` as the module ``module_name`` (put in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
