"""sslc core: interfaces, plugin host, recipes, runner, trainer and the RIS metric."""

from ssl_core.errors import SslcError
from ssl_core.hookspecs import hookimpl
from ssl_core.interfaces import (
    ContrastiveObjective,
    Dataset,
    Encoder,
    Evaluator,
    ImageRecord,
    InvarianceProbe,
    ObjectiveOutput,
    PairSampler,
    ProbeItem,
    ProbeSet,
)
from ssl_core.registry import Params

__version__ = "0.1.0"

__all__ = [
    "ContrastiveObjective",
    "Dataset",
    "Encoder",
    "Evaluator",
    "ImageRecord",
    "InvarianceProbe",
    "ObjectiveOutput",
    "PairSampler",
    "Params",
    "ProbeItem",
    "ProbeSet",
    "SslcError",
    "hookimpl",
    "__version__",
]
