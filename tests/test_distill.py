import math

import torch
import torch.nn.functional as F

from edgedistill.distill import CrossEntropy, HintonKD


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
