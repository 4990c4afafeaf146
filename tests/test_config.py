from pathlib import Path

import pytest
import yaml

from edgedistill.config import ExperimentConfig, apply_overrides, load_config, resolve_config
from edgedistill.errors import UserError


def test_packaged_default_is_valid():
    cfg = load_config()
    assert cfg.data.name == "mnist1d"
    assert cfg.teacher.model == "resnet"


def test_set_overrides_any_key_with_yaml_types():
    cfg = load_config(None, ["teacher.train.epochs=3", "data.augment.hflip=true", "student.args.channels=[8, 16]",
                             "name=other"])
    assert cfg.teacher.train.epochs == 3
    assert cfg.data.augment.hflip is True
    assert cfg.student.args["channels"] == [8, 16]
    assert cfg.name == "other"


def test_unknown_key_is_named(tmp_path):
    raw = yaml.safe_load(load_config().model_dump_json())
    raw["teacher"]["trian"] = {"epochs": 3}
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"unknown key 'teacher\.trian'"):
        load_config(f)


def test_wrong_type_is_named():
    with pytest.raises(UserError, match=r"key 'teacher\.train\.epochs'.*integer"):
        load_config(None, ["teacher.train.epochs=many"])


@pytest.mark.parametrize("override,key", [("teacher.train.lr=-1", "teacher.train.lr"),
                                          ("distill.temperature=0", "distill.temperature"),
                                          ("distill.alpha=1.5", "distill.alpha"),
                                          ("data.val_fraction=0", "data.val_fraction")])
def test_out_of_range_values_are_refused(override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_malformed_yaml_names_the_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nteacher: {model: resnet\n")
    with pytest.raises(UserError, match="malformed YAML at line"):
        load_config(f)


def test_missing_config_file():
    with pytest.raises(UserError, match="not found"):
        load_config("/nonexistent/exp.yaml")


def test_set_without_equals_is_refused():
    with pytest.raises(UserError, match="expected key=value"):
        apply_overrides({}, ["teacher.train.epochs"])


def test_resolve_config_accepts_dict_and_object(tiny):
    cfg = resolve_config(tiny(), ["seed=7"])
    assert isinstance(cfg, ExperimentConfig) and cfg.seed == 7
    again = resolve_config(cfg, ["seed=8"])
    assert again.seed == 8 and cfg.seed == 7


SHIPPED = [None, *sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: "default" if p is None else p.stem)
def test_every_shipped_config_passes_the_checks_that_need_no_data(path):
    """configs/acsf1.yaml asked for a 16-bit input on the mcu profile from 2026-12-02, when that profile's format
    became TFLite Micro, which takes 8-bit inputs: `edgedistill run` refused it in 2 s, and no test ran it."""
    from edgedistill.deploy import check_deploy, deploy_plan, get_device

    cfg = load_config(path)
    profile = get_device(cfg.device, cfg.device_catalog)
    plan = deploy_plan(cfg.deploy, profile)
    check_deploy(plan.formats, profile, plan.input_bits)
