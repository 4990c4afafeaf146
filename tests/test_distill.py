import math

import torch
import torch.nn.functional as F

from edgedistill.distill import DKD, CrossEntropy, HintonKD
from edgedistill.distill.dkd import dkd_terms


def test_kd_matches_hand_computation():
    """Two classes, one sample: KL(p_t || p_s) at T=2, times T^2, weighted by alpha; CE weighted by 1-alpha."""
    s = torch.tensor([[2.0, 0.0]])
    t = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([0])
    T, alpha = 2.0, 0.75
    ps = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]  # softmax([1, 0])
    pt = [ps[1], ps[0]]  # softmax([0, 1])
    kl = sum(pt[i] * math.log(pt[i] / ps[i]) for i in range(2))
    ce = -math.log(math.exp(2) / (math.exp(2) + 1))
    terms = HintonKD(temperature=T, alpha=alpha)(s, t, y)
    assert math.isclose(terms["kd"].item(), alpha * kl * T**2, rel_tol=1e-5)
    assert math.isclose(terms["ce"].item(), (1 - alpha) * ce, rel_tol=1e-5)


def test_kd_is_zero_when_student_equals_teacher():
    logits = torch.randn(8, 10)
    terms = HintonKD(temperature=4.0, alpha=1.0)(logits, logits.clone(), torch.zeros(8, dtype=torch.long))
    assert terms["kd"].item() < 1e-6
    assert terms["ce"].item() == 0.0


def test_alpha_zero_is_plain_cross_entropy():
    s, t, y = torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 4, (5,))
    kd = HintonKD(temperature=3.0, alpha=0.0)(s, t, y)
    ce = CrossEntropy()(s, None, y)
    assert torch.allclose(sum(kd.values()), ce["ce"])
    assert torch.allclose(ce["ce"], F.cross_entropy(s, y))


def test_kd_gradient_pulls_student_toward_teacher():
    s = torch.zeros(1, 3, requires_grad=True)
    t = torch.tensor([[5.0, 0.0, 0.0]])
    loss = HintonKD(temperature=1.0, alpha=1.0)(s, t, torch.tensor([1]))["kd"]
    loss.backward()
    assert s.grad[0, 0] < 0 < s.grad[0, 1]


def test_dkd_splits_target_and_non_target_by_hand():
    """Three classes, target 0, T=1. TCKD: binary KL over (p0, 1-p0). NCKD: KL over classes 1,2 renormalised."""
    s = torch.tensor([[1.0, 2.0, 0.0]])
    t = torch.tensor([[3.0, 0.0, 1.0]])
    y = torch.tensor([0])

    def softmax(v):
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]

    ps, pt = softmax([1.0, 2.0, 0.0]), softmax([3.0, 0.0, 1.0])
    tckd = pt[0] * math.log(pt[0] / ps[0]) + (1 - pt[0]) * math.log((1 - pt[0]) / (1 - ps[0]))
    qs, qt = softmax([2.0, 0.0]), softmax([0.0, 1.0])
    nckd = sum(qt[i] * math.log(qt[i] / qs[i]) for i in range(2))
    got_t, got_n = dkd_terms(s, t, y, temperature=1.0)
    assert math.isclose(got_t.item(), tckd, rel_tol=1e-5)
    assert math.isclose(got_n.item(), nckd, rel_tol=1e-5)
    terms = DKD(temperature=2.0, alpha=0.5, beta=3.0, ce_weight=0.25)(s, t, y)
    t2, n2 = dkd_terms(s, t, y, temperature=2.0)
    assert math.isclose(terms["tckd"].item(), 0.5 * t2.item(), rel_tol=1e-6)
    assert math.isclose(terms["nckd"].item(), 3.0 * n2.item(), rel_tol=1e-6)
    assert math.isclose(terms["ce"].item(), 0.25 * F.cross_entropy(s, y).item(), rel_tol=1e-6)


def test_dkd_is_zero_for_identical_logits():
    logits = torch.randn(6, 5)
    tckd, nckd = dkd_terms(logits, logits.clone(), torch.randint(0, 5, (6,)), 4.0)
    assert abs(tckd.item()) < 1e-5 and abs(nckd.item()) < 1e-5
