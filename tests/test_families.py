"""Every teacher family learns, and distils into the student family it is paired with: the teacher beats chance on the
rows it trained on, and the student's outputs move toward the teacher's. Cheap (no pipeline, no export): the
end-to-end run is test_pipeline's."""
import pytest
import torch
import torch.nn.functional as F

from conftest import needs_fashion, tiny_config
from edgedistill.config import AugmentConfig, TrainConfig, resolve_config
from edgedistill.distill.ce import CrossEntropy
from edgedistill.distill.kd import HintonKD
from edgedistill.models.build import build_model
from edgedistill.pipeline import load_data
from edgedistill.roles import Side
from edgedistill.train.trainer import Trainer, batch_source

MNIST1D = [("resnet", {"width": 8, "blocks": [1, 1]}, "convnet", {"channels": [8, 16]}),
           ("gru", {"hidden": 16, "layers": 1}, "mobilenet", {"width_mult": 0.5}),
           ("lstm", {"hidden": 16, "layers": 1}, "mlp", {"hidden": [32]}),
           ("transformer", {"patch": 4, "dim": 16, "depth": 1, "heads": 2}, "convnet", {"channels": [8]})]
SENSORS = [("gru", {"hidden": 16, "layers": 1}, "convnet", {"channels": [8, 8]}),
           ("transformer", {"patch": 4, "dim": 16, "depth": 1, "heads": 2}, "convnet", {"channels": [8, 8]}),
           ("inception_time", {"filters": 8, "depth": 3}, "convnet", {"channels": [8, 8]})]


def kl_to_teacher(student: torch.nn.Module, teacher: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        student.eval()
        return float(F.kl_div(F.log_softmax(student(x), 1), F.log_softmax(teacher(x), 1), log_target=True,
                              reduction="batchmean"))


def fit(model: torch.nn.Module, method, teacher, data, epochs: int) -> None:
    """Four steps an epoch (64 rows, batch 16); the model keeps its last epoch, so the check sees what training did
    rather than which epoch 16 validation rows happened to prefer."""
    train = TrainConfig(epochs=epochs, batch_size=16, schedule="constant", lr=0.01, keep="last")
    Trainer(train, method, batch_source(method, AugmentConfig(), teacher), torch.device("cpu"), 0, "t").fit(
        model, data.x_train[:64], data.y_train[:64], data.x_val[:16], data.y_val[:16])


@pytest.mark.parametrize("dataset,teacher,targs,student,sargs",
                         [("mnist1d", *p) for p in MNIST1D] + [("basic_motions", *p) for p in SENSORS]
                         + [pytest.param("fashion_mnist", *p, marks=needs_fashion) for p in MNIST1D])
def test_a_teacher_family_learns_and_a_student_family_learns_it(dataset, teacher, targs, student, sargs):
    cfg = resolve_config(tiny_config(dataset, teacher, student, targs, sargs))
    data = load_data(cfg)
    x, y = torch.as_tensor(data.x_train[:64]), torch.as_tensor(data.y_train[:64])
    t = build_model(cfg.teacher, Side.TEACHER, data, 0)
    fit(t, CrossEntropy(), None, data, 15)
    t.eval()
    with torch.no_grad():
        accuracy = float((t(x).argmax(1) == y).float().mean())
    assert accuracy > 2 / data.num_classes, accuracy
    s = build_model(cfg.student, Side.STUDENT, data, 1)
    before = kl_to_teacher(s, t, x)
    fit(s, HintonKD(temperature=1.0, alpha=1.0), t, data, 15)  # the teacher's outputs alone
    after = kl_to_teacher(s, t, x)
    assert after < 0.7 * before, (before, after)
