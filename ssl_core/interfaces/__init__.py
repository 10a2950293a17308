"""The component contracts: core code talks to plugins only through these. One module per
kind of contract; everything is re-exported here (and from `ssl_core`)."""

from __future__ import annotations

from ssl_core.interfaces.checkpoint import CheckpointFormat
from ssl_core.interfaces.data import Box, Dataset, ImageRecord, ImageTransform
from ssl_core.interfaces.encoder import Encoder
from ssl_core.interfaces.evaluation import EvaluationResult, Evaluator, FeatureFn, Preprocessing
from ssl_core.interfaces.params import NoParams, Params
from ssl_core.interfaces.probing import InvarianceProbe, ProbeItem, ProbeSet
from ssl_core.interfaces.training import (
    ContrastiveObjective,
    Crop,
    ObjectiveOutput,
    PairSampler,
    ViewAugmentation,
)

__all__ = ["KIND_BASES", "Box", "CheckpointFormat", "ContrastiveObjective", "Crop", "Dataset",
           "Encoder", "EvaluationResult", "Evaluator", "FeatureFn", "ImageRecord",
           "ImageTransform", "InvarianceProbe", "NoParams", "ObjectiveOutput", "PairSampler", "Params",
           "Preprocessing", "ProbeItem", "ProbeSet", "ViewAugmentation"]

#: what an object registered for each kind must be an instance of
KIND_BASES: dict[str, type] = {
    "dataset": Dataset,
    "pair-sampler": PairSampler,
    "view-augmentation": ViewAugmentation,
    "encoder": Encoder,
    "objective": ContrastiveObjective,
    "invariance-probe": InvarianceProbe,
    "evaluator": Evaluator,
    "checkpoint-format": CheckpointFormat,
}
