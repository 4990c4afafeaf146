"""The targets contract (distill/targets.py), worked by hand: -1 for an unlabelled row, label mass for mixed rows."""
import math

import pytest
import torch
import torch.nn.functional as F

from edgedistill.distill.ce import CrossEntropy

from edgedistill.distill.dist import DIST

from edgedistill.distill.dkd import DKD

from edgedistill.distill.kd import HintonKD

from edgedistill.distill.mvkd import MultiViewKD

from edgedistill.distill.nkd import NKD
from edgedistill.distill.targets import labeled_ce, target_classes

LOGITS = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 3.0]])
SOFTPLUS_M2 = math.log(1 + math.exp(-2))  # -log softmax([2, 0])[0] = 0.126928
SOFTPLUS_2 = math.log(1 + math.exp(2))  # -log softmax([2, 0])[1] = 2.126928


def test_ce_skips_unlabelled_rows_and_weighs_mixed_rows_by_their_label_mass():
    assert labeled_ce(LOGITS, torch.tensor([0, -1, 1])).item() == pytest.approx(SOFTPLUS_M2, abs=1e-6)
    assert torch.equal(labeled_ce(LOGITS, torch.tensor([0, 1, 1])), F.cross_entropy(LOGITS, torch.tensor([0, 1, 1])))
    none = labeled_ce(LOGITS.clone().requires_grad_(), torch.tensor([-1, -1, -1]))
    assert none.item() == 0.0 and none.requires_grad
    mixed = torch.tensor([[0.7, 0.3], [0.0, 0.0], [0.0, 0.0]])  # a labelled row mixed with another, two unlabelled
    assert labeled_ce(LOGITS, mixed).item() == pytest.approx(0.7 * SOFTPLUS_M2 + 0.3 * SOFTPLUS_2, abs=1e-6)
    half = torch.tensor([[0.6, 0.0], [0.0, 0.0], [0.0, 0.0]])  # 60% a labelled row of class 0, 40% unlabelled
    assert labeled_ce(LOGITS, half).item() == pytest.approx(SOFTPLUS_M2, abs=1e-6)
    one_hot = F.one_hot(torch.tensor([0, 1, 1]), 2).float()
    assert labeled_ce(LOGITS, one_hot, 0.1).item() == pytest.approx(
        F.cross_entropy(LOGITS, torch.tensor([0, 1, 1]), label_smoothing=0.1).item(), abs=1e-6)


def test_the_target_class_is_the_label_else_the_teachers_prediction():
    teacher = torch.tensor([[0.0, 9.0, 0.0], [0.0, 0.0, 9.0], [0.0, 0.0, 9.0]])
    assert target_classes(torch.tensor([0, -1, 1]), teacher).tolist() == [0, 2, 1]
    mixed = torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.0, 0.0], [0.45, 0.0, 0.0]])
    # row 0: largest label mass; row 1: the teacher; row 2: 0.45 labelled as class 0 against 0.55 the teacher
    # gives (almost all) to class 2
    assert target_classes(mixed, teacher).tolist() == [1, 2, 2]


def test_every_logit_method_learns_an_unlabelled_row_from_the_teacher_alone():
    torch.manual_seed(0)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    y = torch.tensor([1, -1, 3, -1])
    pseudo = torch.where(y >= 0, y, t.argmax(1))
    labelled_ce = F.cross_entropy(s[[0, 2]], y[[0, 2]])
    assert CrossEntropy()(s, None, y)["ce"].item() == pytest.approx(labelled_ce.item(), abs=1e-6)
    kd, kd_all = HintonKD(4.0, 0.9)(s, t, y), HintonKD(4.0, 0.9)(s, t, pseudo)
    assert kd["ce"].item() == pytest.approx(0.1 * labelled_ce.item(), abs=1e-6)
    assert torch.equal(kd["kd"], kd_all["kd"])  # the distillation term covers every row
    dist = DIST(4.0, 2.0, 2.0)(s, t, y)
    assert dist["ce"].item() == pytest.approx(labelled_ce.item(), abs=1e-6)
    assert torch.equal(dist["dist_intra"], DIST(4.0, 2.0, 2.0)(s, t, pseudo)["dist_intra"])
    for method in (DKD(4.0, 1.0, 8.0, warmup_epochs=0), NKD(1.0, 1.5)):
        got, filled = method(s, t, y), method(s, t, pseudo)
        assert got["ce"].item() == pytest.approx(labelled_ce.item(), abs=1e-6)
        for name in got:
            if name != "ce":  # DKD's and NKD's target-class terms take the teacher's argmax where there is no label
                assert torch.equal(got[name], filled[name]), name
    views = torch.randn(4, 3, 5)
    mv = MultiViewKD(4.0, 0.9)(s, t, y, views=views)
    assert mv["ce"].item() == pytest.approx(0.1 * labelled_ce.item(), abs=1e-6)


def test_soft_labels_reach_the_hard_label_term_of_every_logit_method():
    torch.manual_seed(1)
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    soft = torch.tensor([[0.6, 0.4, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.2, 0.0, 0.8]])
    mixup_ce = sum(-(soft[i] * F.log_softmax(s[i], 0)).sum() for i in range(3)) / 3
    assert CrossEntropy()(s, None, soft)["ce"].item() == pytest.approx(mixup_ce.item(), abs=1e-6)
    assert HintonKD(4.0, 0.5)(s, t, soft)["ce"].item() == pytest.approx(0.5 * mixup_ce.item(), abs=1e-6)
    assert DIST(1.0)(s, t, soft)["ce"].item() == pytest.approx(mixup_ce.item(), abs=1e-6)
    nkd, nkd_hard = NKD()(s, t, soft), NKD()(s, t, torch.tensor([0, 2, 3]))  # NKD's code: argmax of the soft label
    assert nkd["ce"].item() == pytest.approx(mixup_ce.item(), abs=1e-6)
    assert torch.equal(nkd["nkd_target"], nkd_hard["nkd_target"])


@pytest.mark.parametrize("targets", [torch.tensor([-1]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.3, 0.0]])],
                         ids=["unlabelled", "unlabelled-mass", "mixed-with-unlabelled"])
def test_dkd_in_log_space_takes_the_teachers_class_for_a_row_without_a_label(targets):
    """Two classes, T=1, teacher (1, 0), student (50, 0), no label (or only 30% of one for class 0): the target
    class is the teacher's (0), so TCKD = KL((t0, t1) || softmax(50, 0)) = t0 - log(1 + e) + 50 t1 with
    t0 = e / (1 + e), t1 = 1 / (1 + e), exact in log space (a clamp at 1e-12 read log s1 as -27.6, not -50), and
    its gradient softmax(s) - softmax(t) is not lost under the zero CE of a row without a label."""
    s = torch.tensor([[50.0, 0.0]], requires_grad=True)
    t0, t1 = math.e / (1 + math.e), 1 / (1 + math.e)
    terms = DKD(1.0, 1.0, 8.0, warmup_epochs=0)(s, torch.tensor([[1.0, 0.0]]), targets)
    assert terms["tckd"].item() == pytest.approx(t0 - math.log(1 + math.e) + 50 * t1, rel=1e-6)
    assert terms["nckd"].item() == 0.0 and terms["ce"].item() == pytest.approx(0.0, abs=1e-12)
    sum(terms.values()).backward()
    assert torch.allclose(s.grad, torch.tensor([[t1, -t1]]), atol=1e-6)
