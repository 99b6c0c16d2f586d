"""The example scripts (``examples/<name>/<script>.py``), imported by the tests that drive them.

Examples are not a package, so each script is imported from its file, once per test run,
under a name of its own (``example_<name>_<script>``). The module is registered in
``sys.modules`` before it runs, because dataclasses look their module up while decorating.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).parents[1] / "examples"


def load_example(example: str, script: str) -> ModuleType:
    """``examples/<example>/<script>.py`` as a module, imported on the first call."""
    name = f"example_{example}_{script}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / example / f"{script}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
