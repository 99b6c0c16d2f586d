"""The run-history web page: ``ladle ui FILE``, and ``/ui`` in ``ladle serve``.

Runs with the invariant's counts and a chart of rows loaded and duration per run, each
run's detail with its error, and a quarantine browser with a Replay button. See
:mod:`ladle.ui.app`.
"""

from ladle.ui.app import create_ui_app, has_display, ui_router, ui_token_from_env

__all__ = ["create_ui_app", "has_display", "ui_router", "ui_token_from_env"]
