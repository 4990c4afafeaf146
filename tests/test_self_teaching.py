"""A self-taught teacher (teacher.train.pseudo_label, FixMatch): the loss against a hand-worked case, the strong
view's cut-out, the batch source's views and targets, and the run as a user meets it through the CLI."""
import json
import math

import torch
import torch.nn as nn
import yaml

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error
from edgedistill.config import AugmentConfig, PseudoLabelConfig
from edgedistill.train.self_teaching import PseudoLabel, SelfTeaching, cutout


def test_pseudo_label_loss_matches_a_hand_worked_case():
    """One labelled row, two pool rows: the first predicted at p = 0.97 on its weak view (kept), the second at
    p = 0.5 (masked). The pool term averages over both pool rows, the masked one adding 0."""
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    weak = torch.tensor([[0.0, 0.0], [0.0, math.log(0.97 / 0.03)], [0.0, 0.0]])
    targets = torch.tensor([0, -1, -1])
    terms = PseudoLabel(PseudoLabelConfig(threshold=0.95, weight=2.0))(student, weak, targets)
    ce_labelled = math.log(1 + math.exp(-2.0))
    ce_kept = math.log(1 + math.exp(-1.0))  # row 1 trained toward class 1
    assert math.isclose(terms["ce"].item(), ce_labelled, rel_tol=1e-6)
    assert math.isclose(terms["pseudo"].item(), 2.0 * ce_kept / 2, rel_tol=1e-6)


def test_pseudo_label_loss_without_pool_rows_is_plain_cross_entropy():
    student = torch.tensor([[2.0, 0.0]], requires_grad=True)
    terms = PseudoLabel(PseudoLabelConfig())(student, None, torch.tensor([0]))
    assert terms["pseudo"].item() == 0.0
    sum(terms.values()).backward()
    assert student.grad is not None


def test_cutout_zeroes_one_patch_of_the_asked_share():
    gen = torch.Generator().manual_seed(0)
    images = cutout(torch.ones(64, 1, 8, 8), 0.5, gen)
    zeros = (images == 0).sum(dim=(1, 2, 3))
    assert zeros.max().item() == 16 and zeros.min().item() >= 1  # a 4x4 patch, clipped at an edge at times
    for img in images[:, 0]:  # the zeros form one rectangle
        rows, cols = torch.nonzero(img == 0, as_tuple=True)
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    signals = cutout(torch.ones(64, 2, 40), 0.25, gen)
    assert (signals == 0).sum(dim=2).max().item() == 10
    assert torch.equal((signals[:, 0] == 0), (signals[:, 1] == 0))  # every channel of the span
    same = torch.randn(4, 1, 8, 8)
    assert torch.equal(cutout(same, 0.0, gen), same)


class Fixed(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(dim=(1, 2)), -x.sum(dim=(1, 2))], 1)


def test_labelled_rows_keep_their_view_and_pool_rows_get_a_strong_one_and_own_predictions():
    x = torch.rand(6, 1, 40) + 1.0
    unlabeled = torch.tensor([False, False, True, True, True, True])
    source = SelfTeaching(Fixed(), AugmentConfig(), PseudoLabelConfig(cutout=0.25), unlabeled)
    source.start(torch.device("cpu"), None)
    idx = torch.tensor([0, 2, 1, 5])
    xb, logits, feats = source.batch(x[idx], idx, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert torch.equal(xb[[0, 2]], x[[0, 1]])  # labelled: the weak view, here unaugmented
    assert not torch.equal(xb[[1, 3]], x[[2, 5]]) and bool((xb[[1, 3]] == 0).any())
    assert torch.equal(logits[[0, 2]], torch.zeros(2, 2))
    assert torch.allclose(logits[[1, 3]], Fixed()(x[[2, 5]]))  # the model on the weak view, not the strong one
    assert feats == []
    plain, none, _ = source.batch(x[:2], torch.tensor([0, 1]), torch.Generator(), torch.device("cpu"))
    assert none is None and torch.equal(plain, x[:2])


def self_taught(**data) -> dict:
    cfg = tiny_config(labeled_fraction=0.2, **data)
    cfg["teacher"]["train"].update(epochs=2, pool_batch=64, pseudo_label={"threshold": 0.5})
    return cfg


def run_config(tmp_path, cfg: dict, *args: str):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return run_cli("run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--quiet", *args)


def test_a_self_taught_teacher_trains_on_the_pool_and_the_report_says_so(tmp_path):
    proc = run_config(tmp_path, self_taught())
    assert proc.returncode == 0, proc.stderr
    log = [json.loads(line) for line in (tmp_path / "run" / "logs" / "teacher.jsonl").read_text().splitlines()]
    assert all(row["rows_unlabeled"] > 0 and "train_pseudo" in row for row in log)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["models"]["teacher"]["train"]["rows_per_epoch"]["unlabeled"] > 0
    assert metrics["models"]["student_scratch"]["train"]["rows_per_epoch"]["unlabeled"] == 0
    assert "The teacher trained on it too" in (tmp_path / "run" / "report.md").read_text()


def test_pseudo_label_where_it_cannot_work_is_one_line_and_writes_nothing(tmp_path):
    student_side = tiny_config(labeled_fraction=0.2)
    student_side["student"]["train"]["pseudo_label"] = {}
    assert_one_line_error(run_config(tmp_path, student_side), "student.train.pseudo_label", "teacher.train")
    no_pool = self_taught()
    del no_pool["data"]["labeled_fraction"]
    assert_one_line_error(run_config(tmp_path, no_pool), "teacher.train.pseudo_label", "data.labeled_fraction")
    table = self_taught()
    table["data"] = {"name": "breast_cancer", "labeled_fraction": 0.5}
    table["teacher"]["model"], table["student"]["model"] = "mlp", "mlp"
    assert_one_line_error(run_config(tmp_path, table), "teacher.train.pseudo_label", "(30,)")
    assert not (tmp_path / "run").exists()
