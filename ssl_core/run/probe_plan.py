"""The recipe's probes, resolved once: each probe's component, its dataset's config and
(built on first use, then shared by every model) its trajectories.

The probe stage and `train.probe_every` both measure from one plan, so they agree on what a
probe is and on what its result depends on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssl_core.interfaces import Dataset, InvarianceProbe, ProbeSet
from ssl_core.plugin.registry import Registry
from ssl_core.recipe.schema import Recipe


@dataclass(frozen=True)
class PlannedProbe:
    name: str
    config: dict[str, Any]  # the probe component's own config (without `dataset`)
    dataset_name: str | None  # an entry of the recipe's `datasets`, or None: the probe's default
    dataset_config: dict[str, Any]  # resolved against the data root
    probe: InvarianceProbe


class ProbePlan:
    """`recipe.probes`, each created once; `resolve` resolves a dataset config against the
    data root and `dataset` gives a recipe dataset by name (both the runner's)."""

    def __init__(self, recipe: Recipe, registry: Registry,
                 resolve: Callable[[dict[str, Any]], dict[str, Any]],
                 dataset: Callable[[str], Dataset]) -> None:
        self.recipe, self.registry = recipe, registry
        self._resolve, self._dataset = resolve, dataset
        self._planned: dict[str, PlannedProbe] = {}
        self._sets: dict[str, ProbeSet] = {}

    @property
    def names(self) -> list[str]:
        return list(self.recipe.probes)

    def __getitem__(self, name: str) -> PlannedProbe:
        if name not in self._planned:
            cfg = dict(self.recipe.probes[name])
            dataset_name = cfg.pop("dataset", None)
            probe = self.registry.create("invariance-probe", cfg, where=f"probes.{name}")
            ds_cfg = self._resolve(self.recipe.datasets[dataset_name] if dataset_name
                                   else {"type": probe.dataset_type})
            self._planned[name] = PlannedProbe(name, cfg, dataset_name, ds_cfg, probe)
        return self._planned[name]

    def identity(self, name: str) -> tuple[Any, ...]:
        """What a probe's result depends on besides the encoder: its config, its data, the
        world and the probe settings (for the stage's fingerprint)."""
        p = self[name]
        return (p.config, p.dataset_config, self.recipe.world,
                self.recipe.probe_settings.model_dump(mode="json"))

    def probe_set(self, name: str) -> ProbeSet:
        """The probe's trajectories, built once and shared by every model."""
        if name not in self._sets:
            p = self[name]
            if p.dataset_name:
                dataset = self._dataset(p.dataset_name)
            else:
                dataset = self.registry.create("dataset", p.dataset_config, where=f"probes.{name}")
                dataset.prepare()
            self._sets[name] = p.probe.build(dataset)
        return self._sets[name]
