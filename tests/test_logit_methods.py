"""DIST, logit standardization, NKD, DKD's warm-up and multi-view KD: each checked against its paper's equations
worked out by hand with `math` on a tiny case, plus their config errors and the trainer feeding cached views."""
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from edgedistill.distill.dist import DIST

from edgedistill.distill.dkd import DKD

from edgedistill.distill.kd import HintonKD

from edgedistill.distill.mvkd import MultiViewKD

from edgedistill.distill.dkd import dkd_terms, warmup_factor
from edgedistill.distill.nkd import NKD


def softmax(v, T=1.0):
    e = [math.exp(x / T) for x in v]
    return [x / sum(e) for x in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return num / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def zscore(v):
    m = sum(v) / len(v)
    std = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))  # unbiased, as the authors' code
    return [(x - m) / std for x in v]


S = [[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 2.0, 1.0]]
T_ = [[3.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 2.0, 2.0]]
Y = [0, 2, 1]


def ce(rows, ys):
    return sum(-math.log(softmax(r)[y]) for r, y in zip(rows, ys)) / len(rows)


# DIST

def test_dist_matches_hand_computation():
    """Inter: 1 - mean Pearson of each sample's class probabilities; intra: 1 - mean Pearson of each class's
    column over the batch; both at T, times T^2; beta, gamma and the CE weight apply."""
    T, beta, gamma, w = 2.0, 2.0, 0.5, 0.25
    ps, pt = [softmax(r, T) for r in S], [softmax(r, T) for r in T_]
    inter = 1 - sum(pearson(a, b) for a, b in zip(ps, pt)) / 3
    cols = lambda p, c: [row[c] for row in p]  # noqa: E731
    intra = 1 - sum(pearson(cols(ps, c), cols(pt, c)) for c in range(3)) / 3
    terms = DIST(temperature=T, beta=beta, gamma=gamma, ce_weight=w)(torch.tensor(S), torch.tensor(T_),
                                                                      torch.tensor(Y))
    assert math.isclose(terms["dist_inter"].item(), beta * inter * T**2, rel_tol=1e-5)
    assert math.isclose(terms["dist_intra"].item(), gamma * intra * T**2, rel_tol=1e-5)
    assert math.isclose(terms["ce"].item(), w * ce(S, Y), rel_tol=1e-5)


def test_dist_built_from_the_default_config_is_the_authors_imagenet_recipe():
    """hunto/DIST_KD's resnet_dist.yaml: DIST(beta=1, gamma=1) at T=1 weighed by kd_loss_weight 2, CE weight 1."""
    from edgedistill.config import DistillConfig
    from edgedistill.train.method_setup import build_method

    ps, pt = [softmax(r) for r in S], [softmax(r) for r in T_]
    inter = 1 - sum(pearson(a, b) for a, b in zip(ps, pt)) / 3
    intra = 1 - sum(pearson([r[c] for r in ps], [r[c] for r in pt]) for c in range(3)) / 3
    terms = build_method(DistillConfig(method="dist"))(torch.tensor(S), torch.tensor(T_), torch.tensor(Y))
    assert math.isclose(terms["dist_inter"].item(), 2 * inter, rel_tol=1e-5)
    assert math.isclose(terms["dist_intra"].item(), 2 * intra, rel_tol=1e-5)
    assert math.isclose(terms["ce"].item(), ce(S, Y), rel_tol=1e-5)


def test_dist_is_zero_for_identical_logits():
    logits = torch.randn(6, 5)
    terms = DIST()(logits, logits.clone(), torch.zeros(6, dtype=torch.long))
    assert terms["dist_inter"].item() < 1e-5 and terms["dist_intra"].item() < 1e-5


# Logit standardization

def test_logit_standardization_kd_by_hand():
    """z = (z - mean) / std per sample before the temperature: KL(softmax(z_t/T) || softmax(z_s/T)) * T^2."""
    s, t, T = [1.0, 2.0, 3.0], [0.0, 0.0, 6.0], 2.0
    assert zscore(s) == [-1.0, 0.0, 1.0]
    want = kl(softmax(zscore(t), T), softmax(zscore(s), T)) * T**2
    terms = HintonKD(temperature=T, alpha=1.0, standardize=True)(torch.tensor([s]), torch.tensor([t]),
                                                                  torch.tensor([2]))
    assert math.isclose(terms["kd"].item(), want, rel_tol=1e-5)
    plain = HintonKD(temperature=T, alpha=1.0)(torch.tensor([s]), torch.tensor([t]), torch.tensor([2]))
    assert not math.isclose(plain["kd"].item(), want, rel_tol=1e-3)
    assert terms["ce"].item() == plain["ce"].item() == 0.0  # CE reads the raw logits, weighted 1 - alpha = 0


def test_logit_standardization_lets_a_scaled_shifted_student_match_exactly():
    t = torch.randn(4, 6)
    kd = HintonKD(temperature=2.0, alpha=1.0, standardize=True)
    assert kd(3 * t + 5, t, torch.zeros(4, dtype=torch.long))["kd"].item() < 1e-6
    assert HintonKD(temperature=2.0, alpha=1.0)(3 * t + 5, t, torch.zeros(4, dtype=torch.long))["kd"].item() > 0.01


def test_logit_standardization_applies_to_dkd_and_dist():
    s, t, y = [[1.0, 2.0, 0.0]], [[3.0, 0.0, 1.0]], torch.tensor([0])
    zs, zt = torch.tensor([zscore(r) for r in s]), torch.tensor([zscore(r) for r in t])
    tckd, nckd = dkd_terms(zs, zt, y, 2.0)
    got = DKD(temperature=2.0, alpha=1.0, beta=2.0, standardize=True)(torch.tensor(s), torch.tensor(t), y)
    assert math.isclose(got["tckd"].item(), tckd.item(), rel_tol=1e-5)
    assert math.isclose(got["nckd"].item(), 2.0 * nckd.item(), rel_tol=1e-5)
    zs3, zt3 = torch.tensor([zscore(r) for r in S]), torch.tensor([zscore(r) for r in T_])
    on = DIST(temperature=2.0, standardize=True)(torch.tensor(S), torch.tensor(T_), torch.tensor(Y))
    off = DIST(temperature=2.0)(zs3, zt3, torch.tensor(Y))
    assert math.isclose(on["dist_inter"].item(), off["dist_inter"].item(), rel_tol=1e-5)
    assert math.isclose(on["dist_intra"].item(), off["dist_intra"].item(), rel_tol=1e-5)


def test_logit_standardization_label_and_build(tiny):
    from edgedistill.config import resolve_config
    from edgedistill.report.markdown import method_label
    from edgedistill.train.method_setup import build_method

    for name in ("kd", "dkd", "dist"):
        cfg = tiny()
        cfg["distill"] = {"method": name, "logit_standardization": True}
        distill = resolve_config(cfg).distill
        assert build_method(distill).standardize
        assert method_label(distill.model_dump()).startswith(f"{name}+LS (")
        cfg["distill"]["logit_standardization"] = False
        assert "+LS" not in method_label(resolve_config(cfg).distill.model_dump())


# NKD

def test_nkd_matches_hand_computation():
    """CE - T_t log S_t (at temperature 1) - gamma * lambda^2 * sum_{i != t} T^_i log S^_i, where T^, S^ are the
    softmaxes of the non-target logits alone at lambda; batch means."""
    s, t, y = S[:2], T_[:2], Y[:2]
    for lam, gamma in ((1.0, 1.5), (2.0, 0.5)):
        target = sum(-softmax(b)[k] * math.log(softmax(a)[k]) for a, b, k in zip(s, t, y)) / 2
        rest = lambda r, k: [v for i, v in enumerate(r) if i != k]  # noqa: E731
        non = sum(-sum(q * math.log(p) for q, p in zip(softmax(rest(b, k), lam), softmax(rest(a, k), lam)))
                  for a, b, k in zip(s, t, y)) / 2
        terms = NKD(temperature=lam, gamma=gamma)(torch.tensor(s), torch.tensor(t), torch.tensor(y))
        assert math.isclose(terms["nkd_target"].item(), target, rel_tol=1e-5)
        assert math.isclose(terms["nkd_non_target"].item(), gamma * lam**2 * non, rel_tol=1e-5)
        assert math.isclose(terms["ce"].item(), ce(s, y), rel_tol=1e-5)


def test_nkd_non_target_term_is_at_its_minimum_when_student_equals_teacher():
    """A cross-entropy of the renormalised non-target distributions: its least value, the teacher's entropy, is
    reached at the teacher's logits, where the gradient vanishes."""
    t = torch.tensor([[3.0, 0.0, 1.0, -1.0]])
    s = t.clone().requires_grad_(True)
    terms = NKD(temperature=2.0, gamma=1.0)(s, t, torch.tensor([0]))
    q = softmax([0.0, 1.0, -1.0], 2.0)
    assert math.isclose(terms["nkd_non_target"].item(), -sum(p * math.log(p) for p in q) * 4, rel_tol=1e-5)
    terms["nkd_non_target"].backward()
    assert s.grad.abs().max().item() < 1e-6


# DKD warm-up

def test_dkd_warmup_factor():
    assert warmup_factor(1, 30, 5) == pytest.approx(1 / 5)
    assert warmup_factor(5, 30, 5) == 1.0 and warmup_factor(6, 30, 5) == 1.0
    assert warmup_factor(1, 240, None) == pytest.approx(1 / 20) and warmup_factor(20, 240, None) == 1.0
    assert warmup_factor(1, 20, None) == 0.5 and warmup_factor(2, 20, None) == 1.0  # ceil(20/12) = 2
    assert warmup_factor(1, 3, None) == 1.0 and warmup_factor(1, 30, 0) == 1.0


def test_dkd_warmup_scales_tckd_and_nckd_not_ce():
    s, t, y = torch.tensor(S), torch.tensor(T_), torch.tensor(Y)
    full = DKD(warmup_epochs=5)(s, t, y)
    for epoch, factor in ((1, 0.2), (5, 1.0), (6, 1.0)):
        dkd = DKD(warmup_epochs=5)
        dkd.start_epoch(epoch, 30)
        got = dkd(s, t, y)
        assert math.isclose(got["tckd"].item(), factor * full["tckd"].item(), rel_tol=1e-6)
        assert math.isclose(got["nckd"].item(), factor * full["nckd"].item(), rel_tol=1e-6)
        assert got["ce"].item() == full["ce"].item()


def test_dkd_warmup_from_config_and_label():
    from edgedistill.config import DistillConfig
    from edgedistill.distill import describe
    from edgedistill.train.method_setup import build_method

    assert DistillConfig().dkd.warmup_epochs is None
    dkd = build_method(DistillConfig(method="dkd", dkd={"warmup_epochs": 4}))
    dkd.start_epoch(2, 10)
    assert dkd.factor == 0.5
    assert "warm-up 4" in describe(DistillConfig(method="dkd", dkd={"warmup_epochs": 4}).model_dump())
    old = DistillConfig(method="dkd").model_dump()
    del old["dkd"]["warmup_epochs"]  # a metrics.json from before the warm-up
    assert describe(old).endswith("no warm-up)")


# Multi-view KD

def test_mvkd_matches_hand_computation():
    """(1-alpha) CE + alpha T^2 / 2 [KL(p_t(this view) || p_s) + KL(mean_k p_t(view k) || p_s)], p at T."""
    s, v, views, T, alpha = [1.0, 0.0], [2.0, 0.0], [[2.0, 0.0], [0.0, 1.0]], 2.0, 0.5
    p_s = softmax(s, T)
    p_mean = [sum(softmax(w, T)[c] for w in views) / 2 for c in range(2)]
    terms = MultiViewKD(temperature=T, alpha=alpha)(torch.tensor([s]), torch.tensor([v]), torch.tensor([0]),
                                                     views=torch.tensor([views]))
    assert math.isclose(terms["kd"].item(), alpha * T**2 / 2 * kl(softmax(v, T), p_s), rel_tol=1e-5)
    assert math.isclose(terms["kd_views"].item(), alpha * T**2 / 2 * kl(p_mean, p_s), rel_tol=1e-5)
    assert math.isclose(terms["ce"].item(), (1 - alpha) * -math.log(softmax(s)[0]), rel_tol=1e-5)


def test_mvkd_is_zero_when_every_view_agrees_with_the_student():
    s = torch.randn(3, 4)
    terms = MultiViewKD(temperature=4.0, alpha=1.0)(s, s.clone(), torch.zeros(3, dtype=torch.long),
                                                    views=s[:, None].repeat(1, 5, 1))
    assert terms["kd"].item() < 1e-6 and terms["kd_views"].item() < 1e-6
    with pytest.raises(ValueError, match="every cached view"):
        MultiViewKD()(s, s, torch.zeros(3, dtype=torch.long))


def test_mvkd_is_listed_as_edgedistills_own_method_not_as_mlkd(capsys):
    """MLKD sums several temperatures and aligns classes and batches under a confidence mask; mvkd does none of it."""
    from edgedistill.cli import main

    assert main(["methods"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("mvkd "))
    assert "edgedistill's own" in line and "MLKD" not in line and "Jin" not in line, line


def test_trainer_passes_every_cached_view_to_mvkd(tmp_path):
    """A real teacher cache and one epoch of two steps: the method receives (B, K, C) views that are the bank's rows
    for the batch, and the teacher logits of this step are one of them."""
    from edgedistill.config import AugmentConfig, TrainConfig
    from edgedistill.models import create_model
    from edgedistill.train.cache import CacheSpec, load_or_build
    from edgedistill.train.trainer import Trainer

    torch.manual_seed(0)
    x, y = torch.randn(40, 1, 8, 8).numpy(), (torch.arange(40) % 10).numpy()
    teacher = create_model("convnet", (1, 8, 8), 10, {"channels": [4]})
    cache = load_or_build(CacheSpec(tmp_path / "c.pt", teacher, x, y, AugmentConfig(crop_padding=1, hflip=True), 3,
                                    0, [], torch.device("cpu"), None, 10**9))
    seen = []

    class Recording(MultiViewKD):
        wants = frozenset({"views", "index"})

        def __call__(self, student_logits, teacher_logits, targets, views=None, index=None):
            seen.append((teacher_logits, views, index))
            return super().__call__(student_logits, teacher_logits, targets, views=views)

    cfg = TrainConfig(epochs=1, batch_size=8, max_steps_per_epoch=2)
    student = create_model("convnet", (1, 8, 8), 10, {"channels": [2]})
    result = Trainer(cfg, Recording(), cache, torch.device("cpu"), 0, "student_kd").fit(student, x, y, x[:10], y[:10])
    assert len(seen) == 2 and "train_kd_views" in result.history[0]
    for logits, views, index in seen:
        assert views.shape == (8, 3, 10)
        assert torch.equal(views, cache.logits[:, index].transpose(0, 1))
        assert all(any(torch.equal(logits[b], views[b, k]) for k in range(3)) for b in range(8))


def test_a_resumed_trainer_tells_the_method_the_epochs_it_resumes_at(tmp_path):
    """Killed after epoch 1 of 3 and resumed: the method is told epochs 1, then 2 and 3, so a warm-up ramps as in an
    unbroken run (DKD at warm-up 3: factors 1/3, 2/3, 1)."""
    from edgedistill.config import AugmentConfig, TrainConfig
    from edgedistill.models import create_model
    from edgedistill.train.resume import Resume
    from edgedistill.train.trainer import Trainer, batch_source

    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8).numpy(), (torch.arange(32) % 10).numpy()
    teacher = create_model("convnet", (1, 8, 8), 10, {"channels": [4]})
    told = []

    class Recording(DKD):
        killed_at: int | None = None

        def start_epoch(self, epoch, epochs):
            if epoch == self.killed_at:  # the kill comes after epoch 1's state was saved
                raise KeyboardInterrupt
            super().start_epoch(epoch, epochs)
            told.append((epoch, self.factor))

    def trainer(killed_at=None):
        method = Recording(warmup_epochs=3)
        method.killed_at = killed_at
        return Trainer(TrainConfig(epochs=3, batch_size=8, max_steps_per_epoch=2), method,
                       batch_source(method, AugmentConfig(), teacher), torch.device("cpu"), 0, "student_kd",
                       resume=Resume(tmp_path / "state.pt"))

    with pytest.raises(KeyboardInterrupt):
        trainer(killed_at=2).fit(create_model("convnet", (1, 8, 8), 10, {"channels": [2]}), x, y, x[:8], y[:8])
    assert told == [(1, pytest.approx(1 / 3))] and (tmp_path / "state.pt").exists()
    told.clear()
    trainer().fit(create_model("convnet", (1, 8, 8), 10, {"channels": [2]}), x, y, x[:8], y[:8])
    assert [e for e, _ in told] == [2, 3], told
    assert [f for _, f in told] == [pytest.approx(2 / 3), 1.0]


def test_live_runs_of_a_multi_view_method_train_as_plain_kd():
    from edgedistill.config import DistillConfig
    from edgedistill.train.method_setup import build_method

    d = DistillConfig(method=["mvkd"], temperature=3.0, alpha=0.7, cache={"enabled": True})
    assert isinstance(build_method(d), MultiViewKD)
    live = build_method(d.live(student_taps=None))
    assert type(live) is HintonKD and (live.temperature, live.alpha) == (3.0, 0.7)


# Config errors, one line each, through config loading

def load(tmp_path, tiny, distill: dict, overrides=()):
    from edgedistill.config import load_config

    cfg = tiny()
    cfg["distill"] = distill
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path, list(overrides))


@pytest.mark.parametrize("distill,fragment", [
    ({"method": "mvkd"}, "distill.cache.enabled"),
    ({"method": "nkd", "logit_standardization": True}, "distill.logit_standardization"),
    ({"method": "mvkd", "cache": {"enabled": True}, "logit_standardization": True}, "distill.logit_standardization"),
    ({"method": "at", "logit_standardization": True}, "not to plain CE"),
    ({"method": "dkd", "dkd": {"warmup_epochs": -1}}, "distill.dkd.warmup_epochs"),
])
def test_config_errors_are_one_line(tmp_path, tiny, distill, fragment):
    from edgedistill.errors import UserError

    with pytest.raises(UserError) as err:
        load(tmp_path, tiny, distill)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_new_methods_load_with_their_defaults(tmp_path, tiny):
    """DIST's default is the authors' ImageNet recipe: T 1, and DIST(beta=1, gamma=1) weighed by kd_loss_weight 2."""
    cfg = load(tmp_path, tiny, {"method": "dist"}, ["distill.logit_standardization=true"])
    assert (cfg.distill.dist.temperature, cfg.distill.dist.beta, cfg.distill.dist.gamma) == (1.0, 2.0, 2.0)
    assert (cfg.distill.nkd.temperature, cfg.distill.nkd.gamma) == (1.0, 1.5)
    assert load(tmp_path, tiny, {"method": ["mvkd", "at"], "cache": {"enabled": True}}).distill.methods == ["mvkd", "at"]


def test_methods_listing_shows_paper_and_defaults(capsys):
    from edgedistill.cli import main
    from edgedistill.distill import METHODS

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, spec in METHODS.items():
        assert any(line.startswith(f"{name} ") and spec.paper in line for line in out.splitlines()), name
    assert "T=1.0, beta=2.0, gamma=2.0, CE weight 1.0" in out and "T=1.0, gamma=1.5" in out


# End to end

def test_mvkd_runs_end_to_end_with_pruning_live(tmp_path, tiny):
    """The KD student reads the cached views; the pruned teacher, trained against the live teacher, uses kd."""
    import json

    import edgedistill

    cfg = tiny()
    cfg["data"]["augment"] = {"crop_padding": 2}
    cfg["distill"] = {"method": "mvkd", "cache": {"enabled": True, "views": 2}}
    cfg["compress"] = {"prune": {"enabled": True, "target_params": 20000, "epochs": 1}}
    edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False)
    row = json.loads((tmp_path / "r" / "logs" / "student_kd.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(row["train_kd_views"])
    pruned = json.loads((tmp_path / "r" / "logs" / "teacher_pruned.jsonl").read_text().splitlines()[-1])
    assert "train_kd" in pruned and "train_kd_views" not in pruned
    assert "mvkd (T=4.0, alpha=0.9, 2 cached views)" in (tmp_path / "r" / "report.md").read_text()


def test_mvkd_bank_over_max_bytes_is_refused_before_anything_is_written(tmp_path, tiny):
    from conftest import run_cli

    cfg = tiny()
    cfg["data"]["augment"] = {"crop_padding": 2}
    cfg["distill"] = {"method": "mvkd", "cache": {"enabled": True, "views": 2, "max_bytes": 10}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(path), "--out", str(tmp_path / "r"), "--quiet")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "distill.cache.max_bytes" in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()  # checked with the data, before the teacher trains or a folder exists
