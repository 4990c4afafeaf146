"""ReviewKD and CRD: their losses checked by hand from the papers' equations, and each trained for a few steps."""
import math

import pytest
import torch
import torch.nn.functional as F

from edgedistill.distill.crd import CRD
from edgedistill.distill.reviewkd import ReviewKD, hcl_loss


def test_hcl_by_hand_on_a_4x4_map():
    """Full-size MSE, then the 2x2 and 1x1 poolings (4 is the map's own size, left out as in the official code),
    weighted 1, 1/2, 1/4 and divided by 1.75."""
    s = [[float(4 * r + c) for c in range(4)] for r in range(4)]
    t = [[float((r + c) % 3) for c in range(4)] for r in range(4)]
    full = sum((s[r][c] - t[r][c]) ** 2 for r in range(4) for c in range(4)) / 16

    def block_mean(m, r0, c0, k):
        return sum(m[r][c] for r in range(r0, r0 + k) for c in range(c0, c0 + k)) / k**2

    two = sum((block_mean(s, r, c, 2) - block_mean(t, r, c, 2)) ** 2 for r in (0, 2) for c in (0, 2)) / 4
    one = (block_mean(s, 0, 0, 4) - block_mean(t, 0, 0, 4)) ** 2
    expected = (full + 0.5 * two + 0.25 * one) / 1.75
    got = hcl_loss(torch.tensor(s)[None, None], torch.tensor(t)[None, None]).item()
    assert math.isclose(got, expected, rel_tol=1e-6)


@pytest.mark.parametrize("size, weights", [(8, 1 + 0.5 + 0.25 + 0.125), (4, 1 + 0.5 + 0.25), (2, 1 + 0.5), (1, 1.0)])
def test_hcl_weights_are_normalised_by_their_sum(size, weights):
    """A checkerboard difference has mean 0 in every 2x2 block: only the full-size term (MSE 1) counts."""
    sign = torch.tensor([[(-1.0) ** (r + c) for c in range(size)] for r in range(size)])
    t = torch.randn(1, 1, size, size)
    expected = 1.0 / weights if size > 1 else 1.0
    assert math.isclose(hcl_loss(t + sign, t).item(), expected, rel_tol=1e-5)


@pytest.mark.parametrize("student_shapes, teacher_shapes", [
    ([(2, 3, 8, 8), (2, 5, 4, 4)], [(2, 4, 8, 8), (2, 6, 4, 4)]),  # images
    ([(2, 3, 16), (2, 5, 8)], [(2, 4, 16), (2, 6, 8)]),  # time series: Conv1d
    ([(2, 3, 8, 8), (2, 5, 1)], [(2, 4, 8, 8), (2, 6, 1)]),  # a flat deepest tap above a 2-D one
    ([(2, 3, 8, 8), (2, 5, 4, 4)], [(2, 4, 16, 16), (2, 6, 2, 2)]),  # teacher larger, then smaller: align pools
])
def test_abf_output_shapes_and_gradients_reach_every_student_map(student_shapes, teacher_shapes):
    torch.manual_seed(0)
    s = [torch.randn(*shape, requires_grad=True) for shape in student_shapes]
    t = [torch.randn(*shape) for shape in teacher_shapes]
    method = ReviewKD()
    abfs = method.build([f.detach() for f in s], t)
    assert abfs[0].att_conv is not None and abfs[-1].att_conv is None  # the deepest level has nothing to fuse
    outs, targets = method.review(s, t)
    for o, tt in zip(outs, targets):
        assert o.shape == tt.shape and o.shape[1] == tt.shape[1]
    hcl_loss(outs[0], targets[0]).backward()  # the shallow level alone: the deep map reaches it through ABF
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in s)
    assert abfs[0].att_conv[0].weight.grad.abs().sum() > 0 and abfs[1].conv1.weight.grad.abs().sum() > 0
    loss = method(s, t)["reviewkd"]
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_abf_takes_one_sample_at_a_1x1_tap_in_training_mode():
    method = ReviewKD()
    method.build([torch.randn(2, 3, 4, 4), torch.randn(2, 5, 1, 1)], [torch.randn(2, 4, 4, 4), torch.randn(2, 6, 1, 1)])
    assert torch.isfinite(method([torch.randn(1, 3, 4, 4), torch.randn(1, 5, 1, 1)],
                                 [torch.randn(1, 4, 4, 4), torch.randn(1, 6, 1, 1)])["reviewkd"])


def test_reviewkd_warms_up_as_the_official_recipe():
    m = ReviewKD(weight=2.0)
    m.start_epoch(1, 240)  # warm-up 240 // 12 = 20 epochs, as the official CIFAR recipe
    assert math.isclose(m.factor, 1 / 20)
    m.start_epoch(20, 240)
    assert m.factor == 1.0
    m.start_epoch(1, 5)  # at least one epoch
    assert m.factor == 1.0
    m = ReviewKD(warmup_epochs=4)
    m.start_epoch(2, 100)
    assert m.factor == 0.5


def crd_with(n: int, k: int, t: float = 0.5, momentum: float = 0.5, weight: float = 1.0) -> CRD:
    """A CRD on 2-channel taps whose heads are the identity, so an embedding is the normalised pooled tap."""
    crd = CRD(weight=weight, feat_dim=2, nce_k=k, nce_t=t, momentum=momentum)
    crd.num_train = n
    module = crd.build([torch.zeros(2, 2, 3)], [torch.zeros(2, 2, 3)])
    with torch.no_grad():
        for head in (module.embed_s, module.embed_t):
            head.linear.weight.copy_(torch.eye(2))
            head.linear.bias.zero_()
    return crd


def unit(x: float, y: float) -> list[float]:
    n = math.hypot(x, y)
    return [x / n, y / n]


def test_crd_bank_moves_toward_the_batch_at_its_rows_only():
    crd = crd_with(n=5, k=3)
    m = crd.module
    with torch.no_grad():
        m.memory_s.copy_(torch.tensor([unit(1, 0), unit(0, 1), unit(1, 1), unit(-1, 0), unit(1, -1)]))
        m.memory_t.copy_(torch.tensor([unit(0, 1)] * 5))
    before_s, before_t = m.memory_s.clone(), m.memory_t.clone()
    s = torch.tensor([[3.0, 4.0], [0.0, -2.0]])[:, :, None]  # embeddings (0.6, 0.8) and (0, -1)
    t = torch.tensor([[1.0, 0.0], [5.0, 0.0]])[:, :, None]  # (1, 0) twice
    crd([s], [t], index=torch.tensor([0, 3]), negatives=torch.tensor([[1, 2, 4], [0, 1, 2]]))
    # row 0 of the student's bank: normalise(0.5 * (1, 0) + 0.5 * (0.6, 0.8)) = (0.8, 0.4) / sqrt(0.8)
    assert torch.allclose(m.memory_s[0], torch.tensor([0.8, 0.4]) / math.sqrt(0.8), atol=1e-6)
    # row 3: normalise(0.5 * (-1, 0) + 0.5 * (0, -1)) = (-1, -1) / sqrt(2)
    assert torch.allclose(m.memory_s[3], torch.tensor(unit(-1, -1)), atol=1e-6)
    assert torch.allclose(m.memory_t[0], torch.tensor(unit(1, 1)), atol=1e-6)
    assert torch.allclose(m.memory_t[3], torch.tensor(unit(1, 1)), atol=1e-6)
    for rows in ([1, 2, 4],):
        assert torch.equal(m.memory_s[rows], before_s[rows]) and torch.equal(m.memory_t[rows], before_t[rows])
    assert torch.allclose(m.memory_s.norm(dim=1), torch.ones(5))


def test_crd_nce_loss_by_hand_with_fixed_negatives():
    """Two samples, three negatives each, N = 5, T = 0.5. Scores exp(v.m / T) / Z with Z = N * mean(exp(v.m / T))
    from this first batch; each side's loss is -(1/B) sum [log(P+ / (P+ + K/N)) + sum log((K/N) / (P- + K/N))]."""
    n, k, temp, weight, eps = 5, 3, 0.5, 0.8, 1e-7
    crd = crd_with(n=n, k=k, t=temp, weight=weight)
    mem_s = [unit(1, 0), unit(0, 1), unit(1, 1), unit(-1, 0), unit(1, -1)]
    mem_t = [unit(0, 1), unit(1, 2), unit(-1, 1), unit(2, 1), unit(1, 0)]
    with torch.no_grad():
        crd.module.memory_s.copy_(torch.tensor(mem_s))
        crd.module.memory_t.copy_(torch.tensor(mem_t))
    v_s, v_t = [unit(3, 4), unit(0, -1)], [unit(1, 0), unit(1, 1)]
    index, negatives = [2, 4], [[0, 1, 3], [3, 2, 0]]

    def side(v, memory):
        rows = [[i] + neg for i, neg in zip(index, negatives)]
        e = [[math.exp((v[b][0] * memory[r][0] + v[b][1] * memory[r][1]) / temp) for r in rows[b]] for b in range(2)]
        z = n * sum(map(sum, e)) / (2 * (k + 1))
        noise = k / n
        total = 0.0
        for b in range(2):
            p = [x / z for x in e[b]]
            total += math.log(p[0] / (p[0] + noise + eps)) + sum(math.log(noise / (q + noise + eps)) for q in p[1:])
        return -total / 2, z

    loss_s, z_s = side(v_s, mem_t)  # the student's embedding against the teacher's bank
    loss_t, z_t = side(v_t, mem_s)
    s = torch.tensor(v_s)[:, :, None] * 2.0  # scaled: the head normalises
    t = torch.tensor(v_t)[:, :, None] * 3.0
    got = crd([s], [t], index=torch.tensor(index), negatives=torch.tensor(negatives))["crd"]
    assert math.isclose(got.item(), weight * (loss_s + loss_t), rel_tol=1e-5)
    assert torch.allclose(crd.module.z, torch.tensor([z_s, z_t]), rtol=1e-5)  # kept for every later batch


def test_crd_negatives_are_uniform_over_the_other_samples_and_k_is_capped():
    crd = crd_with(n=5, k=4096)
    assert crd.k == 4
    index = torch.arange(5).repeat(400)
    neg = crd.negatives(index)
    assert neg.shape == (2000, 4) and not (neg == index[:, None]).any()
    counts = torch.bincount(neg[index == 0].flatten(), minlength=5)
    assert counts[0] == 0 and counts[1:].min() > 300  # 1600 draws over 4 rows: 400 each expected


def test_crd_without_the_training_size_is_refused():
    with pytest.raises(ValueError, match="training split's size"):
        CRD().build([torch.zeros(2, 2, 3)], [torch.zeros(2, 2, 3)])


def test_crd_and_reviewkd_are_configured_like_feature_methods():
    from edgedistill.config import DistillConfig
    from edgedistill.distill import describe
    from edgedistill.distill.ce import CrossEntropy
    from edgedistill.distill.features import FeatureDistillation
    from edgedistill.distill.kd import HintonKD
    from edgedistill.train.method_setup import build_method

    with_kd = build_method(DistillConfig(method=["kd", "crd"], crd={"nce_k": 16}))
    assert isinstance(with_kd, FeatureDistillation) and isinstance(with_kd.logit_method, HintonKD)
    assert with_kd.wants == {"index"} and with_kd.feature_methods[0].nce_k == 16
    alone = build_method(DistillConfig(method="crd"))
    assert isinstance(alone.logit_method, CrossEntropy) and isinstance(alone.feature_methods[0], CRD)
    review = build_method(DistillConfig(method=["dkd", "reviewkd"], reviewkd={"warmup_epochs": 3}))
    assert isinstance(review.feature_methods[0], ReviewKD) and review.feature_methods[0].warmup_epochs == 3
    d = DistillConfig(method=["reviewkd", "crd"]).model_dump()
    assert describe(d) == ("CE + reviewkd (weight 1.0, warm-up 1/12 of epochs) + "
                           "crd (weight 0.8, dim 128, K=4096, T=0.07)")


def tiny_pair(input_shape: tuple[int, ...]):
    from edgedistill.models import create_model

    torch.manual_seed(0)
    teacher = create_model("convnet", input_shape, 10, {"channels": [6, 8]})
    student = create_model("convnet", input_shape, 10, {"channels": [2, 4]})
    x = torch.randn(40, *input_shape).numpy()
    y = (torch.arange(40) % 10).numpy()
    return teacher, student, x, y


def train_two_steps(method, teacher, student, x, y):
    from edgedistill.config import AugmentConfig, TrainConfig
    from edgedistill.train.trainer import Trainer, batch_source

    cfg = TrainConfig(epochs=1, batch_size=8, max_steps_per_epoch=2, schedule="constant", lr=0.01)
    trainer = Trainer(cfg, method, batch_source(method, AugmentConfig(), teacher), torch.device("cpu"), 0, "student")
    return trainer.fit(student, x, y, x[:10], y[:10])


@pytest.mark.parametrize("input_shape", [(1, 16, 16), (1, 40)])
@pytest.mark.parametrize("name", ["reviewkd", "crd"])
def test_method_trains_with_a_tiny_cnn_pair(name, input_shape, tmp_path):
    from edgedistill.distill.ce import CrossEntropy
    from edgedistill.distill.features import FeatureDistillation

    teacher, student, x, y = tiny_pair(input_shape)
    feature = ReviewKD() if name == "reviewkd" else CRD(feat_dim=8, nce_k=16)
    method = FeatureDistillation(CrossEntropy(), [feature]).setup(student, teacher, torch.as_tensor(x[:2]),
                                                                   num_train=len(x))
    start = {k: v.clone() for k, v in method.trainable.state_dict().items()}
    result = train_two_steps(method, teacher, student, x, y)
    row = result.history[-1]
    assert math.isfinite(row[f"train_{name}"]) and row[f"train_{name}"] > 0 and math.isfinite(row["train_loss"])
    params = list(method.trainable.parameters())
    assert params and all(p.grad is not None for p in params)  # the last step's gradients are left in place
    assert any(p.grad.abs().sum() > 0 for p in params)
    end = method.trainable.state_dict()
    assert any(not torch.equal(start[k], end[k]) for k in start if "weight" in k)
    if name == "crd":
        bank = end["0.memory_s"]
        moved = (bank != start["0.memory_s"]).any(1)
        assert moved.sum() == 16  # two batches of 8 rows
        assert end["0.z"].min() > 0  # both normalisers set at the first batch
        path = tmp_path / "method.pt"  # as the resume state keeps it
        torch.save({k: v.detach().cpu() for k, v in end.items()}, path)
        again = FeatureDistillation(CrossEntropy(), [CRD(feat_dim=8, nce_k=16, seed=1)])
        again.setup(student, teacher, torch.as_tensor(x[:2]), num_train=len(x))
        assert not torch.equal(again.trainable.state_dict()["0.memory_s"], bank)
        again.trainable.load_state_dict(torch.load(path, weights_only=True))
        restored = again.trainable.state_dict()
        for key in ("0.memory_s", "0.memory_t", "0.z"):
            assert torch.equal(restored[key], end[key])
