"""Raw strings in, classes out: the tokenizer travels with a text model's ONNX export.

A run on a text set writes export/tokenizer/ (tokenizer.json and a frontend.json with the padded length and the
class names). `classify` needs only that folder, the .onnx file, `tokenizers` and ONNX Runtime, as a phone app
would: no torch, no transformers.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from edgedistill.deploy.onnx_export import INPUT_NAME, OUTPUT_NAME
from edgedistill.errors import UserError, first_line

FRONTEND_DIR = "tokenizer"
FRONTEND_FILE = "frontend.json"


def save_text_frontend(export_dir: Path, text: dict, class_names: list[str]) -> Path:
    """Copy the tokenizer beside the exports, with what a caller needs to reproduce the model's inputs."""
    from edgedistill.data.text import TOKENIZER_FILE

    out = export_dir / FRONTEND_DIR
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(text["tokenizer"]) / TOKENIZER_FILE, out / TOKENIZER_FILE)
    (out / FRONTEND_FILE).write_text(json.dumps({
        "max_length": text["max_length"], "class_names": class_names,
        "input": f"{INPUT_NAME}: float32 (batch, {text['max_length']}) token ids, padded with "
                 f"{text.get('pad_token', '[PAD]')}"}, indent=2))
    return out


def classify(onnx_path: str | Path, texts: list[str]) -> list[dict]:
    """Label and class probabilities for each raw string, through ONNX Runtime."""
    import onnxruntime as ort

    try:
        from edgedistill.data.text import encode_texts
        import tokenizers  # noqa: F401
    except ImportError:
        raise UserError("classify needs the tokenizers package: `pip install 'edgedistill[text]'`") from None
    onnx_path = Path(onnx_path)
    folder = onnx_path.parent / FRONTEND_DIR
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: no such ONNX file; give one from a run's export/ folder")
    if not (folder / FRONTEND_FILE).is_file():
        raise UserError(f"{onnx_path}: no {FRONTEND_DIR}/{FRONTEND_FILE} beside it; only models of text runs "
                        "classify raw strings")
    try:
        meta = json.loads((folder / FRONTEND_FILE).read_text())
        names = [str(c) for c in meta["class_names"]]
        ids = encode_texts(texts, folder, int(meta["max_length"]))
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        logits = sess.run([OUTPUT_NAME], {INPUT_NAME: ids})[0]
    except Exception as exc:  # a corrupt model or frontend file: name it, no traceback
        raise UserError(f"{onnx_path}: cannot classify with it and {folder} ({first_line(exc)}); re-export the run "
                        "or point at another model") from None
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    if len(names) != probs.shape[1]:
        raise UserError(f"{folder / FRONTEND_FILE}: names {len(names)} classes but {onnx_path} scores "
                        f"{probs.shape[1]}; re-export the run")
    return [{"text": t, "label": names[int(p.argmax())],
             "probabilities": {c: round(float(v), 4) for c, v in zip(names, p)}}
            for t, p in zip(texts, probs)]
