import math

import pytest
import torch
import torch.nn.functional as F

from edgedistill.distill.ce import CrossEntropy

from edgedistill.distill.dkd import DKD

from edgedistill.distill.dkd import dkd_terms
from edgedistill.distill.kd import HintonKD


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


def test_attention_map_and_at_loss_by_hand():
    """One sample, 2 channels on a 1x2 grid. Map = channel mean of F^2, L2-normalised; loss = mean squared gap."""
    from edgedistill.distill.at import AttentionTransfer, attention_map

    s = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])  # energy only at position 0 -> map [1, 0]
    t = torch.tensor([[[[3.0, 4.0]]]])  # one channel: F^2 = [9, 16] -> map [9, 16] / 25 * ... normalised
    assert torch.allclose(attention_map(s), torch.tensor([[1.0, 0.0]]))
    norm = math.hypot(9, 16)
    expected_t = torch.tensor([[9 / norm, 16 / norm]])
    assert torch.allclose(attention_map(t), expected_t)
    gap = ((1 - 9 / norm) ** 2 + (16 / norm) ** 2) / 2  # mean over the batch (1) and the 2 positions
    terms = AttentionTransfer(weight=10.0)([s], [t])
    assert math.isclose(terms["at"].item(), 10.0 * gap, rel_tol=1e-5)
    assert AttentionTransfer()([t * 5], [t])["at"].item() < 1e-9  # scale-free: only where, not how much


def test_fitnets_hint_by_hand_and_adapter_learns():
    """A 1x1 adapter of known weight: the hint is the MSE of W s against t; training drives it toward 0."""
    from edgedistill.distill.fitnets import FitNets

    s = torch.tensor([[[1.0, 2.0]]])  # (N=1, C=1, L=2)
    t = torch.tensor([[[2.0, 4.0], [0.0, 1.0]]])  # (1, 2, 2)
    fit = FitNets(weight=3.0)
    fit.build([s], [t])
    with torch.no_grad():
        fit.adapters[0].weight.copy_(torch.tensor([[[1.0]], [[0.0]]]))  # out = [s, 0]
    mse = ((1 - 2) ** 2 + (2 - 4) ** 2 + 0 + 1) / 4
    assert math.isclose(fit([s], [t])["fitnets"].item(), 3.0 * mse, rel_tol=1e-6)
    opt = torch.optim.SGD(fit.adapters.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        fit([s], [t])["fitnets"].backward()
        opt.step()
    assert fit.hint_loss([s], [t]).item() < 0.1 * mse


def test_taps_align_across_families():
    """CNN (N,C,H,W) vs GRU (N,L,H) vs Transformer tokens: all reach a common layout and spatial size."""
    from edgedistill.distill.taps import TapRecorder, align
    from edgedistill.models import create_model

    x = torch.randn(2, 1, 40)
    gru = create_model("gru", (1, 40), 10, {})
    rec = TapRecorder(gru, ["rnn"])
    gru(x)
    (seq,) = rec.take()
    assert seq.shape == (2, 2 * gru.rnn.hidden_size, 40)  # bidirectional (N, L, 2H) became (N, 2H, L)
    cnn_feat = torch.randn(2, 16, 7, 7)
    tokens = torch.randn(2, 32, 50)  # e.g. 49 patches + class token, channels first
    a, b = align(cnn_feat, tokens)
    assert a.shape == (2, 16, 49) and b.shape == (2, 32, 49)
    a, b = align(torch.randn(2, 8, 14, 14), torch.randn(2, 4, 7, 7))
    assert a.shape == (2, 8, 7, 7) and b.shape == (2, 4, 7, 7)
    flat, grid = align(torch.randn(2, 6), torch.randn(2, 4, 7, 7))  # an MLP's hidden vector
    assert flat.shape == (2, 6, 1) and grid.shape == (2, 4, 1)


def test_feature_methods_combine_with_kd_in_config():
    from edgedistill.config import DistillConfig
    from edgedistill.distill.features import FeatureDistillation
    from edgedistill.train.method_setup import build_method

    m = build_method(DistillConfig(method=["kd", "at"]))
    assert isinstance(m, FeatureDistillation) and isinstance(m.logit_method, HintonKD)
    only = build_method(DistillConfig(method="fitnets"))
    assert isinstance(only.logit_method, CrossEntropy)
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="choose one"):
        DistillConfig(method=["kd", "dkd"])


def test_teacher_cache_is_reused_and_rebuilt_when_its_inputs_change(tmp_path):
    from edgedistill.config import AugmentConfig
    from edgedistill.models import create_model
    from edgedistill.train.cache import CacheSpec, load_or_build

    torch.manual_seed(0)
    x, y = torch.randn(40, 1, 8, 8).numpy(), (torch.arange(40) % 10).numpy()
    teacher = create_model("convnet", (1, 8, 8), 10, {"channels": [4]})
    aug = AugmentConfig(crop_padding=1, hflip=True)
    path = tmp_path / "cache.pt"

    def build(t=teacher, a=aug, data=x, views=3):
        return load_or_build(CacheSpec(path, t, data, y, a, views, 0, [], torch.device("cpu"), None, 10**9))

    first = build()
    assert first.built and first.logits.shape == (3, 40, 10) and path.exists()
    again = build()
    assert not again.built and torch.equal(again.logits, first.logits)
    view = first.params[2, 5:6]  # the stored view rebuilds the exact input the teacher saw
    from edgedistill.train.augment import apply_augment
    with torch.no_grad():
        live = teacher.eval()(apply_augment(torch.as_tensor(x[5:6]), view, aug))
    assert torch.allclose(live, first.logits[2, 5:6], atol=1e-5)
    assert build(a=AugmentConfig(crop_padding=2, hflip=True)).built  # augmentation changed
    assert build(data=x + 1).built  # data changed
    with torch.no_grad():
        teacher.head[1].weight.add_(1.0)  # teacher changed
    assert build().built
    assert build(views=2).built
    for damaged in ("[]", '{"format": "edgedistill-teacher-cache-v2", "taps": 0, "logits": []}'):
        (path / "meta.json").write_text(damaged)  # edited by hand: built again, never trusted
        assert build(views=2).built and not build(views=2).built
    too_big = CacheSpec(path, teacher, x, y, aug, 3, 0, [], torch.device("cpu"), None, max_bytes=100)
    assert load_or_build(too_big) is None
    none = load_or_build(CacheSpec(tmp_path / "plain.pt", teacher, x, y, AugmentConfig(), 8, 0, [],
                                   torch.device("cpu"), None, 10**9))
    assert none.views == 1  # no augmentation: the input itself is the only view


def test_cached_taps_are_stored_as_the_loss_compares_them(tmp_path):
    """A tap kept at the student's size gives the same FitNets and AT losses as the whole tap, in less space."""
    from edgedistill.config import AugmentConfig
    from edgedistill.distill.at import at_loss
    from edgedistill.distill.taps import TapRecorder, align, as_compared
    from edgedistill.models import create_model
    from edgedistill.train.cache import CacheSpec, load_or_build

    torch.manual_seed(0)
    for s, t in [(torch.randn(3, 8, 4, 4), torch.randn(3, 16, 7, 7)),  # CNN -> smaller CNN
                 (torch.randn(3, 8, 7, 7), torch.randn(3, 16, 50)),  # tokens -> CNN grid
                 (torch.randn(3, 8, 9), torch.randn(3, 16, 5))]:  # the teacher already the smaller
        kept = as_compared(tuple(s.shape[1:]), t)
        assert kept.numel() <= t.numel()
        assert torch.equal(align(s, kept)[1], align(s, t)[1])
        assert math.isclose(at_loss(s, kept).item(), at_loss(s, t).item(), rel_tol=1e-6)

    x, y = torch.randn(20, 1, 16, 16).numpy(), (torch.arange(20) % 10).numpy()
    teacher = create_model("convnet", (1, 16, 16), 10, {"channels": [4, 8]})  # taps (4, 8, 8) and (8, 4, 4)
    shapes = [(2, 4, 4), (3, 2, 2)]

    def spec(path, compared_at):
        return CacheSpec(path, teacher, x, y, AugmentConfig(), 1, 0, teacher.feature_taps, torch.device("cpu"), None,
                         10**9, compared_at=compared_at)

    bank = load_or_build(spec(tmp_path / "taps.pt", shapes))
    assert [tuple(f.shape) for f in bank.feats] == [(1, 20, 4, 4, 4), (1, 20, 8, 2, 2)]
    rec = TapRecorder(teacher, teacher.feature_taps)
    with torch.no_grad():
        teacher.eval()(torch.as_tensor(x))
    whole = rec.take()
    assert torch.allclose(bank.feats[1][0].float(), F.adaptive_avg_pool2d(whole[1], 2), atol=1e-2)
    whole_bank = load_or_build(spec(tmp_path / "whole.pt", None))
    assert whole_bank.feats[0].shape[-1] == 8  # without compared_at the taps are kept whole
    assert not load_or_build(spec(tmp_path / "taps.pt", shapes)).built
    assert load_or_build(spec(tmp_path / "taps.pt", [(2, 8, 8), (3, 2, 2)])).built


def test_every_registered_method_builds_validates_and_is_labelled(tiny):
    """The registry is the one list: config validation, build_method and the report label all read it."""
    from edgedistill.config import resolve_config
    from edgedistill.distill import METHODS
    from edgedistill.distill.features import FeatureDistillation
    from edgedistill.errors import UserError
    from edgedistill.report.markdown import method_label
    from edgedistill.train.method_setup import build_method

    for name, spec in METHODS.items():
        cfg = tiny()
        cfg["distill"] = {"method": name, "cache": {"enabled": "views" in spec.needs}}  # mvkd reads cached views
        distill = resolve_config(cfg).distill
        built = build_method(distill)
        assert isinstance(built, FeatureDistillation) == (spec.kind in ("feature", "relation")), name
        assert method_label(distill.model_dump()).count(name) == 1
    cfg = tiny()
    cfg["distill"] = {"method": ["kd", "nope"]}
    with pytest.raises(UserError, match="unknown method 'nope'; choose from kd, dkd"):
        resolve_config(cfg)


def test_each_method_refuses_what_it_cannot_serve_as_the_run_becomes_known():
    """The checks ask every method through its registry entry's refuse(Offer): none of them names a method."""
    from edgedistill.config import DistillConfig
    from edgedistill.config.distill import takes_mixed_rows

    crd = DistillConfig(method=["kd", "crd"])
    assert crd.refusal() is None and crd.refusal(processes=1, rows=100, classes=10) is None
    assert "crd keeps its memory bank in one process" in crd.refusal(processes=2)
    mvkd = DistillConfig(method="mvkd", cache={"enabled": True, "views": 4, "max_bytes": 4000})
    assert mvkd.refusal(rows=25, classes=10) is None  # 25 rows * 4 views * 10 classes * 4 bytes = 4000
    assert "need 0.00 GB for 4 views" in mvkd.refusal(rows=26, classes=10)
    assert mvkd.refusal(bank=True) is None
    assert "`edgedistill run --resume /runs/a`" in mvkd.refusal(bank=False, run_dir="/runs/a")
    assert [m for m in ("kd", "dkd", "nkd", "fitnets", "mvkd", "crd") if not takes_mixed_rows(m)] == ["mvkd", "crd"]
