"""Runs a recipe's stages (train -> probe -> evaluate -> report) in a run directory.

Each stage writes a JSON result that records a fingerprint of its inputs; a stage whose
result exists with the same fingerprint is skipped (`force=True` redoes it).

Under torchrun every rank trains every model together; rank 0 alone writes results, then
probes, evaluates and reports while the other ranks, their part done, return.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ssl_core.errors import RecipeError, SslcError
from ssl_core.interfaces import Dataset, Encoder, PairSampler
from ssl_core.kit import distributed
from ssl_core.kit.atomic import write_json, write_text
from ssl_core.kit.devices import resolve_device
from ssl_core.kit.progress import is_quiet, progress_bar, say
from ssl_core.measure.evaluation import evaluate as run_evaluation
from ssl_core.measure.evaluation import split_config
from ssl_core.measure.features import FeatureCache, shared_feature_cache
from ssl_core.measure.probing import encoder_identity, measure
from ssl_core.models.source import seeded_encoder
from ssl_core.plugin.registry import Registry
from ssl_core.recipe.schema import LoadedRecipe, ModelConfig, resolved_dataset_config
from ssl_core.report.render import render_report
from ssl_core.results.layout import (
    CHECKPOINT,
    METRICS_FILE,
    RESOLVED_RECIPE,
    TRAIN_RESULT,
    StageKind,
    model_dir,
    result_path,
)
from ssl_core.results.store import record_run
from ssl_core.run.cached_stage import cached_stage, read_result
from ssl_core.run.fingerprint import fingerprint
from ssl_core.run.locking import world_lock
from ssl_core.run.probe_plan import ProbePlan
from ssl_core.run.seeding import seed_everything
from ssl_core.run.stages import STAGES

#: bump when an evaluation result's content changes for the same inputs
EVALUATION_RESULT_VERSION = 1
#: bump when a probe result's content changes for the same inputs (2: bootstrap intervals)
PROBE_RESULT_VERSION = 2


def _dataset_stats(dataset: Dataset) -> dict[str, Any]:
    """What a dataset counted while reading (videos skipped, ...): `stats()` of a video
    dataset, or a `stats` mapping some image datasets keep."""
    stats = getattr(dataset, "stats", None)
    if callable(stats):
        return dict(stats())
    return dict(stats) if isinstance(stats, dict) else {}


class Runner:
    def __init__(self, loaded: LoadedRecipe, registry: Registry, *, run_dir: Path,
                 device: str = "auto", force: bool = False,
                 seeds: Sequence[int] | None = None) -> None:
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.registry = registry
        self.run_dir = run_dir
        self.device = resolve_device(device)
        self.force = force
        self.stages: tuple[str, ...] = STAGES
        #: every trained model is trained and measured once per seed, in run_dir/seed-N/
        self.seeds: list[int] = list(seeds if seeds is not None else (loaded.recipe.seeds or []))
        self._data_root: Path | None = None
        self._datasets: dict[str, Dataset] = {}
        self._encoders: dict[tuple[str, int | None], tuple[Encoder, str]] = {}
        #: the recipe's probes, resolved once for the probe stage and `probe_every` alike
        self.probes = ProbePlan(self.recipe, registry, self.resolved_config, self.dataset)
        self._cache: FeatureCache | None | bool = False  # decided on first use

    @property
    def cache(self) -> FeatureCache | None:
        """The feature cache, or None (with a warning) when its folder is not writable."""
        if self._cache is False:
            self._cache = shared_feature_cache()
        assert self._cache is None or isinstance(self._cache, FeatureCache)
        return self._cache

    def log(self, message: str) -> None:
        say(message)

    # -- data -----------------------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        if self._data_root is None:
            r = self.recipe
            if r.world is not None:
                world = self.registry.create("dataset", r.world, where="world")
                with world_lock(Path(world.root)), progress_bar() as progress:
                    world.prepare(progress=None if is_quiet() else progress)
                self._data_root = Path(world.root)
            elif r.data_root is not None:
                self._data_root = r.data_root.expanduser()
            else:
                self._data_root = Path.cwd()
        return self._data_root

    def resolved_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """A dataset config with a relative `root` resolved against the data root."""
        return resolved_dataset_config(config, self.data_root, self.registry)

    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            cfg = self.resolved_config(self.recipe.datasets[name])
            ds = self.registry.create("dataset", cfg, where=f"datasets.{name}")
            with progress_bar() as progress:  # e.g. inspecting a folder of videos
                ds.prepare(progress=None if is_quiet() else progress)
            self._datasets[name] = ds
        return self._datasets[name]

    # -- train ------------------------------------------------------------------------------
    def _model_fingerprint(self, name: str, model: ModelConfig) -> str:
        data: dict[str, Any] = {}
        if model.train is not None:
            data = {"dataset": self.resolved_config(self.recipe.datasets[model.train.dataset]),
                    "world": self._world_identity()}
            ref = model.train.sampler_encoder
            if ref is not None:  # the sampler's encoder shapes the pairs: its recipe does too
                data["sampler_encoder"] = self._model_fingerprint(ref, self.recipe.models[ref])
        # how fast the data comes and how often we log do not change the weights
        speed_only = {"train": {"num_workers", "prefetch_factor", "log_every", "probe_every"}}
        return fingerprint(model.model_dump(mode="json", exclude=speed_only), data)

    def _world_identity(self) -> dict[str, Any] | None:
        """The world's config without the parameters its class declares content-neutral."""
        world = self.recipe.world
        if world is None:
            return None
        cls = self.registry.get("dataset", str(world.get("type")), where="world").cls
        neutral = set(getattr(cls, "content_neutral_params", ()))
        return {k: v for k, v in world.items() if k not in neutral}

    def _model(self, name: str, seed: int | None) -> ModelConfig:
        """The model's config, with `seed` as its initialisation and training seed."""
        model = self.recipe.models[name]
        if seed is None or model.train is None:
            return model
        return model.model_copy(update={"init_seed": seed,
                                        "train": model.train.model_copy(update={"seed": seed})})

    def seeds_of(self, name: str) -> list[int | None]:
        """Trained models run once per seed; loaded and random ones once."""
        if self.seeds and self.recipe.models[name].train is not None:
            return list(self.seeds)
        return [None]

    def encoder(self, name: str, seed: int | None = None) -> tuple[Encoder, str]:
        """The model's encoder (trained, loaded or random) and its identity (weights digest)."""
        if (name, seed) in self._encoders:
            return self._encoders[(name, seed)]
        model = self._model(name, seed)
        if model.train is not None:
            encoder = self._train(name, model, model_dir(self.run_dir, seed, name))
        elif model.checkpoint is not None:
            from ssl_core.models.checkpoints import load_encoder

            path = model.checkpoint.path.expanduser()
            params = {k: v for k, v in model.encoder.items() if k != "type"}
            encoder, _ = load_encoder(path, format=model.checkpoint.format, arch=model.encoder["type"],
                                      prefix_map=model.checkpoint.prefix_map or None,
                                      encoder_params=params, registry=self.registry)
        else:
            encoder = seeded_encoder(self.registry, model.encoder, model.init_seed,
                                     where=f"models.{name}.encoder")
        encoder.eval()
        self._encoders[(name, seed)] = (encoder, encoder_identity(encoder))
        return self._encoders[(name, seed)]

    def _redo(self, stage: str) -> bool:
        """`--force` redoes the stages chosen with it, never the ones only reused."""
        return self.force and stage in self.stages

    def _train(self, name: str, model: ModelConfig, here: Path) -> Encoder:
        from ssl_core.run.trainer import Trainer, load_checkpoint

        assert model.train is not None
        t = model.train
        fp = self._model_fingerprint(name, model)
        train_path = here / TRAIN_RESULT
        ckpt_path = here / CHECKPOINT
        seed_everything(model.init_seed)
        encoder = seeded_encoder(self.registry, model.encoder, model.init_seed,
                                 where=f"models.{name}.encoder")
        redo = self._redo("train")
        finished = None
        if distributed.is_main() and not redo and read_result(train_path, fp) is not None and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            finished = ckpt if ckpt.get("fingerprint") == fp and ckpt.get("done") else None
        # rank 0 decides for all: the ranks must agree on whether to train at all. Only the
        # train stage reaches here on every rank; later stages reach it on rank 0 alone.
        together = "train" in self.stages
        if distributed.broadcast_object(finished is not None) if together else finished is not None:
            if finished is not None:  # other ranks never use the encoder: rank 0 alone measures
                encoder.load_state_dict(finished["encoder_state_dict"])
                self.log(f"[dim]train {name}: up to date, skipped ({train_path})[/dim]")
            return encoder
        if "train" not in self.stages:
            raise SslcError(f"model {name!r} has not been trained in {self.run_dir} "
                            f"(no finished {ckpt_path.name} matching the recipe)",
                            "add train to --stages, or run without --stages")
        if redo and ckpt_path.exists() and distributed.is_main():
            ckpt_path.unlink()
        objective = self.registry.create("objective", t.objective, where=f"models.{name}.train.objective")
        objective.bind(encoder)
        sampler = self.registry.create("pair-sampler", t.pair_sampler, where=f"models.{name}.train.pair_sampler")
        self._give_sampler_encoder(sampler, name, t.sampler_encoder, model.train.seed)
        dataset = self.dataset(t.dataset)
        pairs = sampler.pairs(dataset)
        trainer = Trainer(objective, pairs, t, device=self.device, checkpoint_path=ckpt_path,
                          fingerprint=fp, encoder_config=model.encoder, description=f"train {name}",
                          on_device=sampler.on_device,
                          pairs_from=f"pair sampler {t.pair_sampler['type']!r} "
                                     f"(models.{name}.train.pair_sampler)")
        hook = None
        if t.probe_every is not None:  # RIS over training: rank 0 probes at epoch ends
            from ssl_core.run.training_probes import TrainingProbes

            hook = TrainingProbes(self.probes, name, here, fp, trainer, every=t.probe_every,
                                  fresh=redo, device=self.device, cache=lambda: self.cache, log=self.log)
        result = trainer.fit(on_epoch_end=hook)
        encoder = objective.encoder.cpu()
        if distributed.is_main():
            write_json(train_path, {
                "stage": "train", "model": name, "fingerprint": fp, "steps": result.steps,
                "epochs": result.epochs, "final_loss": result.final_loss,
                "images_per_s": result.images_per_s, "resumed_from_step": result.resumed_from_step,
                "device": str(self.device), "world_size": result.world_size, "checkpoint": str(ckpt_path),
                "metrics": str(here / METRICS_FILE), "loss_history": result.history,
                "dataset_stats": _dataset_stats(dataset), "pair_stats": sampler.stats(),
            })
        distributed.barrier()  # the model's checkpoint and result exist before any rank goes on
        return encoder

    def _give_sampler_encoder(self, sampler: PairSampler, name: str, ref: str | None,
                              seed: int) -> None:
        where = f"models.{name}.train"
        if ref is None:
            if sampler.wants_encoder:
                raise RecipeError(f"{where}.pair_sampler: {type(sampler).__name__} needs a frozen "
                                  "encoder", f"set `sampler_encoder: <model name>` in {where}")
            return
        if not sampler.wants_encoder:
            raise RecipeError(f"{where}.sampler_encoder: the pair sampler "
                              f"{type(sampler).__name__} uses no encoder", "remove sampler_encoder")
        trained = self.recipe.models[ref].train is not None
        encoder, encoder_id = self.encoder(ref, seed if trained and self.seeds else None)
        sampler.use_encoder(encoder, encoder_id)

    # -- probe ------------------------------------------------------------------------------
    def probe(self, model_name: str, probe_name: str, seed: int | None = None) -> dict[str, Any]:
        settings = self.recipe.probe_settings
        planned = self.probes[probe_name]
        encoder, enc_id = self.encoder(model_name, seed)
        fp = fingerprint(enc_id, *self.probes.identity(probe_name), PROBE_RESULT_VERSION)

        def compute() -> dict[str, Any]:
            row, _ = measure(
                encoder, planned.probe, self.probes.probe_set(probe_name), top_k=settings.top_k,
                cache=self.cache, encoder_id=enc_id, batch_size=settings.batch_size,
                num_workers=settings.num_workers, device=self.device,
                allow_tf32=settings.allow_tf32, resamples=settings.resamples,
                description=f"features {model_name}/{probe_name}")
            return {"stage": "probe", "model": model_name, "probe": probe_name,
                    "type": planned.config["type"], "seed": seed, "fingerprint": fp,
                    "device": str(self.device), **row}

        return cached_stage(result_path(self.run_dir, seed, "probes", model_name, probe_name), fp,
                            compute, redo=self._redo("probe"), log=self.log,
                            label=f"probe {model_name}/{probe_name}")

    # -- evaluate ---------------------------------------------------------------------------
    def evaluate(self, model_name: str, eval_name: str, seed: int | None = None) -> dict[str, Any]:
        ev = split_config(self.recipe.evaluations[eval_name])
        if ev.model is not None and ev.model != model_name:
            return {}
        evaluator = self.registry.create("evaluator", ev.component, where=f"evaluations.{eval_name}")
        ds_cfg = (self.resolved_config(self.recipe.datasets[ev.dataset]) if ev.dataset
                  else self.resolved_config({"type": evaluator.dataset_type}))
        test_cfg = (self.resolved_config(self.recipe.datasets[ev.test_dataset])
                    if ev.test_dataset else None)
        encoder, enc_id = self.encoder(model_name, seed)
        settings = self.recipe.probe_settings
        fp = fingerprint(enc_id, ev.component, ds_cfg, test_cfg, self.recipe.world,
                         EVALUATION_RESULT_VERSION)

        def compute() -> dict[str, Any]:
            if ev.dataset:
                dataset = self.dataset(ev.dataset)
            else:
                dataset = self.registry.create("dataset", ds_cfg, where=f"evaluations.{eval_name}")
                dataset.prepare()
            test_dataset = self.dataset(ev.test_dataset) if ev.test_dataset else None
            row, _ = run_evaluation(encoder, evaluator, dataset, test_dataset=test_dataset,
                                    cache=self.cache, encoder_id=enc_id,
                                    batch_size=settings.batch_size, num_workers=settings.num_workers,
                                    device=self.device, allow_tf32=settings.allow_tf32,
                                    description=f"{model_name}/{eval_name}")
            return {"stage": "evaluate", "model": model_name, "evaluation": eval_name,
                    "type": ev.component["type"], "seed": seed, "fingerprint": fp,
                    "device": str(self.device), **row}

        return cached_stage(result_path(self.run_dir, seed, "evaluations", model_name, eval_name),
                            fp, compute, redo=self._redo("evaluate"), log=self.log,
                            label=f"evaluate {model_name}/{eval_name}")

    # -- all --------------------------------------------------------------------------------
    def _stage(self, stage: str, model: str, names: Sequence[str], kind: StageKind
               ) -> dict[str, Any]:
        """One stage's results for a model: computed (or up to date) when the stage was
        chosen, else whatever an earlier run left on disk. With seeds, a trained model's
        result per name is the list of per-seed results."""
        out: dict[str, Any] = {}
        for name in names:
            per_seed = []
            for seed in self.seeds_of(model):
                res: dict[str, Any] | None
                if stage in self.stages:
                    res = (self.probe if stage == "probe" else self.evaluate)(model, name, seed)
                else:
                    res = read_result(result_path(self.run_dir, seed, kind, model, name))
                if res:
                    per_seed.append(res)
            if per_seed:
                out[name] = per_seed if self.seeds_of(model) != [None] else per_seed[0]
        return out

    def _remove_stale_temporaries(self) -> None:
        """Half-written files of a killed run (atomic writes' `.NAME.*.tmp`): nobody else
        writes here while this run holds the directory."""
        for tmp in self.run_dir.rglob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)

    def run(self, stages: Sequence[str] = STAGES) -> dict[str, Any]:
        """Every stage, and the report. Every model is trained (or found up to date) before
        the first probe. Under torchrun, ranks other than 0 return `{}` once training is done:
        probing, evaluation and the report run once, on rank 0."""
        self.stages = tuple(stages)
        started = time.time()  # the report's wall time
        main = distributed.is_main()
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temporaries()
            write_text(self.run_dir / RESOLVED_RECIPE,
                       yaml.safe_dump(self.recipe.model_dump(mode="json"), sort_keys=False))
        r = self.recipe
        if "train" in stages:
            if distributed.world_size() > 1 and r.world is not None:
                # one renderer: rank 0 renders the world, the others then find it ready
                if main:
                    _ = self.data_root
                distributed.barrier()
                _ = self.data_root
            for model in r.models:
                if not main and r.models[model].train is None:
                    continue  # loaded and random encoders are rank 0's alone to measure
                for seed in self.seeds_of(model):
                    self.encoder(model, seed)
        if not main:
            return {}
        for model in r.models:  # each result is written where the report reads it back
            self._stage("probe", model, list(r.probes), "probes")
            self._stage("evaluate", model, list(r.evaluations), "evaluations")
        record_run(self.run_dir, r, started=started, stages=self.stages, device=str(self.device),
                   world_size=distributed.world_size(), seeds=self.seeds)
        # the same files and code as `sslc report RUN_DIR`: both give the same report
        return render_report(self.run_dir, r, device=str(self.device), write="report" in stages)
