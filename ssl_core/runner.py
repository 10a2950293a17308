"""Runs a recipe's stages (train -> probe -> evaluate -> report) in a run directory.

Each stage writes a JSON result that records a fingerprint of its inputs; a stage whose
result exists with the same fingerprint is skipped (`force=True` redoes it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from ssl_core.atomic import write_json, write_text
from ssl_core.errors import SslcError
from ssl_core.fingerprint import fingerprint
from ssl_core.interfaces import Dataset, Encoder, InvarianceProbe, ProbeSet
from ssl_core.progress import console, is_quiet, progress_bar
from ssl_core.recipe import LoadedRecipe, ModelConfig
from ssl_core.registry import Registry
from ssl_core.report import build_report
from ssl_core.seeding import seed_everything

STAGES = ("train", "probe", "evaluate", "report")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SslcError(f"--device {name}: no CUDA device is available", "use --device cpu or auto")
    return torch.device(name)


def _read_result(path: Path, fp: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("fingerprint") == fp else None


class Runner:
    def __init__(self, loaded: LoadedRecipe, registry: Registry, *, run_dir: Path,
                 device: str = "auto", force: bool = False) -> None:
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.registry = registry
        self.run_dir = run_dir
        self.device = pick_device(device)
        self.force = force
        self._data_root: Path | None = None
        self._datasets: dict[str, Dataset] = {}
        self._encoders: dict[str, tuple[Encoder, str]] = {}
        self._probe_sets: dict[str, ProbeSet] = {}

    def log(self, message: str) -> None:
        if not is_quiet():
            console.print(message)

    # -- data -----------------------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        if self._data_root is None:
            r = self.recipe
            if r.world is not None:
                world = self.registry.create("dataset", r.world, where="world")
                with progress_bar() as progress:
                    world.prepare(progress=None if is_quiet() else progress)
                self._data_root = Path(world.root)
            elif r.data_root is not None:
                self._data_root = r.data_root.expanduser()
            else:
                self._data_root = Path.cwd()
        return self._data_root

    def resolved_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """A dataset config with a relative `root` resolved against the data root."""
        cfg = dict(config)
        root = cfg.get("root")
        if isinstance(root, str) and not Path(root).expanduser().is_absolute():
            cfg["root"] = str(self.data_root / root)
        elif root is None and "root" in self.registry.get("dataset", cfg["type"]).params.model_fields:
            cfg["root"] = str(self.data_root)
        return cfg

    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            cfg = self.resolved_config(self.recipe.datasets[name])
            ds = self.registry.create("dataset", cfg, where=f"datasets.{name}")
            ds.prepare()
            self._datasets[name] = ds
        return self._datasets[name]

    # -- train ------------------------------------------------------------------------------
    def _model_fingerprint(self, name: str, model: ModelConfig) -> str:
        data = {}
        if model.train is not None:
            data = {"dataset": self.resolved_config(self.recipe.datasets[model.train.dataset]),
                    "world": self.recipe.world}
        return fingerprint(model.model_dump(mode="json"), data)

    def encoder(self, name: str) -> tuple[Encoder, str]:
        """The model's encoder (trained, loaded or random) and an id for feature caching."""
        if name in self._encoders:
            return self._encoders[name]
        model = self.recipe.models[name]
        model_dir = self.run_dir / "models" / name
        seed_everything(model.init_seed)
        if model.train is not None:
            encoder, enc_id = self._train(name, model, model_dir)
        elif model.checkpoint is not None:
            from ssl_core.checkpoints import checkpoint_digest, load_encoder

            path = model.checkpoint.path.expanduser()
            params = {k: v for k, v in model.encoder.items() if k != "type"}
            encoder, _ = load_encoder(path, format=model.checkpoint.format, arch=model.encoder["type"],
                                      prefix_map=model.checkpoint.prefix_map or None,
                                      encoder_params=params, registry=self.registry)
            enc_id = f"checkpoint:{checkpoint_digest(path)}:{fingerprint(model.encoder, model.checkpoint.model_dump(mode='json'))}"
        else:
            encoder = self.registry.create("encoder", model.encoder, where=f"models.{name}.encoder")
            enc_id = f"random:{fingerprint(model.encoder, model.init_seed)}"
        encoder.eval()
        self._encoders[name] = (encoder, enc_id)
        return encoder, enc_id

    def _train(self, name: str, model: ModelConfig, model_dir: Path) -> tuple[Encoder, str]:
        from ssl_core.trainer import Trainer, load_checkpoint

        assert model.train is not None
        t = model.train
        fp = self._model_fingerprint(name, model)
        result_path = model_dir / "train.json"
        ckpt_path = model_dir / "checkpoint.pt"
        encoder = self.registry.create("encoder", model.encoder, where=f"models.{name}.encoder")
        done = None if self.force else _read_result(result_path, fp)
        if done is not None and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            if ckpt.get("fingerprint") == fp and ckpt.get("done"):
                encoder.load_state_dict(ckpt["encoder_state_dict"])
                self.log(f"[dim]train {name}: up to date, skipped ({result_path})[/dim]")
                return encoder, f"run:{fp}:{ckpt['step']}"
        if self.force and ckpt_path.exists():
            ckpt_path.unlink()
        objective = self.registry.create("objective", t.objective, where=f"models.{name}.train.objective")
        objective.bind(encoder)
        sampler = self.registry.create("pair-sampler", t.pair_sampler, where=f"models.{name}.train.pair_sampler")
        pairs = sampler.pairs(self.dataset(t.dataset))
        trainer = Trainer(objective, pairs, t, device=self.device, checkpoint_path=ckpt_path,
                          fingerprint=fp, encoder_config=model.encoder, description=f"train {name}")
        result = trainer.fit()
        encoder = objective.encoder.cpu()
        write_json(result_path, {
            "stage": "train", "model": name, "fingerprint": fp, "steps": result.steps,
            "epochs": result.epochs, "final_loss": result.final_loss,
            "images_per_s": result.images_per_s, "resumed_from_step": result.resumed_from_step,
            "device": str(self.device), "checkpoint": str(ckpt_path), "loss_history": result.history,
        })
        return encoder, f"run:{fp}:{result.steps}"

    # -- probe ------------------------------------------------------------------------------
    def _probe_set(self, name: str, probe: InvarianceProbe, dataset_name: str | None,
                   ds_cfg: dict[str, Any]) -> ProbeSet:
        """Trajectories are built once per probe and shared by every model."""
        if name not in self._probe_sets:
            if dataset_name:
                dataset = self.dataset(dataset_name)
            else:
                dataset = self.registry.create("dataset", ds_cfg, where=f"probes.{name}")
                dataset.prepare()
            self._probe_sets[name] = probe.build(dataset)
        return self._probe_sets[name]

    def probe(self, model_name: str, probe_name: str) -> dict[str, Any]:
        from ssl_core.features import features_for
        from ssl_core.ris import representation_invariance_score

        settings = self.recipe.probe_settings
        cfg = dict(self.recipe.probes[probe_name])
        dataset_name = cfg.pop("dataset", None)
        probe = self.registry.create("invariance-probe", cfg, where=f"probes.{probe_name}")
        ds_cfg = (self.resolved_config(self.recipe.datasets[dataset_name]) if dataset_name
                  else self.resolved_config({"type": probe.dataset_type}))
        encoder, enc_id = self.encoder(model_name)
        fp = fingerprint(enc_id, cfg, ds_cfg, self.recipe.world, settings.top_k)
        out = self.run_dir / "probes" / model_name / f"{probe_name}.json"
        cached = None if self.force else _read_result(out, fp)
        if cached is not None:
            self.log(f"[dim]probe {model_name}/{probe_name}: up to date, skipped[/dim]")
            return cached
        probe_set = self._probe_set(probe_name, probe, dataset_name, ds_cfg)
        feats = features_for(
            encoder, probe_set, enc_id, batch_size=settings.batch_size,
            num_workers=settings.num_workers, device=self.device,
            description=f"features {model_name}/{probe_name}")
        ris = representation_invariance_score(feats, probe_set.trajectories(), probe_set.labels(),
                                              top_k=tuple(settings.top_k))
        result = {"stage": "probe", "model": model_name, "probe": probe_name, "type": cfg["type"],
                  "invariance": probe.invariance, "fingerprint": fp, **ris.as_dict(),
                  "probe_stats": probe_set.stats}
        write_json(out, result)
        return result

    # -- evaluate ---------------------------------------------------------------------------
    def evaluate(self, model_name: str, eval_name: str) -> dict[str, Any]:
        cfg = dict(self.recipe.evaluations[eval_name])
        only = cfg.pop("model", None)
        encoder, enc_id = self.encoder(model_name)
        fp = fingerprint(enc_id, cfg)
        out = self.run_dir / "evaluations" / model_name / f"{eval_name}.json"
        cached = None if self.force else _read_result(out, fp)
        if cached is not None or (only is not None and only != model_name):
            return cached or {}
        evaluator = self.registry.create("evaluator", cfg, where=f"evaluations.{eval_name}")
        with progress_bar() as progress:
            metrics = evaluator.evaluate(encoder, progress=None if is_quiet() else progress)
        result = {"stage": "evaluate", "model": model_name, "evaluation": eval_name,
                  "fingerprint": fp, "metrics": metrics}
        write_json(out, result)
        return result

    # -- all --------------------------------------------------------------------------------
    def run(self, stages: Sequence[str] = STAGES) -> dict[str, Any]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "recipe.resolved.yaml",
                   yaml.safe_dump(self.recipe.model_dump(mode="json"), sort_keys=False))
        r = self.recipe
        probes: dict[str, dict[str, Any]] = {}
        evaluations: dict[str, dict[str, Any]] = {}
        for model in r.models:
            if "train" in stages:
                self.encoder(model)
            if "probe" in stages:
                probes[model] = {p: self.probe(model, p) for p in r.probes}
            if "evaluate" in stages:
                evaluations[model] = {e: self.evaluate(model, e) for e in r.evaluations}
        report = build_report(r, probes, evaluations, device=str(self.device))
        if "report" in stages:
            write_json(self.run_dir / "report.json", report["json"])
            write_text(self.run_dir / "report.md", report["markdown"])
        return report
