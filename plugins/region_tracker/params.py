"""Parameters of the `selective-search-tracker` and `gt-region-tracks` pair samplers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ssl_core import TEMPORAL_GAP, Params, component_field

#: the parameters that change the tracks (and so the cache key); the rest shape the views
TRACKING_FIELDS = ("delta", "threshold", "threshold_quantile", "num_regions", "min_area",
                   "max_area", "max_aspect", "min_contrast", "contrast_ring", "nms_iou", "order",
                   "search_side", "search_k", "search_sigma", "feature_size", "roi_op",
                   "roi_output", "max_frames")



#: the view augmentation of the tracked pairs unless the recipe names another
DEFAULT_VIEWS = {"type": "aggressive-crop"}


class RegionPairParams(Params):
    """What the region-pair samplers share: which frame pairs (frame-temporal's rule), how
    many region rows an item has, and how a frame becomes a view."""

    gap: int = Field(TEMPORAL_GAP, ge=1, description="k: pairs are frames (i, i + k) with "
                     "i mod k == 0 and i + k < T, frame-temporal's rule (and default)")
    num_regions: int = Field(4, ge=1, description="R: regions kept per frame (also the box "
                             "rows of every item)")
    subset: str | None = Field(None, description="the dataset subset whose videos are read")
    # -- views ---------------------------------------------------------------------------
    views: dict[str, Any] = component_field(
        "view-augmentation", DEFAULT_VIEWS,
        "the view augmentation of each frame, `{type: <name>, ...}` (its crop is drawn to keep "
        "a region in view); default aggressive-crop's MoCo-v2 pipeline (size 224); "
        "augment_on must stay cpu")
    min_visible: float = Field(0.3, gt=0.0, le=1.0, description="a region counts in a view when "
                               "this fraction of its area is inside the crop")
    crop_tries: int = Field(10, ge=1, description="crops drawn until one shows a region "
                            "(else the whole frame)")

    @model_validator(mode="after")
    def _check_views(self) -> RegionPairParams:
        if self.views.get("augment_on", "cpu") != "cpu":
            raise ValueError("views.augment_on: gpu is not supported: the views move the region "
                             "boxes with the pixels on the CPU")
        return self


class SelectiveSearchTrackerParams(RegionPairParams):
    """Region tracking (paper sec. 5) and the views of the tracked pairs: a view augmentation
    the tracker composes (`views`), whose crop it draws so that a tracked region stays in view."""

    # -- tracking ------------------------------------------------------------------------
    delta: int = Field(10, ge=1, description="frames between matched frames (the paper's Delta): "
                       "frames 0, delta, 2*delta, ... are tracked; `gap` must be a multiple")
    threshold: float = Field(0.3, gt=0.0, le=2.0, description="largest cosine distance "
                             "(1 - cos) of a match, whatever the quantile gives")
    threshold_quantile: float | None = Field(
        0.7, gt=0.0, le=1.0, description="per video, a match is kept when its distance is at "
        "most this quantile of the video's nearest-match distances (and `threshold`); null: "
        "`threshold` alone")
    min_area: float = Field(0.01, ge=0.0, le=1.0, description="smallest region, as a fraction "
                            "of the frame's area")
    max_area: float = Field(0.2, gt=0.0, le=1.0, description="largest region, as a fraction of "
                            "the frame's area")
    max_aspect: float = Field(3.0, ge=1.0, description="largest long side / short side of a "
                              "region")
    min_contrast: float = Field(0.4, ge=0.0, le=1.0, description="objectness cue: smallest "
                                "chi-square distance between the colour histograms of a region "
                                "and of the ring around it")
    contrast_ring: float = Field(0.5, gt=0.0, description="the ring of the contrast cue: the "
                                 "region grown by this fraction of its width and height per side")
    nms_iou: float = Field(0.5, gt=0.0, le=1.0, description="of two proposals overlapping by "
                           "more IoU, the lower-ranked is dropped")
    order: Literal["proposal", "largest", "contrast"] = Field(
        "largest", description="which R regions to keep after filtering: selective search's "
        "own ranking, the largest, or the most contrasted")
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

    @model_validator(mode="after")
    def _check_tracker(self) -> SelectiveSearchTrackerParams:
        if self.min_area >= self.max_area:
            raise ValueError(f"min_area ({self.min_area}) must be below max_area ({self.max_area})")
        if self.gap % self.delta:
            raise ValueError(f"gap ({self.gap}) must be a multiple of delta ({self.delta}): a "
                             f"pair's regions are tracked through gap / delta steps of delta "
                             f"frames (e.g. delta {self.delta}, gap "
                             f"{max(1, round(self.gap / self.delta)) * self.delta})")
        span = self.gap // self.delta + 1  # sampled frames i, i + delta, ..., i + gap
        if 0 < self.max_frames < span:
            raise ValueError(f"max_frames ({self.max_frames}) leaves no track: a pair's regions "
                             f"are tracked over {span} sampled frames (gap {self.gap} / delta "
                             f"{self.delta} + 1); set max_frames to {span} or more, or 0 (all)")
        return self


class GtRegionTracksParams(RegionPairParams):
    """The annotated tracks as the regions: which tracks, and how small a box may be."""

    tracks: Literal["main", "all"] = Field(
        "all", description="main: the dataset's annotated (tracked) object only; all: every "
        "annotated track")
    min_box_size: float = Field(
        4.0, ge=0.0, description="a box narrower or shorter than this (pixels) in either frame "
        "is not a region pair")
