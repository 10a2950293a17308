"""Where a training framework keeps the encoder's trunk in its checkpoint files."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ssl_core.interfaces.encoder import Encoder


class CheckpointFormat(ABC):
    """Where one training framework keeps the encoder's trunk in its checkpoints.

    The core reads the file and flattens it to a `{dotted key: tensor}` mapping; a
    format picks the trunk's tensors out of that mapping and, for `sslc export`, puts a
    trunk back into the framework's layout.
    """

    @abstractmethod
    def select(self, state: Mapping[str, Tensor], meta: Mapping[str, Any]
               ) -> tuple[dict[str, Tensor], str] | None:
        """The tensors of this layout's trunk (its prefix removed) and that prefix, or None
        when `state` is not in this layout. `meta` holds the file's non-tensor entries."""

    def export(self, trunk: Mapping[str, Tensor], encoder: Encoder,
               encoder_config: Mapping[str, Any]) -> dict[str, Any]:
        """A checkpoint in this layout holding `trunk` (the encoder's own state dict)."""
        raise NotImplementedError(f"{type(self).__name__} cannot write checkpoints")
