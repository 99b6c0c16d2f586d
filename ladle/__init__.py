"""ladle: typed, validated, idempotent loads into PostgreSQL or DuckDB, every record accounted for.

The public API is what ``__all__`` lists; everything else is internal.
"""

from ladle.batch import Counts, StepResult
from ladle.errors import (
    ConfigError,
    DestinationError,
    LadleError,
    SchemaConflict,
    SourceError,
    StepError,
)
from ladle.pipeline import Pipeline, PipelineBuilder, ResourceResult, RunOptions, RunSummary
from ladle.pipeline import ladle_version as _ladle_version
from ladle.plugins import source, step
from ladle.sources import SourceContext

__version__ = _ladle_version()

__all__ = [
    "ConfigError",
    "Counts",
    "DestinationError",
    "LadleError",
    "Pipeline",
    "PipelineBuilder",
    "ResourceResult",
    "RunOptions",
    "RunSummary",
    "SchemaConflict",
    "SourceContext",
    "SourceError",
    "StepError",
    "StepResult",
    "__version__",
    "source",
    "step",
]
