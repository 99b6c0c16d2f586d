"""ladle: typed, validated, idempotent loads into PostgreSQL or DuckDB, every record accounted for.

The public API is what ``__all__`` lists; everything else is internal.
"""

from ladle.batch import Counts
from ladle.errors import (
    ConfigError,
    DestinationError,
    LadleError,
    SchemaConflict,
    SourceError,
    StepError,
)
from ladle.pipeline import Pipeline, RunOptions, RunSummary
from ladle.pipeline import ladle_version as _ladle_version

__version__ = _ladle_version()

__all__ = [
    "ConfigError",
    "Counts",
    "DestinationError",
    "LadleError",
    "Pipeline",
    "RunOptions",
    "RunSummary",
    "SchemaConflict",
    "SourceError",
    "StepError",
    "__version__",
]
