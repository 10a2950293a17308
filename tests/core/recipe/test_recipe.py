"""Recipes: structure and component validation with YAML paths and lines, extends, profiles, --set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssl_core.errors import ComponentError, RecipeError
from ssl_core.plugin.host import get_registry
from ssl_core.recipe.schema import load_recipe, recipe_json_schema

BASE = """\
name: base
datasets:
  train: {type: image-folder, root: imagenet/train}
models:
  m:
    encoder: {type: resnet18}
    train:
      dataset: train
      pair_sampler: {type: aggressive-crop, size: 32}
      objective: {type: moco-queue, queue_size: 64}
      epochs: 2
      batch_size: 8
profiles:
  paper:
    data_root: /datasets
    models:
      m:
        encoder: {type: resnet50}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_recipe_and_defaults(tmp_path: Path) -> None:
    loaded = load_recipe(write(tmp_path, "r.yaml", BASE))
    t = loaded.recipe.models["m"].train
    assert t is not None and t.epochs == 2 and t.lr == 0.03 and t.momentum == 0.9
    assert loaded.recipe.profile == "synthetic"


def test_profile_overlays_the_base(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "r.yaml", BASE), profile="paper").recipe
    assert r.models["m"].encoder["type"] == "resnet50"
    assert r.models["m"].train is not None  # merged, not replaced
    assert str(r.data_root) == "/datasets" and r.profile == "paper"


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no profile 'cluster'"):
        load_recipe(write(tmp_path, "r.yaml", BASE), profile="cluster")


def test_set_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE)
    r = load_recipe(path, overrides=["models.m.train.epochs=5", "models.m.train.lr=0.5"]).recipe
    assert r.models["m"].train.epochs == 5 and r.models["m"].train.lr == 0.5
    with pytest.raises(RecipeError, match="models.m.train.epochs .*integer"):
        load_recipe(path, overrides=["models.m.train.epochs=many"])
    with pytest.raises(RecipeError, match="no mapping at 'models.q'"):
        load_recipe(path, overrides=["models.q.train.epochs=5"])
    with pytest.raises(RecipeError, match="models.m.train.epochz.*unknown key"):
        load_recipe(path, overrides=["models.m.train.epochz=5"])


def test_extends_merges_onto_the_base(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\nmodels:\n  m:\n    train:\n      epochs: 9\n")
    r = load_recipe(child).recipe
    assert r.name == "child" and r.models["m"].train.epochs == 9 and r.models["m"].train.batch_size == 8


def test_extends_loop_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\n")
    with pytest.raises(RecipeError, match="loops"):
        load_recipe(tmp_path / "a.yaml")


def test_misspelled_component_parameter_names_path_and_line(tmp_path: Path) -> None:
    text = BASE.replace("{type: moco-queue, queue_size: 64}", "{type: moco-queue, queue_sise: 64}")
    with pytest.raises(ComponentError) as err:
        load_recipe(write(tmp_path, "r.yaml", text))
    msg = str(err.value)
    assert "models.m.train.objective.queue_sise (" in msg and "r.yaml:10): unknown parameter" in msg


def test_structure_error_names_the_line(tmp_path: Path) -> None:
    text = BASE.replace("      batch_size: 8", "      batch_size: -8")
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, "r.yaml", text))
    assert "models.m.train.batch_size" in str(err.value) and "r.yaml:12" in str(err.value)


def test_train_dataset_must_exist(tmp_path: Path) -> None:
    text = BASE.replace("      dataset: train", "      dataset: trian")
    with pytest.raises(RecipeError, match="no dataset named 'trian'"):
        load_recipe(write(tmp_path, "r.yaml", text))


def test_schema_includes_component_parameters() -> None:
    schema = recipe_json_schema(get_registry())
    text = json.dumps(schema)
    variants = schema["$defs"]["objective-component"]["oneOf"]
    moco = next(v for v in variants if v["properties"]["type"]["const"] == "moco-queue")
    assert "queue_size" in moco["properties"] and moco["additionalProperties"] is False
    assert '"#/$defs/encoder-component"' in text


# -- issue 10 ---------------------------------------------------------------------------------
def test_duplicate_keys_are_an_error_with_both_lines(tmp_path: Path) -> None:
    text = BASE.replace("      epochs: 2\n", "      epochs: 2\n      lr: 0.1\n      epochs: 7\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, "r.yaml", text))
    assert "models.m.train.epochs" in str(err.value) and "lines 11 and 13" in str(err.value)
    assert "r.yaml:13" in str(err.value)


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = BASE.replace("      epochs: 2\n      batch_size: 8\n",
                        "      <<: {epochs: 2, batch_size: 8}\n      epochs: 3\n")
    assert load_recipe(write(tmp_path, "r.yaml", text)).recipe.models["m"].train.epochs == 3


@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/b", "a\\\\b", ".hidden", "", "x" * 101])
def test_recipe_name_is_a_plain_name(tmp_path: Path, name: str) -> None:
    text = BASE.replace("name: base", f"name: {json.dumps(name)}")
    with pytest.raises(RecipeError, match="name .*plain name"):
        load_recipe(write(tmp_path, "r.yaml", text))


def test_relative_data_root_resolves_against_the_recipe_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "recipes").mkdir()
    write(tmp_path / "recipes", "base.yaml", BASE + "data_root: ../data\n")
    child = write(tmp_path / "recipes", "child.yaml", "extends: base.yaml\nname: child\n")
    monkeypatch.chdir("/")  # anywhere but the recipes' folder
    assert load_recipe(child).recipe.data_root == tmp_path / "recipes" / ".." / "data"
    r = load_recipe(child, overrides=["data_root=elsewhere"]).recipe
    assert r.data_root == Path("/") / "elsewhere"  # from --set: relative to the current directory
    assert load_recipe(child, profile="paper").recipe.data_root == Path("/datasets")


@pytest.mark.parametrize("top_k, needle", [("[]", "at least 1 item"), ("[0, 10]", "at least 1"),
                                           ("[-5]", "at least 1"), ("[10, 10]", "repeat")])
def test_top_k_must_be_non_empty_positive_and_unique(tmp_path: Path, top_k: str, needle: str) -> None:
    text = BASE.replace("profiles:", f"probe_settings:\n  top_k: {top_k}\nprofiles:")
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, "r.yaml", text))
    assert "probe_settings.top_k" in str(err.value) and needle in str(err.value)


def test_seeds_in_the_recipe_and_from_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "seeds: [0, 1]\n")
    assert load_recipe(path).recipe.seeds == [0, 1]
    assert load_recipe(path, seeds=[3]).recipe.seeds == [3]
    assert load_recipe(write(tmp_path, "s.yaml", BASE)).recipe.seeds is None
    with pytest.raises(RecipeError, match=r"seeds \(.*r.yaml:\d+\).*repeat"):
        load_recipe(write(tmp_path, "r.yaml", BASE + "seeds: [1, 1]\n"))
    with pytest.raises(RecipeError, match=r"seeds \(from --seeds \): .*at least 1 item"):
        load_recipe(path, seeds=[])


def test_set_errors_say_the_value_came_from_set(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, overrides=["models.m.train.epochs=many"])
    assert "models.m.train.epochs (from --set models.m.train.epochs=many)" in str(err.value)
    assert "r.yaml:11" not in str(err.value)  # the file's `epochs: 2` is not the culprit
    with pytest.raises(RecipeError, match=r"epochz \(from --set models.m.train.epochz=5\): unknown key"):
        load_recipe(path, overrides=["models.m.train.epochz=5"])
    with pytest.raises(ComponentError, match=r"queue_sise \(from --set"):
        load_recipe(path, overrides=["models.m.train.objective={type: moco-queue, queue_sise: 3}"])


def test_set_errors_point_at_the_line_that_holds_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE)
    with pytest.raises(RecipeError, match=r"no mapping at 'models.q' \(looked in models \(.*r.yaml:4\)\)"):
        load_recipe(path, overrides=["models.q.train.epochs=5"])
    with pytest.raises(RecipeError, match=r"models.m.train.epochs \(.*r.yaml:11\) holds a value"):
        load_recipe(path, overrides=["models.m.train.epochs.x=5"])


def test_schema_accepts_the_keys_validate_accepts() -> None:
    """`model` on an evaluation and `dataset` on a probe are the runner's, not the plugin's:
    the exported JSON Schema lists them, so editors accept what `sslc validate` accepts."""
    from ssl_core.interfaces import Evaluator, InvarianceProbe
    from ssl_core.plugin.registry import Registry, make_spec
    from ssl_core.recipe.schema import RECIPE_KEYS, recipe_json_schema

    class Eval(Evaluator):
        def __init__(self, params: object) -> None: ...

        def evaluate(self, encoder, progress=None):  # type: ignore[no-untyped-def]
            return {}

    class Probe(InvarianceProbe):
        dataset_type = "x"

        def __init__(self, params: object) -> None: ...

        def build(self, dataset):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    reg = Registry()
    reg.add(make_spec("evaluator", "fake", None, "fake-eval", Eval, None, ""))
    reg.add(make_spec("invariance-probe", "fake", None, "fake-probe", Probe, None, ""))
    defs = recipe_json_schema(reg)["$defs"]
    [ev] = defs["evaluator-component"]["oneOf"]
    [pr] = defs["invariance-probe-component"]["oneOf"]
    assert set(RECIPE_KEYS["evaluator"]) <= set(ev["properties"])
    assert set(RECIPE_KEYS["invariance-probe"]) <= set(pr["properties"])


def test_a_checkpoint_format_is_any_registered_one(tmp_path: Path) -> None:
    """Not a fixed list: a third-party format registered by a plugin can be named too."""
    from ssl_core.plugin.registry import checkpoint_formats

    def recipe(fmt: str) -> Path:
        path = tmp_path / "r.yaml"
        path.write_text("name: r\nmodels:\n  m:\n    encoder: {type: resnet18}\n"
                        f"    checkpoint: {{path: w.pth, format: {fmt}}}\n")
        return path

    registered = [f for f in checkpoint_formats(get_registry()) if f not in ("auto", "plain", "sslc")]
    assert registered, "no plugin registers a checkpoint format"
    assert load_recipe(recipe(registered[0])).recipe.models["m"].checkpoint.format == registered[0]
    with pytest.raises(RecipeError, match=r"r.yaml:5.*'mocov9' is not a checkpoint format") as e:
        load_recipe(recipe("mocov9"))
    assert "choose from auto, plain, sslc" in e.value.hint


# -- issue 20 item 9: what `sslc validate` catches before any training ---------------------


def test_resamples_too_few_for_a_95_interval(tmp_path: Path) -> None:
    text = BASE + "probe_settings: {resamples: 5}\n"
    with pytest.raises(RecipeError, match=r"probe_settings\.resamples.*r\.yaml:\d+.*95%"):
        load_recipe(write(tmp_path, "r.yaml", text))
    load_recipe(write(tmp_path, "r.yaml", BASE + "probe_settings: {resamples: 0}\n"))


REPORT = BASE.replace("profiles:", """\
  other:
    encoder: {type: resnet18}
report:
  baseline: BASELINE
  claims:
    - {claim: better, model: MODEL, probe: p, direction: higher}
profiles:""")


def report_recipe(baseline: str, model: str) -> str:
    return REPORT.replace("BASELINE", baseline).replace("MODEL", model)


def test_report_naming_a_model_that_does_not_exist_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", report_recipe("mm", "other"))
    with pytest.raises(RecipeError, match=r"report\.baseline \(.*r\.yaml:\d+\).*'mm'") as info:
        load_recipe(path)
    assert "m, other" in (info.value.hint or "")
    path = write(tmp_path, "r.yaml", report_recipe("m", "otehr"))
    with pytest.raises(RecipeError, match=r"report\.claims\.0\.model \(.*r\.yaml:\d+\).*'otehr'"):
        load_recipe(path)


def test_a_report_model_dropped_by_set_or_a_profile_is_allowed(tmp_path: Path) -> None:
    """The report then says the model is not in this run; a typo is what is refused."""
    path = write(tmp_path, "r.yaml", report_recipe("m", "other"))
    loaded = load_recipe(path, overrides=["models.other=null"])
    assert "other" not in loaded.recipe.models


def test_a_sampler_that_wants_an_encoder_without_sampler_encoder(tmp_path: Path) -> None:
    from helpers import require_plugins

    require_plugins("selective-search-tracker", "video-folder")
    text = BASE.replace("pair_sampler: {type: aggressive-crop, size: 32}",
                        "pair_sampler: {type: selective-search-tracker}").replace(
        "train: {type: image-folder, root: imagenet/train}", "train: {type: video-folder, root: v}")
    with pytest.raises(RecipeError, match=r"models\.m\.train\.pair_sampler \(.*r\.yaml:\d+\).*"
                                          r"frozen encoder") as info:
        load_recipe(write(tmp_path, "r.yaml", text))
    assert "sampler_encoder" in (info.value.hint or "")


def test_a_probe_on_a_dataset_of_video_files_is_refused(tmp_path: Path) -> None:
    from helpers import require_plugins

    require_plugins("video-folder", "aloi-viewpoint")
    text = BASE.replace("profiles:", """\
probes:
  view: {type: aloi-viewpoint, dataset: clips}
profiles:""").replace("datasets:\n", "datasets:\n  clips: {type: video-folder, root: v}\n")
    with pytest.raises(RecipeError, match=r"probes\.view\.dataset \(.*r\.yaml:\d+\).*video files"):
        load_recipe(write(tmp_path, "r.yaml", text))


def test_probe_every_without_probes_is_refused(tmp_path: Path) -> None:
    """It would print "done before, skipped" at every epoch of a fresh run."""
    text = BASE.replace("      batch_size: 8\n", "      batch_size: 8\n      probe_every: 1\n", 1)
    with pytest.raises(RecipeError, match=r"models\.m\.train\.probe_every \(.*r\.yaml:\d+\).*no probes") as info:
        load_recipe(write(tmp_path, "r.yaml", text))
    assert "probe_every=null" in (info.value.hint or "")


def test_every_typo_in_a_recipe_is_reported_at_once_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: r\ndatasets:\n  train: {type: image-folder, root: x}\nmodels:\n  m:\n"
        "    encoder: {type: resnet18, smal_input: true}\n    train:\n      dataset: train\n"
        "      pair_sampler: {type: aggressive-crop, sise: 16}\n"
        "      objective: {type: moco-queue, queue_sise: 16}\n")
    with pytest.raises(ComponentError) as e:
        load_recipe(path)
    text = str(e.value)
    assert "3 components of the recipe are wrong" in text
    for line, typo, meant in ((6, "smal_input", "small_input"), (9, "sise", "size"),
                              (10, "queue_sise", "queue_size")):
        assert f"{typo} ({path}:{line}): unknown parameter; did you mean '{meant}'?" in text


def test_an_objective_needing_keys_the_sampler_does_not_give_is_refused(tmp_path: Path) -> None:
    """region-moco reads region boxes: with a sampler of plain view pairs it would fail deep in
    training; `sslc validate` names the YAML line and the samplers that fit."""
    registry = get_registry()
    if not {"region-moco"} <= set(registry.names("objective")) or \
            "aggressive-crop" not in registry.names("pair-sampler"):
        pytest.skip("needs the region-moco and aggressive-crop plugins")
    path = tmp_path / "r.yaml"
    path.write_text("name: r\ndatasets:\n  train: {type: image-folder, root: x}\nmodels:\n  m:\n"
                    "    encoder: {type: resnet18}\n    train:\n      dataset: train\n"
                    "      pair_sampler: {type: aggressive-crop}\n"
                    "      objective: {type: region-moco}\n")
    with pytest.raises(RecipeError, match=r"objective \(.*r.yaml:10\): objective .region-moco. reads "
                                          r"box_valid, key_boxes, query_boxes") as e:
        load_recipe(path)
    assert "use a pair sampler that gives them (" in e.value.hint
