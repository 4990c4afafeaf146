"""A gradient-boosted teacher for the medical tables, brought in through ONNX (`teacher.model: onnx`).

    python benchmarks/gbt_teacher.py [--only pima,breast_cancer] [--seeds 5] [--out bench_runs/gbt]

For each set, on the pipeline's own split of configs/<set>.yaml (load_data: the same options and validation split):
1. a logistic regression fitted on training + validation, as benchmarks/edge_domains.py does, as the reference;
2. scikit-learn's GradientBoostingClassifier, its hyper-parameters chosen by stratified 5-fold cross-validation
   on training + validation (log-loss; the test split chooses nothing), then fitted there, the rows the logistic
   regression sees: a validation split of 20-70 rows is too small to choose a model by;
3. converted by skl2onnx with the ZipMap off (`options={id(clf): {"zipmap": False}}`), so ONNX Runtime returns a
   (N, 2) probability tensor the teacher reads as log-probabilities;
4. `edgedistill run --seeds N` of the set's config with `teacher: {model: onnx, args: {path: gbt.onnx}}` and
   nothing else changed but deployment (off: this compares accuracy), so the scratch and KD students are the
   config's own, on one fixed split, over N seeds.
The table goes to docs/benchmarks.md (section gbt_teacher) with the recall of the class that matters for diagnosis.
(HistGradientBoostingClassifier does not convert with skl2onnx 1.20 on scikit-learn 1.9: its trees carry boolean
attributes ONNX refuses.)
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from edgedistill.cli.seeds import run_seeds
from edgedistill.config import read_yaml, resolve_config
from edgedistill.pipeline import load_data
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
SETS = {"pima": "Yes", "breast_cancer": "malignant"}  # the class whose recall matters for diagnosis
GRID = {"n_estimators": [50, 100, 200, 400], "max_depth": [1, 2, 3], "learning_rate": [0.02, 0.05, 0.1],
        "subsample": [0.7, 1.0]}


def recall(y: np.ndarray, pred: np.ndarray, positive: int) -> float:
    return float(np.mean(pred[y == positive] == positive))


def fit_gbt(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[GradientBoostingClassifier, dict, float]:
    """The grid point with the best cross-validated log-loss (a teacher's probabilities are what it teaches),
    refitted on all of x; also returns its cross-validated accuracy."""
    search = GridSearchCV(GradientBoostingClassifier(random_state=seed), GRID, scoring=["neg_log_loss", "accuracy"],
                          refit="neg_log_loss", cv=StratifiedKFold(5, shuffle=True, random_state=seed), n_jobs=-1)
    search.fit(x, y)
    return search.best_estimator_, search.best_params_, float(search.cv_results_["mean_test_accuracy"][search.best_index_])


def write_onnx(clf: GradientBoostingClassifier, x: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}).SerializeToString())


def mean_std(values: list[float]) -> str:
    return f"{100 * statistics.fmean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def one_set(name: str, positive_name: str, seeds: int, out: Path) -> str:
    raw = read_yaml((ROOT / "configs" / f"{name}.yaml").read_text())
    cfg = resolve_config(copy.deepcopy(raw))
    d = load_data(cfg)
    pos = d.class_names.index(positive_name)
    x, y = np.concatenate([d.x_train, d.x_val]), np.concatenate([d.y_train, d.y_val])
    lr_pred = LogisticRegression(max_iter=2000).fit(x, y).predict(d.x_test)
    gbt, params, cv_acc = fit_gbt(x, y, cfg.seed)
    onnx_path = out / name / "gbt.onnx"
    write_onnx(gbt, d.x_train, onnx_path)
    raw |= {"name": f"{raw['name']}_gbt", "teacher": {"model": "onnx", "args": {"path": str(onnx_path)}},
            "deploy": {"enabled": False}}
    run_seeds(raw, seeds, out_dir=out / name / "seeds", overwrite=True, progress=False)
    runs = [json.loads(p.read_text()) for p in sorted((out / name / "seeds").glob("seed_*/metrics.json"))]
    m = {r: [run["models"][r]["test"] for run in runs] for r in ("teacher", "student_scratch", "student_kd")}
    teacher = m["teacher"][0]  # the same file every seed
    if abs(teacher["accuracy"] - gbt.score(d.x_test, d.y_test)) > 1e-9:  # float32 ties at p = 0.5 only
        print(f"{name}: ONNX Runtime {teacher['accuracy']:.4f}, scikit-learn {gbt.score(d.x_test, d.y_test):.4f}")
    cell = lambda r: (f"{mean_std([t['accuracy'] for t in m[r]])} | "  # noqa: E731
                      f"{statistics.fmean(t['per_class'][positive_name]['recall'] for t in m[r]):.3f}")
    gains = [k["accuracy"] - s["accuracy"] for s, k in zip(m["student_scratch"], m["student_kd"])]
    student = runs[0]["models"]["student_kd"]
    return (f"| {name} ({positive_name}) | {100 * np.mean(lr_pred == d.y_test):.2f}% | "
            f"{recall(d.y_test, lr_pred, pos):.3f} | {params} (CV acc {100 * cv_acc:.1f}%, n={len(y)}) | "
            f"{100 * teacher['accuracy']:.2f}% | {teacher['per_class'][positive_name]['recall']:.3f} | "
            f"{student['model']} {student['args']} | {cell('student_scratch')} | {cell('student_kd')} | "
            f"{mean_std(gains)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(SETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "gbt"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = [one_set(name, SETS[name], args.seeds, Path(args.out)) for name in args.only.split(",")]
    body = ("### Gradient-boosted teacher through ONNX on the medical tables\n\n" + header(time.perf_counter() - t0)
            + f"- each set: configs/<set>.yaml with `teacher: {{model: onnx, args: {{path: gbt.onnx}}}}` "
              f"(GradientBoostingClassifier on training + validation, its grid chosen by 5-fold CV there, skl2onnx with the ZipMap off), "
              f"deployment off, `--seeds {args.seeds}` (one fixed split; the ONNX teacher is the same every seed)\n"
            + "- logistic regression: fitted on training + validation, as in the edge-domains table; recall is that "
              "of the class in brackets (Pima: diabetic, breast cancer: malignant), mean over seeds for students\n\n"
            + "| set | logistic regression: test acc | recall | GBT (chosen by CV on train + val) | GBT ONNX teacher: test "
              "acc | recall | student | scratch: test acc % (mean ± std) | recall | KD: test acc % (mean ± std) | "
              "recall | KD gain, points (paired by seed) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    replace_section("gbt_teacher", body)
    print(body)


if __name__ == "__main__":
    main()
