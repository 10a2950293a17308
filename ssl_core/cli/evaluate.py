"""`sslc evaluate`: a downstream evaluation (e.g. VOC07 SVM) of any checkpoint; the twin of
`sslc probe`, through the same evaluation module as recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ssl_core.cli.encoder_source import (
    checkpoint_options,
    extraction_options,
    load_source,
    parse_prefix_map,
    say,
)
from ssl_core.cli.options import json_option, parse_options, quiet_option
from ssl_core.errors import ComponentError
from ssl_core.kit.progress import results_console


def _table(result: dict[str, Any]) -> Table:
    table = Table(title=f"{result['evaluator']} of {result['source'].get('checkpoint')}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        table.add_row(key, "-" if value is None else f"{value:.2f}")
    return table


@click.command()
@click.option("--checkpoint", required=True, metavar="PATH|random:ARCH",
              help="Checkpoint to evaluate (MoCo, torchvision, plain or sslc), or random:ARCH for a "
                   "randomly initialised baseline with a fixed seed.")
@click.option("--evaluator", "evaluator_name", required=True, metavar="NAME",
              help="Evaluator, e.g. voc07-svm or linear-softmax; see `sslc plugins`.")
@click.option("--data", "data", required=True, metavar="ROOT", help="Root of the evaluator's dataset.")
@click.option("--dataset", "dataset_type", default=None, metavar="TYPE",
              help="Dataset type at ROOT (default: the evaluator's own, e.g. voc2007; "
                   "voc2007-cropped-boxes for the cropped-box benchmark).")
@click.option("--test-data", "test_data", default=None, metavar="ROOT",
              help="A second dataset (same type) to test on, instead of ROOT's test subset.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="An evaluator parameter, e.g. n_jobs=4 or image_size=224 (repeatable).")
@click.option("--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
              help="A dataset parameter, e.g. table_vs_chair=true (repeatable).")
@checkpoint_options
@extraction_options
@click.option("--save-features", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the features the evaluation used as one .npz (per feature set: "
                   "NAME.feat, NAME.paths, NAME.boxes, NAME.labels).")
@quiet_option
@json_option
def evaluate(checkpoint: str, evaluator_name: str, data: str, dataset_type: str | None,
             test_data: str | None, options: tuple[str, ...], dataset_options: tuple[str, ...],
             fmt: str, arch: str | None, checkpoint_key: str | None, prefix_map: tuple[str, ...],
             strict: bool,
             batch_size: int, workers: int, device: str, save_features: Path | None,
             no_cache: bool, allow_tf32: bool, as_json: bool) -> None:
    """Evaluate a checkpoint downstream (VOC07 SVM, linear softmax, ...).

    \b
      sslc evaluate --checkpoint moco_v2_200ep_pretrain.pth.tar --evaluator voc07-svm --data /data/VOCdevkit
      sslc evaluate --checkpoint random:resnet50 --evaluator voc07-svm --data /data/voc --dataset voc2007-cropped-boxes
      sslc evaluate --checkpoint ckpt.pth --evaluator linear-softmax --data /data/imagenet --json
    """
    from ssl_core.kit.atomic import check_output_path
    from ssl_core.measure.evaluation import evaluate as run_evaluation
    from ssl_core.measure.evaluation import save_features as write_features
    from ssl_core.plugin.host import get_registry

    if save_features is not None:
        check_output_path(save_features, "--save-features")
    registry = get_registry()
    # everything a typo can break is built before the encoder is loaded or any image read
    evaluator = registry.create("evaluator", {"type": evaluator_name, **parse_options(options, "--option")},
                                where="--evaluator")
    ds_type = dataset_type or getattr(evaluator, "dataset_type", "")
    if not ds_type:
        raise ComponentError(f"evaluator {evaluator_name!r} names no default dataset type",
                             "give --dataset TYPE")
    ds_params = parse_options(dataset_options, "--dataset-option")
    dataset = registry.create("dataset", {"type": ds_type, "root": data, **ds_params}, where="--dataset")
    test_dataset = None
    if test_data is not None:
        test_dataset = registry.create("dataset", {"type": ds_type, "root": test_data, **ds_params},
                                       where="--test-data")
    dataset.prepare()
    if test_dataset is not None:
        test_dataset.prepare()

    encoder, source = load_source(checkpoint, registry, fmt=fmt, arch=arch,
                                  prefix_map=parse_prefix_map(prefix_map), strict=strict,
                                  checkpoint_key=checkpoint_key)
    from ssl_core.measure.features import shared_feature_cache

    row, used = run_evaluation(
        encoder, evaluator, dataset, test_dataset=test_dataset, cache=shared_feature_cache(not no_cache),
        encoder_id=source["encoder_id"], batch_size=batch_size, num_workers=workers,
        device=None if device == "auto" else device, allow_tf32=allow_tf32,
        description=evaluator_name)
    result: dict[str, Any] = {
        "source": source, "evaluator": evaluator_name, "dataset": ds_type, "data_root": data,
        "test_data_root": test_data, **row,
    }
    if save_features is not None:
        write_features(save_features, used)
        result["features_file"] = str(save_features)
        say(f"[dim]features saved to {save_features}[/dim]")
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        results_console().print(_table(result))
