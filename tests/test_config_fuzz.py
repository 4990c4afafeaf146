"""Random configs thrown at the loader: each is accepted or refused with a UserError, never a crash."""
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgedistill.config import apply_overrides, load_config, resolve_config
from edgedistill.errors import UserError

KEYS = ["name", "seed", "device", "data", "teacher", "student", "distill", "deploy", "compress", "epochs", "lr",
        "model", "args", "train", "augment", "crop_padding", "temperature", "alpha", "prune", "nonsense"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                      max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_random_config_dicts_never_crash(raw):
    try:
        resolve_config(raw)
    except UserError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["teacher.train.epochs", "distill.temperature", "data.name", "seed",
                                           "student.args", "data.augment.crop_padding", "deploy", "x.y.z"]),
                          st.text(max_size=10)), max_size=4))
def test_random_overrides_never_crash(pairs):
    try:
        load_config(None, [f"{k}={v}" for k, v in pairs])
    except UserError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_random_yaml_text_never_crashes(tmp_path_factory, text):
    f = tmp_path_factory.mktemp("y") / "c.yaml"
    f.write_text(text)
    try:
        load_config(f)
    except UserError as exc:
        assert "\n" not in str(exc)
