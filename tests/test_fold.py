"""Batch norm folded into convolutions for the teacher-cache build: same outputs, same hook values, original intact."""
from __future__ import annotations

import json

import torch
import torch.nn as nn

from conftest import run_cli, tiny_config
from edgedistill.distill.taps import TapRecorder
from edgedistill.models import create_model
from edgedistill.models.fold import conv_bn_pairs, for_inference
from test_cli import write_config
from user_models import bn_without_running_stats


def with_running_stats(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """BN statistics far from the identity, so a wrong fold shows."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape) * 3 + 1)
    return model


def test_folded_resnet_gives_the_same_logits_and_tap_values_and_leaves_the_original_alone():
    torch.manual_seed(0)
    for shape in [(1, 12, 12), (2, 30)]:  # an image and a 2-channel sequence
        teacher = with_running_stats(create_model("resnet", shape, 5, {"width": 8, "blocks": [1, 1]}), shape)
        folded = for_inference(teacher)
        assert teacher.training and folded is not teacher and not folded.training
        assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in teacher.modules())
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
        x = torch.randn(7, *shape)
        taps = ["stages.0", "stages.1.0.bn2"]  # a container, and a batch norm that becomes an Identity
        rec_t, rec_f = TapRecorder(teacher, taps), TapRecorder(folded, taps)
        with torch.no_grad():
            want, got = teacher.eval()(x), folded(x)
        assert torch.allclose(want, got, atol=1e-5), (want - got).abs().max()
        for a, b in zip(rec_t.take(), rec_f.take()):
            assert torch.allclose(a, b, atol=1e-5)


def test_a_tapped_conv_keeps_its_raw_output_and_untraceable_models_are_returned_as_they_are():
    torch.manual_seed(0)
    teacher = create_model("resnet", (1, 12, 12), 5, {"width": 8, "blocks": [1]}).eval()
    pairs = conv_bn_pairs(teacher, keep={"stem.0"})
    assert ("stem.0", "stem.1") not in pairs and ("stages.0.0.conv1", "stages.0.0.bn1") in pairs
    assert isinstance(for_inference(teacher, keep={"stem.0"}).stem[1], nn.BatchNorm2d)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x  # data-dependent: fx cannot trace it

    branchy = Branchy().eval()
    assert for_inference(branchy) is branchy

    class Shared(nn.Module):  # one conv called twice: its weights cannot absorb either batch norm
        def __init__(self):
            super().__init__()
            self.conv, self.bn1, self.bn2 = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn1(self.conv(x)) + self.bn2(self.conv(x))

    assert conv_bn_pairs(Shared()) == []


def test_a_batch_norm_without_running_statistics_is_not_folded_and_the_run_finishes(tmp_path):
    """Such a norm uses the batch's statistics even in eval mode: there is no fixed affine map to fold, and
    torch's fuse_conv_bn_eval asserts on it (the KD student's live teacher crashed the run)."""
    torch.manual_seed(0)
    teacher = bn_without_running_stats((1, 40), 10).eval()
    assert conv_bn_pairs(teacher) == []
    x = torch.randn(5, 1, 40)
    with torch.no_grad():
        assert torch.equal(for_inference(teacher)(x), teacher(x))
    cfg = tiny_config(teacher="user_models:bn_without_running_stats")
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "r"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "student_kd" in json.loads((tmp_path / "r" / "metrics.json").read_text())["models"]
