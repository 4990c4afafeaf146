"""DKD's target-class term in log space: a hand-worked confident student, its gradient, and the published formula
as mdistiller writes it (megvii-research/mdistiller, mdistiller/distillers/DKD.py) computed in float64."""
import math

import pytest
import torch
import torch.nn.functional as F

from edgedistill.distill.dkd import DKD
from edgedistill.distill.dkd import dkd_terms


def mdistiller_dkd(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temperature: float):
    """mdistiller's dkd_loss, split into (TCKD, NCKD): probabilities summed into (target, rest), their plain log,
    KL summed over the batch and divided by its size; NCKD masks the target with -1000."""
    gt = torch.zeros_like(s).scatter_(1, y[:, None], 1).bool()
    p_s, p_t = F.softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1)

    def cat_mask(p):
        return torch.cat([(p * gt).sum(1, keepdim=True), (p * ~gt).sum(1, keepdim=True)], dim=1)

    tckd = F.kl_div(torch.log(cat_mask(p_s)), cat_mask(p_t), reduction="sum") * temperature**2 / len(y)
    part2_t = F.softmax(t / temperature - 1000.0 * gt, dim=1)
    log_part2_s = F.log_softmax(s / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_part2_s, part2_t, reduction="sum") * temperature**2 / len(y)
    return tckd, nckd


def test_tckd_of_a_student_at_plus_50_on_its_label_by_hand():
    """Two classes, T=1, student (50, 0), teacher (0, 0), label 0: the two-way split is the softmax itself, so
    TCKD = 1/2 log(1/2 / s0) + 1/2 log(1/2 / s1) with s1 = e^-50 / (1 + e^-50): 25 - log 2 + log(1 + e^-50), and
    its gradient in the student's logits is softmax(s) - softmax(t) = (1/2, -1/2). A clamp of s1 at 1e-12 gave
    13.12 and a gradient of about e^-50."""
    s = torch.tensor([[50.0, 0.0]], requires_grad=True)
    tckd, nckd = dkd_terms(s, torch.zeros(1, 2), torch.tensor([0]), temperature=1.0)
    assert math.isclose(tckd.item(), 25 - math.log(2), rel_tol=1e-6)
    assert nckd.item() == 0.0  # one non-target class: its renormalised distribution is (1) on both sides
    tckd.backward()
    assert torch.allclose(s.grad, torch.tensor([[0.5, -0.5]]), atol=1e-6)


def confident_rows(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """16 ordinary rows of 10 classes, plus students at +50 and +200 on the label and a teacher at +60 on it."""
    g = torch.Generator().manual_seed(0)
    s, t = 3 * torch.randn(19, 10, generator=g, dtype=torch.float64), 3 * torch.randn(19, 10, generator=g,
                                                                                     dtype=torch.float64)
    y = torch.randint(0, 10, (19,), generator=g)
    s[16, y[16]], s[17, y[17]], t[18, y[18]] = 50.0, 200.0, 60.0
    return s.to(dtype), t.to(dtype), y


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_matches_mdistiller_in_float64_and_stays_finite_in_float32(temperature):
    s64, t64, y = confident_rows(torch.float64)
    want_t, want_n = mdistiller_dkd(s64, t64, y, temperature)
    got_t, got_n = dkd_terms(s64, t64, y, temperature)
    assert torch.allclose(got_t, want_t, rtol=1e-12) and torch.allclose(got_n, want_n, rtol=1e-12)
    s32, t32, _ = confident_rows(torch.float32)
    got_t, got_n = dkd_terms(s32, t32, y, temperature)
    assert math.isclose(got_t.item(), want_t.item(), rel_tol=1e-5)
    assert math.isclose(got_n.item(), want_n.item(), rel_tol=1e-5)


def test_a_student_at_plus_200_keeps_a_finite_loss_and_a_gradient_in_float32():
    """At +200, e^-200 is below float32's smallest number: a log of the summed probabilities would be log 0."""
    s = torch.zeros(1, 10)
    s[0, 3] = 200.0
    s.requires_grad_(True)
    t = torch.zeros(1, 10)
    terms = DKD(temperature=1.0, alpha=1.0, beta=8.0, warmup_epochs=0)(s, t, torch.tensor([3]))
    assert all(torch.isfinite(v) for v in terms.values())
    assert math.isclose(terms["tckd"].item(), 0.9 * (200 - math.log(9)) + 0.1 * math.log(0.1) + 0.9 * math.log(0.9),
                        rel_tol=1e-5)
    terms["tckd"].backward()
    assert math.isclose(s.grad[0, 3].item(), 0.9, rel_tol=1e-5)  # softmax(s)_3 - softmax(t)_3 = 1 - 0.1
