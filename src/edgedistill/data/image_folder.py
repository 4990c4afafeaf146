"""A folder of images per class, packed once to uint8 and streamed: a 100K x 96x96 RGB folder is 2.8 GB as uint8
on disk and 11 GB as float32, so the split is read per batch and standardised there (data.options.in_memory:
true decodes it whole into float32, the old path, for small folders)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill import distributed
from edgedistill.data import RawSplits, fixed_split, register_dataset
from edgedistill.data.files import require_path
from edgedistill.data.packing import Pack, channel_stats, open_pack
from edgedistill.data.rows import PackedImages
from edgedistill.data.forms import InputForm, pixel_layout
from edgedistill.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
TRAIN, TEST = 0, 1


def image_files(folder: Path) -> list[Path]:
    """Image files by suffix; hidden ones (macOS's ._name, editors' backups) are never data."""
    return sorted(f for f in folder.iterdir()
                  if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)


def class_files(root: Path, empty_ok: bool = False) -> tuple[list[Path], list[str], list[str]]:
    """One class per visible subfolder (hidden ones such as .ipynb_checkpoints are skipped); a training class
    folder with no images is refused, since it would be a class nothing teaches."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class subfolders; put each class's images in {root}/<class_name>/")
    files, labels = [], []
    for cls in classes:
        found = image_files(root / cls)
        if not found and not empty_ok:
            raise UserError(f"{root / cls}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                            "add some or remove the folder")
        files += found
        labels += [cls] * len(found)
    if not files:
        raise UserError(f"{root}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))}); add some per class folder")
    return files, labels, classes


def image_size(size: list[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in size)):
        raise UserError(f"data.options.size: {size!r} must be [height, width] in pixels, each 1..4096")
    return tuple(size)


def has_own_split(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def listing(root: Path) -> tuple[list[Path], np.ndarray, np.ndarray, list[str]]:
    """Every image with its class index and its tag: train and test from train/ and test/, else all TRAIN."""
    if has_own_split(root):
        f_tr, l_tr, cls = class_files(root / "train")
        f_te, l_te, cls_te = class_files(root / "test", empty_ok=True)
        if cls != cls_te:
            raise UserError(f"{root}: train classes {cls} differ from test classes {cls_te}")
        files, labels, tags = f_tr + f_te, l_tr + l_te, [TRAIN] * len(f_tr) + [TEST] * len(f_te)
    else:
        files, labels, cls = class_files(root)
        tags = [TRAIN] * len(files)
    refuse_shared_files(root, files, labels, tags)
    index = {c: i for i, c in enumerate(cls)}
    return files, np.array([index[c] for c in labels], dtype=np.int64), np.array(tags, dtype=np.int64), cls


def refuse_shared_files(root: Path, files: list[Path], labels: list[str], tags: list[int]) -> None:
    """One file under two class folders (a symlinked or hard-linked folder) would be a sample of two classes, or a
    training image scored as a test one: refused, naming both folders."""
    owner: dict[tuple[int, int], str] = {}
    split = ("train/", "test/") if has_own_split(root) else ("", "")
    for f, label, tag in zip(files, labels, tags):
        st = f.stat()
        where = split[tag] + label
        first = owner.setdefault((st.st_dev, st.st_ino), where)
        if first != where:
            raise UserError(f"{root}: class folders {first!r} and {where!r} hold the same file ({f.name}); a "
                            "symlinked or linked copy makes one image two samples. Remove one of them")


def split_rows(pack: Pack, test_fraction: float, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the train and test splits: the folder's own, or a fixed stratified hold-out (seed 0)."""
    if has_own_split(root):
        return np.flatnonzero(pack.tags == TRAIN), np.flatnonzero(pack.tags == TEST)
    rows = np.arange(len(pack.labels))
    tr, te, _, _ = fixed_split(rows, pack.labels, test_fraction, str(root))
    return tr, te


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"data.options.{name}: {value!r} must be true or false")
    return value


@register_dataset("image_folder", "your images: data.path/<class>/*.png, or data.path/{train,test}/<class>/; packed "
                                  "once to uint8 and streamed")
def load_image_folder(path: str | None = None, size: list[int] | None = None, grayscale: bool = True,
                      test_fraction: float = 0.2, in_memory: bool = False, pack_dir: str | None = None,
                      skip_unreadable: bool = False) -> RawSplits:
    root = require_path("image_folder", path, "a folder with one subfolder of images per class", folder=True)
    sz, mode = image_size(size), "L" if _check_bool("grayscale", grayscale) else "RGB"
    skip = _check_bool("skip_unreadable", skip_unreadable)
    files, labels, tags, classes = listing(root)

    def pack() -> tuple[Pack, np.ndarray, np.ndarray, tuple]:
        p = open_pack(root, files, labels, tags, classes, sz, mode, skip, Path(pack_dir) if pack_dir else None)
        tr, te = split_rows(p, test_fraction, root)
        for split, rows in (("training", tr), ("test", te)):
            if len(rows) == 0:
                raise UserError(f"{root}: the {split} split holds no readable images")
        return p, tr, te, channel_stats(p, tr)

    built = distributed.on_main(pack)  # rank 0 packs and reads the statistics; the others then open that pack
    p, tr, te, (mean, std) = built if built is not None else pack()
    whole = PackedImages(p.images, np.arange(len(p.labels)), mean, std, p.fingerprint)
    x_tr, x_te = whole.subset(tr), whole.subset(te)
    if _check_bool("in_memory", in_memory):
        x_tr, x_te = np.asarray(x_tr), np.asarray(x_te)

    def pool_images(folder: Path, pool_files: list[Path]):
        """An unlabelled folder packed like the labelled one (same size, colour mode and statistics)."""
        none = np.zeros(len(pool_files), dtype=np.int64)

        def pack_pool() -> Pack:
            return open_pack(folder, pool_files, none, none, [], sz, mode, skip, Path(pack_dir) if pack_dir else None)

        packed = distributed.on_main(pack_pool) or pack_pool()  # rank 0 packs; the others then open that pack
        rows = PackedImages(packed.images, np.arange(packed.images.shape[0]), mean, std, packed.fingerprint)
        return np.asarray(rows) if in_memory else rows

    form = InputForm("images", images=pool_images,
                     arrays=lambda x: ((pixel_layout(x) - whole.mean) / whole.std).astype(np.float32))
    skipped = f", {len(p.skipped)} unreadable file(s) skipped" if p.skipped else ""
    return RawSplits(x_tr, p.labels[tr], x_te, p.labels[te], classes,
                     f"image folder {root.name} ({len(p.labels)} images at {p.images.shape[2]}x{p.images.shape[3]}"
                     f"{' RGB' if mode == 'RGB' else ''}{skipped})", pixel_stats=(mean.tolist(), std.tolist()),
                     form=form)
