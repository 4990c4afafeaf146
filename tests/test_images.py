"""Camera-sized image folders: packed once to uint8, reused until a file changes, streamed per batch with the same
values as the in-memory path, unreadable files named at pack time, camera augmentation, and the teacher cache on
disk."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli, tiny_config
from edgedistill.config import AugmentConfig
from edgedistill.data import load_dataset
from edgedistill.data.rows import PackedImages, RowFile
from edgedistill.errors import UserError


def rgb_folder(root: Path, classes=("cat", "dog", "owl"), n: int = 8, size: int = 12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def load(root: Path, packs: Path, **options):
    return load_dataset("image_folder", path=str(root), val_fraction=0.2,
                        options={"grayscale": False, "pack_dir": str(packs), **options})


def pack_meta(packs: Path) -> tuple[Path, tuple]:
    """The folder's one pack (<pack_dir>/<folder>-<hash>/<fingerprint>) and what changes when it is rebuilt."""
    (home,) = [p for p in packs.iterdir() if not p.name.startswith(".")]
    (folder,) = [p for p in home.iterdir()]  # no stale packs, no temporary folders left
    return folder, (folder.name, (folder / "meta.json").stat().st_mtime_ns)


def test_the_pack_is_reused_and_rebuilt_when_an_image_changes_is_added_or_removed(tmp_path):
    from PIL import Image

    root, packs = rgb_folder(tmp_path / "imgs"), tmp_path / "packs"
    first = load(root, packs)
    assert isinstance(first.x_train, PackedImages) and first.input_shape == (3, 12, 12)
    folder, built = pack_meta(packs)
    assert os.path.getsize(folder / "images.u8") == 24 * 3 * 12 * 12  # uint8: one byte a pixel and channel
    again = load(root, packs)
    assert pack_meta(packs)[1] == built  # reused, not rebuilt
    np.testing.assert_array_equal(np.asarray(again.x_test), np.asarray(first.x_test))

    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(root / "cat" / "0.png")  # changed
    os.utime(root / "cat" / "0.png", ns=(1, 1))  # a new mtime even on a coarse clock
    changed = load(root, packs)
    assert pack_meta(packs)[1] != built
    assert not np.array_equal(np.asarray(changed.x_train), np.asarray(first.x_train)) or \
        not np.array_equal(np.asarray(changed.x_test), np.asarray(first.x_test))
    built = pack_meta(packs)[1]
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(root / "dog" / "extra.png")  # added
    added = load(root, packs)
    assert pack_meta(packs)[1] != built and len(added.y_train) + len(added.y_val) + len(added.y_test) == 25
    built = pack_meta(packs)[1]
    (root / "owl" / "3.png").unlink()  # removed
    removed = load(root, packs)
    assert pack_meta(packs)[1] != built and len(removed.y_train) + len(removed.y_val) + len(removed.y_test) == 24


def test_streamed_rows_equal_the_in_memory_arrays_in_any_order(tmp_path):
    root, packs = rgb_folder(tmp_path / "imgs"), tmp_path / "packs"
    streamed, whole = load(root, packs), load(root, packs, in_memory=True)
    assert isinstance(whole.x_train, np.ndarray) and whole.x_train.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(streamed.x_train), whole.x_train)
    order = np.random.default_rng(1).permutation(len(whole.x_train))
    np.testing.assert_array_equal(streamed.x_train[order], whole.x_train[order])
    np.testing.assert_array_equal(streamed.x_train[2:5], whole.x_train[2:5])
    # standardised per channel with the training split's statistics
    assert np.allclose(whole.x_train.mean(axis=(0, 2, 3)), 0, atol=0.15)
    assert whole.pixel_stats is not None and len(whole.pixel_stats[0]) == 3


def test_channel_statistics_are_kept_beside_the_pack_and_a_damaged_record_is_computed_again(tmp_path):
    root, packs = rgb_folder(tmp_path / "imgs"), tmp_path / "packs"
    first = load(root, packs).pixel_stats
    stats = pack_meta(packs)[0] / "stats.json"
    (key,) = json.loads(stats.read_text())
    for damaged in ("[]", "{", json.dumps({key: {"mean": [0.5], "std": [0.1]}}),  # one channel of three
                    json.dumps({key: {"mean": ["a", "b", "c"], "std": [1, 1, 1]}})):
        stats.write_text(damaged)
        again = load(root, packs).pixel_stats
        np.testing.assert_allclose(again[0], first[0])
        np.testing.assert_allclose(again[1], first[1])
        assert len(json.loads(stats.read_text())[key]["mean"]) == 3  # rewritten whole


def test_a_pack_whose_meta_or_pixels_were_damaged_is_built_again_in_its_place(tmp_path):
    root, packs = rgb_folder(tmp_path / "imgs"), tmp_path / "packs"
    first = load(root, packs)
    folder, _ = pack_meta(packs)
    meta = json.loads((folder / "meta.json").read_text())
    for damage in (lambda: (folder / "meta.json").write_text("[]"),
                   lambda: (folder / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "tags"})),
                   lambda: (folder / "meta.json").write_text(json.dumps(meta | {"dtype": "not a dtype"})),
                   lambda: (folder / "images.u8").write_bytes(b"cut short")):
        damage()
        again = load(root, packs)
        np.testing.assert_array_equal(np.asarray(again.x_train), np.asarray(first.x_train))
        assert pack_meta(packs)[0] == folder and json.loads((folder / "meta.json").read_text()) == meta


def test_row_file_reads_any_rows_in_the_order_asked(tmp_path):
    data = np.arange(7 * 5, dtype=np.int16).reshape(7, 5)
    data.tofile(tmp_path / "rows.bin")
    rows = RowFile(tmp_path / "rows.bin", (7, 5), np.int16)
    for idx in ([6, 0, 1, 2, 5], [3], [], [4, 4, 1]):
        np.testing.assert_array_equal(rows.take(np.array(idx, dtype=np.int64)), data[idx])


def test_an_unreadable_image_is_named_at_pack_time_or_skipped_and_counted(tmp_path, caplog):
    root, packs = rgb_folder(tmp_path / "imgs"), tmp_path / "packs"
    bad = root / "dog" / "5.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    with pytest.raises(UserError, match=r"dog/5\.png: not a readable image.*skip_unreadable: true"):
        load(root, packs)
    assert not any(p.is_file() for p in packs.rglob("*"))  # nothing half-written is left
    with caplog.at_level(logging.WARNING, logger="edgedistill"):
        d = load(root, packs, skip_unreadable=True)
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 23
    assert "1 unreadable file(s) skipped" in d.description
    assert "1 unreadable image(s) left out" in caplog.text and "5.png" in caplog.text


def test_an_unreadable_image_stops_the_cli_with_one_line(tmp_path):
    root = rgb_folder(tmp_path / "imgs")
    (root / "owl" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cfg = tiny_config("image_folder", "convnet", "convnet", {"channels": [4]}, {"channels": [2]}, path=str(root),
                      options={"grayscale": False})
    cfg["data"].pop("limit_train"), cfg["data"].pop("limit_test")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"))
    from test_cli import assert_one_line_error

    assert_one_line_error(proc, "owl/2.png", "not a readable image", "data.options.skip_unreadable")
    assert not (tmp_path / "run").exists()


def test_resized_crop_and_colour_jitter_are_exact_at_their_identity_and_seeded():
    from edgedistill.train.augment import CX, FLIP, apply_augment, augment_params

    x = torch.rand(4, 3, 10, 10)
    cfg = AugmentConfig(hflip=True, resized_crop=(0.3, 1.0), color_jitter=0.4)
    stats = ([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    params = augment_params(tuple(x.shape), cfg, torch.Generator().manual_seed(0))
    assert params.shape == (4, 10)
    assert torch.equal(params, augment_params(tuple(x.shape), cfg, torch.Generator().manual_seed(0)))
    assert ((params[:, CX + 2:CX + 4] > 0) & (params[:, CX + 2:CX + 4] <= 1)).all()
    identity = torch.tensor([[0, 0, 0, 0.5, 0.5, 1, 1, 1, 1, 1]]).repeat(4, 1)
    z = (x - torch.tensor(stats[0]).view(1, 3, 1, 1)) / torch.tensor(stats[1]).view(1, 3, 1, 1)
    assert torch.allclose(apply_augment(z, identity, cfg, stats), z, atol=1e-5)
    flipped = identity.clone()
    flipped[:, FLIP] = 1
    assert torch.allclose(apply_augment(z, flipped, cfg, stats), z.flip(-1), atol=1e-5)
    half = identity.clone()
    half[:, 7] = 0.5  # brightness halved in pixel space
    out = apply_augment(z, half, cfg, stats) * torch.tensor(stats[1]).view(1, 3, 1, 1) + \
        torch.tensor(stats[0]).view(1, 3, 1, 1)
    assert torch.allclose(out, x * 0.5, atol=1e-5)
    old = augment_params((4, 1, 10, 10), AugmentConfig(crop_padding=2, hflip=True), torch.Generator())
    assert old.shape == (4, 3)  # the old recipes keep their three columns and their draws


def test_a_bank_beyond_the_ram_budget_is_read_from_disk_with_the_same_batches(tmp_path):
    from edgedistill.models import create_model
    from edgedistill.train.cache import CacheSpec, DiskBank, load_or_build

    torch.manual_seed(0)
    x, y = torch.randn(30, 1, 8, 8).numpy(), (torch.arange(30) % 10).numpy()
    teacher = create_model("convnet", (1, 8, 8), 10, {"channels": [4, 8]})
    aug = AugmentConfig(crop_padding=1, hflip=True)

    def bank(folder: str, ram: int):
        return load_or_build(CacheSpec(tmp_path / folder, teacher, x, y, aug, 3, 0, teacher.feature_taps,
                                       torch.device("cpu"), None, 10**9, max_ram_bytes=ram))

    in_ram, on_disk = bank("a", 10**9), bank("b", 0)
    assert isinstance(on_disk.logits, DiskBank) and isinstance(in_ram.logits, torch.Tensor)
    assert (tmp_path / "b" / "meta.json").is_file() and (tmp_path / "b" / "feat0.bin").is_file()
    idx = torch.tensor([29, 3, 4, 5, 0])
    a = in_ram.batch(torch.as_tensor(x[idx]), idx, torch.Generator().manual_seed(5), torch.device("cpu"))
    b = on_disk.batch(torch.as_tensor(x[idx]), idx, torch.Generator().manual_seed(5), torch.device("cpu"))
    for u, v in zip([a[0], a[1], *a[2]], [b[0], b[1], *b[2]]):
        assert torch.equal(u, v)
    assert torch.equal(in_ram.view_logits(idx, torch.device("cpu")), on_disk.view_logits(idx, torch.device("cpu")))
    assert not bank("b", 0).built  # its key matched: reused from disk


def test_a_streamed_run_trains_exactly_like_the_in_memory_run(tmp_path):
    """Teacher, cached KD and the scratch control on a small RGB folder, with every camera augmentation on."""
    import edgedistill

    root = rgb_folder(tmp_path / "imgs", n=20, size=16)
    results = {}
    for variant in ("streamed", "in_memory"):
        cfg = tiny_config("image_folder", "resnet", "mobilenet", {"width": 8, "blocks": [1, 1], "stem_stride": 2},
                          {"width_mult": 0.5, "stem_stride": 2}, path=str(root),
                          options={"grayscale": False, "size": [16, 16], "in_memory": variant == "in_memory"},
                          augment={"hflip": True, "resized_crop": [0.5, 1.0], "color_jitter": 0.3})
        cfg["data"].pop("limit_train"), cfg["data"].pop("limit_test")
        cfg["distill"]["cache"] = {"enabled": True, "views": 2}
        cfg["student"]["train"]["epochs"] = 2
        res = edgedistill.run(cfg, out_dir=tmp_path / variant, progress=False)
        results[variant] = {role: (m["test"]["accuracy"], [h["train_loss"] for h in m["train"]["history"]])
                            for role, m in res.metrics["models"].items()}
    assert results["streamed"] == results["in_memory"]
    meta = json.loads((tmp_path / "streamed" / "cache" / "teacher_outputs" / "meta.json").read_text())
    assert meta["params"]["shape"][2] == 10  # crop box and jitter factors are stored per view


def test_the_camera_config_validates_and_names_its_models(tmp_path):
    from edgedistill.config import resolve_config

    cfg = resolve_config(Path(__file__).parent.parent / "configs" / "camera_96.yaml", [f"data.path={tmp_path}"])
    assert cfg.data.options["size"] == [96, 96] and cfg.data.augment.resized_crop == (0.35, 1.0)
    assert cfg.teacher.args["stem_stride"] == 2 and cfg.student.model == "mobilenet"


def test_activation_ram_follows_the_input_size(tmp_path):
    """The fit check's RAM figure comes from the exported graph, so a 96x96 RGB input needs more than 32x32."""
    from edgedistill.deploy.onnx_export import export_onnx
    from edgedistill.deploy.profile import peak_activation_bytes
    from edgedistill.models import create_model

    peaks = []
    for side in (32, 96):
        model = create_model("mobilenet", (3, side, side), 10, {"width_mult": 0.5, "stem_stride": 2})
        export_onnx(model.eval(), (3, side, side), tmp_path / f"m{side}.onnx")
        peaks.append(peak_activation_bytes(tmp_path / f"m{side}.onnx", bytes_per_element=1))
    assert peaks[1] > 8 * peaks[0]  # 9x the pixels
