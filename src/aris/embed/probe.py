"""Linear probes on frozen MedSigLIP embeddings: Google's data-efficient classifier recipe.

A probe is scikit-learn's logistic regression on the pooled 1152-d embeddings, its regularisation
chosen by stratified cross-validation (``LogisticRegressionCV``) with balanced class weights (medical
sets are rarely balanced). Datasets are those ``aris finetune`` and ``aris eval`` read: a folder of
class folders, or a CSV/JSONL with ``input`` and ``answer`` (the class) columns.

A saved probe is plain JSON (classes, coefficients, intercepts, the embedder identity it was trained
on, its metrics), never a pickle: loading one runs no code. It predicts only with embeddings of the
same model and recipe; another embedder is refused, not silently used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aris.embed import Embedder, identity_key
from aris.errors import ArisError, ConfigError, InputError

if TYPE_CHECKING:
    from aris.config import ArisSettings
    from aris.embed.store import EmbeddingStore

logger = logging.getLogger(__name__)
FORMAT = "aris-probe-v1"


@dataclass(frozen=True)
class Sample:
    """One dataset item: its input files (one input) and its class."""

    inputs: tuple[str, ...]
    label: str
    kind: str = "auto"


def load_samples(dataset: Path) -> list[Sample]:
    """A class-folder or table dataset as (input, class) pairs; a row without a class is an error."""
    from aris.finetune.dataset import is_class_folder, load_examples

    dataset = Path(dataset).expanduser()
    if not dataset.exists():
        raise InputError(dataset, "no such dataset (a folder of class folders, or a .csv/.jsonl)")
    if is_class_folder(dataset):
        data = load_examples(dataset, "classify")
        return [Sample(ex.inputs, str(ex.label)) for ex in data.examples]
    from aris.eval.datasets import load_dataset

    out = []
    for item in load_dataset(dataset):
        label = item.answer if isinstance(item.answer, str) else None
        if not label or not label.strip():
            raise InputError(dataset, f"row {item.id}: the answer column must name the class")
        if not item.inputs:
            raise InputError(dataset, f"row {item.id} has no input")
        kind = str(item.extra.get("kind") or "auto")
        out.append(Sample(tuple(str(p) for p in item.inputs), label.strip(), kind))
    if not out:
        raise InputError(dataset, "the dataset has no rows")
    return out


@dataclass
class Embedded:
    X: np.ndarray
    y: list[str]
    failed: list[tuple[str, str]] = field(default_factory=list)


def embed_samples(
    samples: list[Sample],
    embedder: Embedder,
    store: EmbeddingStore | None,
    on_item: Callable[[int, int], None] | None = None,
) -> Embedded:
    """Pooled embeddings of every sample; an unreadable one is recorded and skipped, not fatal."""
    from aris.embed.embedding import embed_prepared
    from aris.inputs import read

    rows, labels, failed = [], [], []
    for i, s in enumerate(samples):
        try:
            src: Any = s.inputs[0] if len(s.inputs) == 1 else list(s.inputs)
            prepared = read(src, kind=s.kind)
            rows.append(embed_prepared(embedder, prepared, store=store).pooled)
            labels.append(s.label)
        except ConfigError:
            raise
        except ArisError as e:
            failed.append((s.inputs[0], str(e)))
            logger.warning("probe dataset item %d skipped: %s", i, type(e).__name__)
        if on_item is not None:
            on_item(i + 1, len(samples))
    dim = rows[0].shape[0] if rows else 0
    return Embedded(np.stack(rows) if rows else np.zeros((0, dim), np.float32), labels, failed)


def metrics(y_true: list[str], proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro one-vs-rest ROC AUC (when every class is present), confusion."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

    pred = [classes[i] for i in np.argmax(proba, axis=1)]
    out: dict[str, Any] = {
        "n": len(y_true),
        "accuracy": round(float(accuracy_score(y_true, pred)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(y_true, pred)), 4),
    }
    present = sorted(set(y_true))
    if len(present) == len(classes) and len(classes) >= 2:
        idx = np.array([classes.index(c) for c in y_true])
        if len(classes) == 2:
            auc = roc_auc_score(idx == 1, proba[:, 1])
        else:
            auc = roc_auc_score(
                idx, proba, multi_class="ovr", average="macro", labels=list(range(len(classes)))
            )
        out["macro_auc"] = round(float(auc), 4)
    out["confusion"] = {
        "classes": classes,
        "matrix": confusion_matrix(y_true, pred, labels=classes).tolist(),
    }
    out["per_class"] = dict(sorted(Counter(y_true).items()))
    return out


@dataclass
class Probe:
    classes: list[str]
    coef: np.ndarray  # (1, d) for two classes, else (K, d)
    intercept: np.ndarray
    identity: dict[str, Any]
    C: float
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def model_key(self) -> str:
        return identity_key(self.identity)

    @property
    def digest(self) -> str:
        h = hashlib.sha256(json.dumps(self.classes).encode())
        h.update(np.ascontiguousarray(self.coef, np.float64).tobytes())
        h.update(np.ascontiguousarray(self.intercept, np.float64).tobytes())
        return h.hexdigest()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, as scikit-learn's ``predict_proba`` computes them for this model."""
        z = X.astype(np.float64) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            p1 = 0.5 * (1.0 + np.tanh(0.5 * z[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "classes": self.classes,
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "C": self.C,
            "embedder": self.identity,
            "model_key": self.model_key,
            "metrics": self.metrics,
            "dataset": self.dataset,
            "created": self.created,
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Probe:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise InputError(path, f"not a readable probe file ({type(e).__name__})") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(path, f"not an Aris probe (format {FORMAT} expected)")
        return cls(
            classes=list(data["classes"]),
            coef=np.asarray(data["coef"], dtype=np.float64),
            intercept=np.asarray(data["intercept"], dtype=np.float64),
            identity=dict(data["embedder"]),
            C=float(data["C"]),
            metrics=dict(data.get("metrics") or {}),
            dataset=dict(data.get("dataset") or {}),
            created=float(data.get("created") or 0),
        )

    @staticmethod
    def path_for(settings: ArisSettings, name: str) -> Path:
        from aris.embed.task import PROBE_NAME

        if not PROBE_NAME.match(name):
            raise ConfigError(f"probe name {name!r}: letters, digits, '.', '_' and '-' only")
        return settings.home / "embed" / "probes" / name / "probe.json"

    @classmethod
    def load_named(cls, settings: ArisSettings, name: str) -> Probe:
        path = cls.path_for(settings, name)
        if not path.exists():
            raise ConfigError(
                f"no probe named {name!r}; train one with `aris probe train DATASET --name {name}`"
            )
        return cls.load(path)


def identity_check(probe: Probe, embedder: Embedder) -> None:
    """Refuse embeddings from another model or recipe than the probe was trained on."""
    current = identity_key(embedder.identity())
    if current != probe.model_key:
        raise ConfigError(
            f"the probe was trained on embeddings of {probe.identity.get('model')!r} "
            f"(key {probe.model_key[:12]}); the embedder now is {embedder.model_id!r} (key {current[:12]}). "
            "Retrain the probe, or choose the embedder it was trained with (--embed-model)"
        )


def train(X: np.ndarray, y: list[str], identity: dict[str, Any], *, seed: int = 0, folds: int = 5) -> Probe:
    """Cross-validated logistic regression with balanced class weights; CV metrics at the chosen C.

    The metrics come from out-of-fold predictions at the C the same folds chose, so they lean slightly
    optimistic; ``aris probe eval`` on held-out data is the honest figure.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = Counter(y)
    classes = sorted(counts)
    if len(classes) < 2:
        raise InputError(None, "a probe needs at least two classes")
    smallest = min(counts.values())
    if smallest < 2:
        rare = ", ".join(c for c, n in counts.items() if n < 2)
        raise InputError(
            None, f"every class needs at least two examples for cross-validation; too few: {rare}"
        )
    k = max(2, min(folds, smallest))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    search = LogisticRegressionCV(
        Cs=np.logspace(-3, 3, 13).tolist(),
        cv=cv,
        class_weight="balanced",
        max_iter=5000,
        scoring="neg_log_loss",
    )
    with warnings.catch_warnings():
        # scikit-learn 1.9 announces attribute and default changes of LogisticRegressionCV; C_ stays.
        warnings.simplefilter("ignore", FutureWarning)
        search.fit(X, y)
    C = float(np.atleast_1d(search.C_)[0])
    oof = cross_val_predict(
        LogisticRegression(C=C, class_weight="balanced", max_iter=5000), X, y, cv=cv, method="predict_proba"
    )
    final = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(X, y)
    assert list(final.classes_) == classes
    m = metrics(list(y), oof, classes)
    m["folds"] = k
    logger.info(
        "probe: %d examples, %d classes, C=%.3g, cv accuracy %.3f", len(y), len(classes), C, m["accuracy"]
    )
    return Probe(classes, final.coef_.astype(np.float64), final.intercept_.astype(np.float64), identity, C, m)
