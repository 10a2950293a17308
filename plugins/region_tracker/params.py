"""Parameters of the `selective-search-tracker` pair sampler."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sslc_plugins.aggressive_crop import AggressiveCropParams

#: the parameters that change the tracks (and so the cache key); the rest shape the views
TRACKING_FIELDS = ("delta", "threshold", "num_regions", "min_area", "max_area", "max_aspect",
                   "nms_iou", "order", "search_side", "search_k", "search_sigma",
                   "feature_size", "roi_op", "roi_output", "max_frames")


class SelectiveSearchTrackerParams(AggressiveCropParams):
    """Region tracking (paper sec. 5); the MoCo-v2 views of the tracked pairs take
    aggressive-crop's parameters (size, scale, ratio, jitter, grayscale, blur, flip, ...)."""

    # -- tracking ------------------------------------------------------------------------
    delta: int = Field(10, ge=1, description="frames between matched frames (the paper's Delta): "
                       "frames 0, delta, 2*delta, ... are tracked and paired")
    threshold: float = Field(0.3, gt=0.0, le=2.0, description="largest cosine distance "
                             "(1 - cos) of a match; a track is cut where its nearest region is "
                             "farther")
    num_regions: int = Field(16, ge=1, description="R: regions kept per frame (also the box "
                             "rows of every item)")
    min_area: float = Field(0.01, ge=0.0, le=1.0, description="smallest region, as a fraction "
                            "of the frame's area")
    max_area: float = Field(0.5, gt=0.0, le=1.0, description="largest region, as a fraction of "
                            "the frame's area")
    max_aspect: float = Field(4.0, ge=1.0, description="largest long side / short side of a "
                              "region")
    nms_iou: float = Field(0.7, gt=0.0, le=1.0, description="of two proposals overlapping by "
                           "more IoU, the lower-ranked is dropped")
    order: Literal["proposal", "largest"] = Field(
        "proposal", description="which R regions to keep after filtering: selective search's "
        "own ranking, or the largest")
    search_side: int = Field(256, ge=16, description="frames are searched with their longer side "
                             "at most this (boxes scaled back)")
    search_k: int = Field(150, ge=1, description="selective search fast mode: base_k and inc_k of "
                          "the graph segmentation")
    search_sigma: float = Field(0.8, gt=0.0, description="selective search: Gaussian sigma of "
                                "the segmentation")
    feature_size: int = Field(224, ge=16, description="frames go through the encoder with their "
                              "shorter side resized to this")
    roi_op: Literal["roi_pool", "roi_align"] = Field(
        "roi_pool", description="ROI pooling (Fast R-CNN, the paper's) or ROI align")
    roi_output: int = Field(7, ge=1, description="ROI output cells per side, averaged to one "
                            "vector")
    max_frames: int = Field(0, ge=0, description="track at most this many sampled frames per "
                            "video (0: all)")
    batch_frames: int = Field(16, ge=1, description="frames per encoder forward while tracking")
    workers: int = Field(0, ge=0, description="processes running selective search while tracking "
                         "(0: in this process)")
    device: str = Field("auto", description="where the tracking encoder runs: auto (CUDA when "
                        "available), cpu, cuda, cuda:1 ...")
    max_gap: int = Field(1, ge=1, description="pairs join frames 1..max_gap steps of delta apart "
                         "along a track")
    # -- views (besides aggressive-crop's) ------------------------------------------------
    min_visible: float = Field(0.3, gt=0.0, le=1.0, description="a region counts in a view when "
                               "this fraction of its area is inside the crop")
    crop_tries: int = Field(10, ge=1, description="crops drawn until one shows a tracked region "
                            "(else the whole frame)")

    @model_validator(mode="after")
    def _check_tracker(self) -> SelectiveSearchTrackerParams:
        if self.min_area >= self.max_area:
            raise ValueError(f"min_area ({self.min_area}) must be below max_area ({self.max_area})")
        if self.augment_on != "cpu":
            raise ValueError("augment_on: gpu is not supported: the views move the region boxes "
                             "with the pixels on the CPU")
        return self
