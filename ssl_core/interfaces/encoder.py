"""The Encoder contract: the network, its pooled features and its feature maps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from ssl_core.errors import ComponentError


class Encoder(nn.Module, ABC):
    """A trunk network. `forward` returns globally pooled pre-FC features (N x feature_dim).

    The class attributes and `infer_params` let sslc load the encoder's weights from
    checkpoints written by other tools without the core knowing any architecture.
    """

    feature_dim: int
    #: state-dict keys every trunk of this class has; a checkpoint's trunk is found under
    #: the prefix P for which P + each anchor key is present
    anchor_keys: ClassVar[tuple[str, ...]] = ()
    #: key prefixes of heads that checkpoints keep beside the trunk (ignored on load)
    head_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def infer_params(cls, state: Mapping[str, Tensor]) -> dict[str, Any] | None:
        """The params this encoder needs to hold `state` (trunk keys, prefix removed), or
        None when `state` is not a trunk of this encoder."""
        return None

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor: ...

    def checked_feature_dim(self) -> int:
        """`feature_dim`, checked: objectives size their heads with it, and a missing one
        would otherwise surface as a shape error deep inside the first step."""
        dim = getattr(self, "feature_dim", None)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ComponentError(f"encoder {type(self).__name__} has no positive integer `feature_dim`",
                                 "an Encoder must set feature_dim to the size of its pooled features")
        return dim

    @abstractmethod
    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Intermediate maps by name (at least "layer3" for ROI pooling) and "pooled"."""

    def feature_map(self, x: Tensor, layer: str) -> Tensor:
        """The `layer` entry of `feature_maps(x)` (KeyError if there is none). Override it to
        stop at that layer: the region tracker and layer evaluators need one map, and the
        layers after it are wasted work."""
        return self.feature_maps(x)[layer]
