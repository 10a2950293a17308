"""`voc07-svm`: the VOC07 linear SVM benchmark of FAIR's SSL benchmark, on frozen features.

Per class: L2-normalised features, a LinearSVC per cost (class_weight {1: 2, -1: 1},
squared hinge, dual, tol 1e-4, max_iter 2000), the cost chosen by 3-fold
cross-validation scored with average precision, then the chosen SVM refitted on the
whole train subset and scored on the test subset with the all-point VOC AP (difficult
images excluded per class; at training they are negatives). mAP = mean over classes.

Multi-label records carry `meta["targets"]` ({class: 1 | -1 | 0}, as `voc2007`); single-
label records (`voc2007-cropped-boxes`) are one-vs-rest over their labels. The
(class, cost) fits run in parallel with joblib.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ssl_core import (
    DataError,
    Dataset,
    EvaluationResult,
    Evaluator,
    FeatureFn,
    ImageRecord,
    Params,
    Preprocessing,
    Register,
    hookimpl,
)

#: reference-facts section 3
DEFAULT_COSTS = (0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0)


def voc_ap(scores: np.ndarray, positive: np.ndarray) -> float:
    """All-point interpolated VOC AP: the area under the monotone precision envelope,
    summed over the recall steps. NaN when there is no positive."""
    scores = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    npos = int(pos.sum())
    if npos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(pos[order])
    fp = np.cumsum(~pos[order])
    rec = np.concatenate(([0.0], tp / npos, [1.0]))
    prec = np.concatenate(([0.0], tp / np.maximum(tp + fp, 1), [0.0]))
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    steps = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """As FAIR's benchmark: x / (||x|| + 1e-5), in float64."""
    x = np.asarray(features, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=1) + 1e-5)[:, None]


def target_matrix(records: Sequence[ImageRecord], classes: Sequence[str] | None = None
                  ) -> tuple[list[str], np.ndarray]:
    """(classes, N x C int8 matrix of 1 / -1 / 0) from `meta["targets"]` or single labels."""
    multi = [r.meta.get("targets") for r in records]
    if all(isinstance(t, dict) for t in multi):
        names = list(classes) if classes is not None else sorted(multi[0])  # type: ignore[arg-type]
        try:
            mat = np.array([[t[c] for c in names] for t in multi], dtype=np.int8)  # type: ignore[index]
        except KeyError as exc:
            raise DataError(f"an image has no target for class {exc.args[0]!r}",
                            "train and test subsets must list the same classes") from None
        return names, mat
    labels = [r.label for r in records]
    if any(label is None for label in labels):
        raise DataError("voc07-svm needs labelled records (`meta['targets']` per class, or a "
                        "single label per image)", "use a voc2007 or voc2007-cropped-boxes dataset")
    names = list(classes) if classes is not None else sorted({str(x) for x in labels})
    lab = np.asarray(labels, dtype=object)
    mat = np.where(lab[:, None] == np.asarray(names, dtype=object)[None, :], 1, -1).astype(np.int8)
    return names, mat


def _svm(cost: float, seed: int) -> Any:
    from sklearn.svm import LinearSVC

    return LinearSVC(C=cost, class_weight={1: 2, -1: 1}, intercept_scaling=1.0, penalty="l2",
                     loss="squared_hinge", tol=1e-4, dual=True, max_iter=2000, random_state=seed)


def cross_val_ap(x: np.ndarray, y: np.ndarray, cost: float, folds: int, seed: int) -> float:
    """Mean average precision of `folds`-fold cross-validation (sklearn's stratified folds,
    unshuffled, as the benchmark's `cross_val_score(cv=3)`); NaN when undefined."""
    from sklearn.model_selection import cross_val_score

    with _quiet_sklearn():
        try:
            scores = cross_val_score(_svm(cost, seed), x, y, cv=folds, scoring="average_precision",
                                     error_score=np.nan)
        except ValueError:
            return float("nan")
    return float(np.mean(scores))


@contextlib.contextmanager
def _quiet_sklearn() -> Iterator[None]:
    """Silence liblinear's non-convergence at max_iter (the protocol's), undefined AP on a
    fold without positives and folds with fewer positives than folds: expected on small
    classes, and AP is NaN where it matters. `svm_sweep` enters this once in the calling
    thread: the filters are process-wide, and entering them in each joblib thread would
    restore them out of order and let warnings through."""
    from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def fit_and_score(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, cost: float, seed: int
                  ) -> np.ndarray:
    """Decision values on the test rows of the SVM fitted on all training rows."""
    with _quiet_sklearn():
        clf = _svm(cost, seed).fit(x, y)
    return np.asarray(clf.decision_function(x_test), dtype=np.float64)


def svm_sweep(train_x: np.ndarray, train_t: np.ndarray, test_x: np.ndarray, test_t: np.ndarray,
              *, costs: Sequence[float] = DEFAULT_COSTS, folds: int = 3, n_jobs: int = 1,
              seed: int = 0, progress: Any | None = None,
              classes: Sequence[str] | None = None) -> dict[str, Any]:
    """The whole benchmark on features (rows L2-normalised here) and 1/-1/0 target matrices.

    Returns per-class AP (NaN where a class has no positive to train or test on), the
    cross-validation AP matrix and the chosen costs. Parallel over (class, cost) pairs,
    then over classes; the result does not depend on `n_jobs`.
    """
    from joblib import Parallel, delayed

    x, xt = l2_normalise(train_x), l2_normalise(test_x)
    n_cls = train_t.shape[1]
    y = np.where(train_t == 1, 1, -1)  # difficult (0) count as negatives at training
    trainable = [c for c in range(n_cls) if 0 < (y[:, c] == 1).sum() < len(y)]
    check_folds(y, trainable, folds, classes)
    task = progress.add_task("svm sweep", total=len(trainable) * (len(costs) + 1), info="") \
        if progress is not None else None

    def advance(results: Any) -> list[Any]:
        out = []
        for r in results:
            out.append(r)
            if progress is not None and task is not None:
                progress.advance(task)
        return out

    # liblinear releases the GIL: threads share the features without copies or worker start-up
    parallel = Parallel(n_jobs=n_jobs, return_as="generator", prefer="threads")
    cv = np.full((n_cls, len(costs)), np.nan)
    pairs = [(c, k) for c in trainable for k in range(len(costs))]
    with _quiet_sklearn():
        for (c, k), ap in zip(pairs, advance(parallel(
                delayed(cross_val_ap)(x, y[:, c], costs[k], folds, seed) for c, k in pairs)), strict=True):
            cv[c, k] = ap
        # the first best cost (np.argmax, as the benchmark); NaN folds never win
        chosen = {c: float(costs[int(np.argmax(np.nan_to_num(cv[c], nan=-np.inf)))]) for c in trainable}
        scores = advance(parallel(delayed(fit_and_score)(x, y[:, c], xt, chosen[c], seed)
                                  for c in trainable))
    ap = np.full(n_cls, np.nan)
    for c, s in zip(trainable, scores, strict=True):
        keep = test_t[:, c] != 0  # difficult excluded at test
        ap[c] = voc_ap(s[keep], test_t[keep, c] == 1)
    return {"ap": ap, "cv_ap": cv, "chosen_cost": chosen}


def check_folds(y: np.ndarray, trainable: Sequence[int], folds: int,
                classes: Sequence[str] | None = None) -> None:
    """Refuse, before any fit, a class with fewer positives or negatives than folds: its
    stratified folds cannot all hold both, every cross-validation AP is NaN, and the first
    cost would be chosen silently."""
    for c in trainable:
        npos = int((y[:, c] == 1).sum())
        nneg = len(y) - npos
        if min(npos, nneg) < folds:
            name = classes[c] if classes is not None else c
            small = max(2, min(npos, nneg))
            fix = (f"set the evaluator's `folds` to {small} or less, or " if min(npos, nneg) >= 2
                   else "")
            raise DataError(
                f"voc07-svm: class {name!r} has {npos} positive(s) and {nneg} negative(s) in the "
                f"train subset, fewer than folds={folds}: its cost cannot be cross-validated",
                f"{fix}use a train subset with at least {folds} positives and {folds} negatives "
                "for every class")


class Voc07SvmParams(Params):
    costs: list[float] = Field(default_factory=lambda: list(DEFAULT_COSTS), min_length=1)
    folds: int = Field(3, ge=2)
    image_size: int = Field(224, ge=8)
    train_subset: str = "trainval"
    test_subset: str = "test"
    n_jobs: int = -1
    seed: int = 0


class Voc07Svm(Evaluator):
    """Per-class linear SVMs on frozen features; AP per class and mAP, in percent."""

    dataset_type: ClassVar[str] = "voc2007"

    def __init__(self, params: Voc07SvmParams) -> None:
        if any(c <= 0 for c in params.costs):
            raise DataError("voc07-svm: every cost must be positive", f"got {params.costs}")
        self.params = params

    def evaluate(self, dataset: Dataset, features: FeatureFn, *,
                 test_dataset: Dataset | None = None, progress: Any | None = None) -> EvaluationResult:
        p = self.params
        train_records = dataset.records(p.train_subset)
        test_records = (test_dataset or dataset).records(p.test_subset)
        classes, train_t = target_matrix(train_records)
        _, test_t = target_matrix(test_records, classes)
        pre = Preprocessing((p.image_size, p.image_size))
        train_x = features(p.train_subset, train_records, pre)
        test_x = features(p.test_subset, test_records, pre)
        sweep = svm_sweep(train_x, train_t, test_x, test_t, costs=p.costs, folds=p.folds,
                          n_jobs=p.n_jobs, seed=p.seed, progress=progress, classes=classes)
        ap = sweep["ap"] * 100.0
        scored = [c for c in range(len(classes)) if np.isfinite(ap[c])]
        if not scored:
            no_neg = [classes[c] for c in range(len(classes)) if (train_t[:, c] != 1).sum() == 0]
            if no_neg:
                raise DataError(
                    f"voc07-svm: class {no_neg[0]!r} has no negative in the train subset "
                    f"{p.train_subset!r} (every image is labelled with it): a one-vs-rest SVM "
                    "needs images of at least two classes",
                    "use a dataset with at least two classes (for cropped boxes: objects of "
                    "two or more classes)")
            raise DataError("voc07-svm: no class has positives in both the train and test subsets",
                            "check the dataset's labels and subsets")
        details = {
            "classes": classes,
            "ap": {classes[c]: float(ap[c]) for c in range(len(classes))},
            "chosen_cost": {classes[c]: v for c, v in sweep["chosen_cost"].items()},
            "cv_ap": {classes[c]: [float(v) * 100.0 for v in sweep["cv_ap"][c]]
                      for c in range(len(classes))},
            "costs": list(p.costs),
            "unscored_classes": [classes[c] for c in range(len(classes)) if c not in scored],
            "scored_classes": len(scored),
            "train_rows": len(train_records), "test_rows": len(test_records),
        }
        metrics = {"mAP": float(np.mean(ap[scored]))}
        return EvaluationResult(metrics=metrics, details=details)


@hookimpl
def register_evaluators(register: Register) -> None:
    register("voc07-svm", Voc07Svm, params=Voc07SvmParams,
             summary="per-class linear SVMs (cost by 3-fold CV), all-point VOC AP and mAP")
