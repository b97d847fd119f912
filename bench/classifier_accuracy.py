"""Held-out accuracy of the learned incident classifier (``models.classifier``).

Stratified 5-fold cross-validation over the labelled set ``models/data/incident_categories.jsonl``
(folds shuffled with a fixed seed, so the numbers are reproducible): every example is predicted
by a model trained on the other four fifths. Reported:

- ``model``: the learned classifier alone (text + tags/metadata keys): accuracy, macro-F1,
  precision/recall/F1 per category, the confusion matrix, accuracy per language;
- ``api_order``: what ``POST /api/v1/incidents`` does without a category
  (``incidents.classification.decide_category``: confident rules on tags/metadata keys, then the
  fold's model when its probability reaches ``DEFAULT_MIN_CONFIDENCE``, then keywords/``other``);
- ``by_confidence``: accuracy and share of the model's predictions at or above a few
  probability cut-offs (how ``DEFAULT_MIN_CONFIDENCE`` was chosen);
- ``cross_language``: trained on one language only, tested on the other (the set holds many
  English/German paraphrase pairs, which can flatter the 5-fold numbers; this shows how far
  each language carries on its own);
- ``text_only``: the same 5-fold accuracy with every example's tags and metadata keys removed
  (paraphrase pairs share their tags, so this is the harder, text-alone number);
- training time on the whole set and prediction time per incident.

    .venv/bin/python bench/classifier_accuracy.py     # about 30 s on 2 cores

Prints a summary and saves ``bench/results/classifier_accuracy.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from incidents.classification import DEFAULT_MIN_CONFIDENCE, Prediction, decide_category
from incidents.schemas import Category
from models.classifier import (
    LabelledIncident,
    cross_validated_predictions,
    load_examples,
    train,
)

RESULTS = Path(__file__).resolve().parent / "results" / "classifier_accuracy.json"
CATEGORIES = [str(c) for c in Category]
CUT_OFFS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def scores(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, object]:
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=CATEGORIES, zero_division=0
    )
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=CATEGORIES, average="macro")), 4),
        "per_category": {
            c: {
                "precision": round(float(p), 3),
                "recall": round(float(r), 3),
                "f1": round(float(f), 3),
                "support": int(s),
            }
            for c, p, r, f, s in zip(CATEGORIES, precision, recall, f1, support, strict=True)
        },
        "confusion": {
            "labels": CATEGORIES,
            "rows_true_columns_predicted": confusion_matrix(
                truth, predicted, labels=CATEGORIES
            ).tolist(),
        },
    }


class FixedPrediction:
    """A predictor that answers with a precomputed out-of-fold prediction."""

    def __init__(self, category: Category, confidence: float) -> None:
        self.answer = Prediction(category, confidence)

    def predict(self, title: str, description: str, labels: Sequence[str]) -> Prediction:
        return self.answer


def api_order(example: LabelledIncident, category: Category, confidence: float) -> Category:
    """``decide_category`` with the example's tags and metadata keys (as metadata keys)."""
    return decide_category(
        title=example.title,
        description=example.description,
        tags=example.labels,
        predictor=FixedPrediction(category, confidence),
    ).category


def cross_language(examples: Sequence[LabelledIncident]) -> dict[str, float]:
    out = {}
    for source, target in (("en", "de"), ("de", "en")):
        model = train([e for e in examples if e.lang == source])
        held_out = [e for e in examples if e.lang == target]
        hits = sum(
            model.predict(e.title, e.description, e.labels)[0] == e.category for e in held_out
        )
        out[f"train_{source}_test_{target}"] = round(hits / len(held_out), 4)
    return out


def main() -> None:
    examples = load_examples()
    truth = [str(e.category) for e in examples]

    started = time.perf_counter()
    oof = cross_validated_predictions(examples)
    cv_seconds = time.perf_counter() - started
    predicted = [str(c) for c, _ in oof]
    model_scores = scores(truth, predicted)
    by_language = {
        lang: round(
            sum(
                p == t for p, t, e in zip(predicted, truth, examples, strict=True) if e.lang == lang
            )
            / sum(e.lang == lang for e in examples),
            4,
        )
        for lang in ("en", "de")
    }
    ordered = [str(api_order(e, c, p)) for e, (c, p) in zip(examples, oof, strict=True)]
    by_confidence = []
    for cut in CUT_OFFS:
        kept = [
            (p, t)
            for (p, (_, conf)), t in zip(zip(predicted, oof, strict=True), truth, strict=True)
            if conf >= cut
        ]
        by_confidence.append(
            {
                "min_probability": cut,
                "share": round(len(kept) / len(truth), 3),
                "accuracy": round(sum(p == t for p, t in kept) / len(kept), 4) if kept else None,
            }
        )

    bare = [LabelledIncident(e.title, e.description, (), e.category, lang=e.lang) for e in examples]
    text_only = [str(c) for c, _ in cross_validated_predictions(bare)]

    started, cpu_started = time.perf_counter(), time.process_time()
    model = train(examples)
    train_seconds = time.perf_counter() - started
    train_cpu_seconds = time.process_time() - cpu_started
    started = time.perf_counter()
    for e in examples:
        model.predict(e.title, e.description, e.labels)
    predict_ms = (time.perf_counter() - started) / len(examples) * 1000

    result = {
        "examples": len(examples),
        "per_language": {lang: sum(e.lang == lang for e in examples) for lang in ("en", "de")},
        "method": "stratified 5-fold cross-validation, shuffled with a fixed seed",
        "model": {**model_scores, "accuracy_by_language": by_language},
        "api_order": {
            "min_confidence": DEFAULT_MIN_CONFIDENCE,
            **{k: v for k, v in scores(truth, ordered).items() if k in ("accuracy", "macro_f1")},
        },
        "by_confidence": by_confidence,
        "cross_language": cross_language(examples),
        "text_only": {
            k: v for k, v in scores(truth, text_only).items() if k in ("accuracy", "macro_f1")
        },
        "train_seconds_full_set": round(train_seconds, 3),
        "train_cpu_seconds_full_set": round(train_cpu_seconds, 3),
        "cross_validation_seconds": round(cv_seconds, 2),
        "predict_ms_per_incident": round(predict_ms, 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"{len(examples)} examples ({result['per_language']}), {result['method']}")
    print(
        f"model alone: accuracy {model_scores['accuracy']:.3f}, macro-F1 "
        f"{model_scores['macro_f1']:.3f}, by language {by_language}"
    )
    print(
        f"API order (rules, model >= {DEFAULT_MIN_CONFIDENCE}, keywords): accuracy "
        f"{result['api_order']['accuracy']:.3f}, macro-F1 {result['api_order']['macro_f1']:.3f}"
    )
    for c, s in model_scores["per_category"].items():  # type: ignore[union-attr]
        print(f"  {c:12s} precision {s['precision']:.2f} recall {s['recall']:.2f} f1 {s['f1']:.2f}")
    for row in by_confidence:
        print(
            f"  probability >= {row['min_probability']}: {row['share']:.0%} of incidents, "
            f"accuracy {row['accuracy']}"
        )
    print(f"cross-language: {result['cross_language']}; text only: {result['text_only']}")
    print(
        f"training {train_seconds:.2f} s ({train_cpu_seconds:.2f} s CPU) on the full set, "
        f"prediction {predict_ms:.2f} ms per "
        f"incident; saved {RESULTS}"
    )


if __name__ == "__main__":
    main()
