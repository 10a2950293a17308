"""sslc core: interfaces, plugin host, recipes, runner, trainer and the RIS metric.

Plugins import only what this module exports. The exports are loaded on first use, so
`sslc --version` and `sslc --help` answer without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "read_json": "ssl_core.kit.atomic",
    "write_json": "ssl_core.kit.atomic",
    "MomentumContrast": "ssl_core.kit.contrastive",
    "MomentumContrastParams": "ssl_core.kit.contrastive",
    "batch_shuffle": "ssl_core.kit.contrastive",
    "batch_unshuffle": "ssl_core.kit.contrastive",
    "bn_groups": "ssl_core.kit.contrastive",
    "concat_all_gather": "ssl_core.kit.contrastive",
    "enqueue": "ssl_core.kit.contrastive",
    "enqueue_valid": "ssl_core.kit.contrastive",
    "gather_with_grad": "ssl_core.kit.contrastive",
    "grouped_forward": "ssl_core.kit.contrastive",
    "has_batch_norm": "ssl_core.kit.contrastive",
    "info_nce": "ssl_core.kit.contrastive",
    "momentum_update": "ssl_core.kit.contrastive",
    "nearest_queue_sizes": "ssl_core.kit.contrastive",
    "prediction_head": "ssl_core.kit.contrastive",
    "projection_head": "ssl_core.kit.contrastive",
    "shuffle_like": "ssl_core.kit.contrastive",
    "RoiOp": "ssl_core.kit.regions",
    "pool_regions": "ssl_core.kit.regions",
    "roi_align_mean": "ssl_core.kit.regions",
    "barrier": "ssl_core.kit.distributed",
    "rank": "ssl_core.kit.distributed",
    "world_size": "ssl_core.kit.distributed",
    "CheckpointError": "ssl_core.errors",
    "ComponentError": "ssl_core.errors",
    "DataError": "ssl_core.errors",
    "PluginError": "ssl_core.errors",
    "RecipeError": "ssl_core.errors",
    "SslcError": "ssl_core.errors",
    "Register": "ssl_core.plugin.hookspecs",
    "hookimpl": "ssl_core.plugin.hookspecs",
    "IMAGENET_MEAN": "ssl_core.kit.imageio",
    "IMAGENET_STD": "ssl_core.kit.imageio",
    "crop_box": "ssl_core.kit.imageio",
    "load_rgb": "ssl_core.kit.imageio",
    "CheckpointFormat": "ssl_core.interfaces",
    "ContrastiveObjective": "ssl_core.interfaces",
    "Dataset": "ssl_core.interfaces",
    "Encoder": "ssl_core.interfaces",
    "EvaluationResult": "ssl_core.interfaces",
    "Evaluator": "ssl_core.interfaces",
    "FeatureFn": "ssl_core.interfaces",
    "ImageRecord": "ssl_core.interfaces",
    "ImageTransform": "ssl_core.interfaces",
    "RISResult": "ssl_core.measure.ris",
    "representation_invariance_score": "ssl_core.measure.ris",
    "extract_features": "ssl_core.measure.features",
    "InvarianceProbe": "ssl_core.interfaces",
    "ObjectiveOutput": "ssl_core.interfaces",
    "PairSampler": "ssl_core.interfaces",
    "ViewAugmentation": "ssl_core.interfaces",
    "Crop": "ssl_core.interfaces",
    "component_field": "ssl_core.plugin.registry",
    "create_component": "ssl_core.plugin.host",
    "Preprocessing": "ssl_core.interfaces",
    "ProbeItem": "ssl_core.interfaces",
    "ProbeSet": "ssl_core.interfaces",
    "cache_dir": "ssl_core.kit.paths",
    "resolve_device": "ssl_core.kit.devices",
    "progress_bar": "ssl_core.kit.progress",
    "ensure_fits": "ssl_core.kit.memory",
    "Params": "ssl_core.interfaces",
    "device_constant": "ssl_core.kit.transfer",
    "to_device": "ssl_core.kit.transfer",
    "Track": "ssl_core.kit.video",
    "SelectedVideoDataset": "ssl_core.kit.video",
    "VideoDataset": "ssl_core.kit.video",
    "VideoRecord": "ssl_core.kit.video",
    "VideoSelection": "ssl_core.kit.video",
    "VIDEO_SUFFIXES": "ssl_core.kit.video",
    "bad_video": "ssl_core.kit.video",
    "inspect_video": "ssl_core.kit.video",
    "read_frames": "ssl_core.kit.video",
    "read_tracks_sidecar": "ssl_core.kit.video",
    "select_videos": "ssl_core.kit.video",
    "TEMPORAL_GAP": "ssl_core.kit.video",
    "temporal_pairs": "ssl_core.kit.video",
    "xywh_to_xyxy": "ssl_core.kit.video",
    "CheckedBoxes": "ssl_core.kit.boxes",
    "check_boxes": "ssl_core.kit.boxes",
    "frame_size": "ssl_core.kit.boxes",
}

__all__ = [
    "MomentumContrast",
    "MomentumContrastParams",
    "batch_shuffle",
    "batch_unshuffle",
    "bn_groups",
    "concat_all_gather",
    "enqueue",
    "enqueue_valid",
    "gather_with_grad",
    "grouped_forward",
    "has_batch_norm",
    "info_nce",
    "momentum_update",
    "nearest_queue_sizes",
    "prediction_head",
    "projection_head",
    "shuffle_like",
    "RoiOp",
    "pool_regions",
    "roi_align_mean",
    "barrier",
    "rank",
    "world_size",
    "Track",
    "SelectedVideoDataset",
    "VideoDataset",
    "VideoRecord",
    "VideoSelection",
    "VIDEO_SUFFIXES",
    "bad_video",
    "inspect_video",
    "read_frames",
    "read_tracks_sidecar",
    "select_videos",
    "TEMPORAL_GAP",
    "temporal_pairs",
    "xywh_to_xyxy",
    "CheckedBoxes",
    "check_boxes",
    "frame_size",
    "CheckpointError",
    "CheckpointFormat",
    "ComponentError",
    "ContrastiveObjective",
    "DataError",
    "Dataset",
    "Encoder",
    "EvaluationResult",
    "Evaluator",
    "FeatureFn",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageRecord",
    "ImageTransform",
    "RISResult",
    "representation_invariance_score",
    "extract_features",
    "InvarianceProbe",
    "ObjectiveOutput",
    "PairSampler",
    "ViewAugmentation",
    "Crop",
    "component_field",
    "create_component",
    "Params",
    "PluginError",
    "Preprocessing",
    "ProbeItem",
    "ProbeSet",
    "RecipeError",
    "Register",
    "SslcError",
    "cache_dir",
    "resolve_device",
    "device_constant",
    "to_device",
    "progress_bar",
    "crop_box",
    "ensure_fits",
    "hookimpl",
    "load_rgb",
    "read_json",
    "write_json",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssl_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from ssl_core.errors import (
        CheckpointError,
        ComponentError,
        DataError,
        PluginError,
        RecipeError,
        SslcError,
    )
    from ssl_core.interfaces import (
        CheckpointFormat,
        ContrastiveObjective,
        Crop,
        Dataset,
        Encoder,
        EvaluationResult,
        Evaluator,
        FeatureFn,
        ImageRecord,
        ImageTransform,
        InvarianceProbe,
        ObjectiveOutput,
        PairSampler,
        Params,
        Preprocessing,
        ProbeItem,
        ProbeSet,
        ViewAugmentation,
    )
    from ssl_core.kit.atomic import read_json, write_json
    from ssl_core.kit.boxes import CheckedBoxes, check_boxes, frame_size
    from ssl_core.kit.contrastive import (
        MomentumContrast,
        MomentumContrastParams,
        batch_shuffle,
        batch_unshuffle,
        bn_groups,
        concat_all_gather,
        enqueue,
        enqueue_valid,
        gather_with_grad,
        grouped_forward,
        has_batch_norm,
        info_nce,
        momentum_update,
        nearest_queue_sizes,
        prediction_head,
        projection_head,
        shuffle_like,
    )
    from ssl_core.kit.devices import resolve_device
    from ssl_core.kit.distributed import barrier, rank, world_size
    from ssl_core.kit.imageio import IMAGENET_MEAN, IMAGENET_STD, crop_box, load_rgb
    from ssl_core.kit.memory import ensure_fits
    from ssl_core.kit.paths import cache_dir
    from ssl_core.kit.progress import progress_bar
    from ssl_core.kit.regions import RoiOp, pool_regions, roi_align_mean
    from ssl_core.kit.transfer import device_constant, to_device
    from ssl_core.kit.video import (
        TEMPORAL_GAP,
        VIDEO_SUFFIXES,
        SelectedVideoDataset,
        Track,
        VideoDataset,
        VideoRecord,
        VideoSelection,
        bad_video,
        inspect_video,
        read_frames,
        read_tracks_sidecar,
        select_videos,
        temporal_pairs,
        xywh_to_xyxy,
    )
    from ssl_core.measure.features import extract_features
    from ssl_core.measure.ris import RISResult, representation_invariance_score
    from ssl_core.plugin.hookspecs import Register, hookimpl
    from ssl_core.plugin.host import create_component
    from ssl_core.plugin.registry import component_field
