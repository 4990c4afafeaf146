"""Shared fixtures: tiny experiment configs that run the real pipeline in seconds."""
from __future__ import annotations

import atexit
import copy
import inspect
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_server import CliServer
from edgedistill.data.builtin import find_fashion_dir
from edgedistill.errors import UserError

TESTS = Path(__file__).resolve().parent
TINY_TRAIN = {"epochs": 1, "batch_size": 32, "lr": 0.003, "max_steps_per_epoch": 4}


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist every core already runs a worker, so each worker and the CLI runs it starts use one torch thread;
    two threads per worker on two cores made a 6 s GRU fit take 45 s. OMP_NUM_THREADS set by the caller wins."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _fashion_available() -> bool:
    try:
        find_fashion_dir(None)
        return True
    except UserError:
        return False


fashion_available = _fashion_available()
needs_fashion = pytest.mark.skipif(
    not fashion_available, reason="Fashion-MNIST IDX files absent: apt-get install dataset-fashion-mnist")


def tiny_config(dataset: str = "mnist1d", teacher: str = "resnet", student: str = "convnet",
                teacher_args: dict | None = None, student_args: dict | None = None, **data) -> dict:
    return {
        "name": f"tiny-{dataset}-{teacher}-{student}",
        "seed": 0,
        "data": {"name": dataset, "limit_train": 200, "limit_test": 100, **data},
        "teacher": {"model": teacher, "args": teacher_args or {}, "train": copy.deepcopy(TINY_TRAIN)},
        "student": {"model": student, "args": student_args or {}, "train": copy.deepcopy(TINY_TRAIN)},
        "distill": {"method": "kd", "temperature": 4.0, "alpha": 0.9},
        "deploy": {"enabled": False},  # export/quantize/latency are covered once, in test_deploy.py
    }


@pytest.fixture
def tiny() -> callable:
    return tiny_config


def shared_run(tmp_path_factory, name: str, cfg: dict) -> tuple[Path, dict]:
    """A run made once per test session, whichever xdist worker asks first; the others wait and read it."""
    import json

    import edgedistill
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the session's folder, all workers'
    out = root / f"shared_{name}" / "run"
    with FileLock(str(root / f"shared_{name}.lock")):
        if not (out / "metrics.json").exists():
            edgedistill.run(cfg, out_dir=out, progress=False)
    return out, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="session")
def deployed_run(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny run with every step on (deployment to the MCU profile), shared by the tests that read its outputs."""
    cfg = tiny_config()
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "qat": "off"}
    cfg["device"] = "mcu"
    return shared_run(tmp_path_factory, "deployed", cfg)


_cli_servers: list[CliServer] = []


def cli_server(env: dict[str, str], own: bool) -> CliServer | None:
    """This pytest process's fork server for `env`, or None. The test process's own environment (`own`: no
    env_extra) gets one, started on first use and again when a test has changed os.environ; a call's extra
    variables run in a fresh interpreter."""
    if _cli_servers and _cli_servers[0].serves(env):
        return _cli_servers[0]
    if not own:
        return None
    if _cli_servers:
        _cli_servers.pop().close()
    else:
        atexit.register(lambda: [server.close() for server in _cli_servers])
    _cli_servers.append(CliServer(env))
    return _cli_servers[0]


def run_cli(*args: str, cwd: Path | None = None, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a process of its own, as a user would run it: forked from tests/cli_server.py, which has
    imported torch and the rest once, or, when env_extra changes what imports read, in a fresh interpreter. The
    caller's PYTHONPATH follows the tests' folder, so a checkout tested beside an installed copy runs its own code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(TESTS), os.environ.get("PYTHONPATH")))),
           **(env_extra or {})}
    argv = [sys.executable, "-m", "edgedistill", *args]
    server = cli_server(env, own=not env_extra)
    if server is None or not server.busy.acquire(blocking=False):  # a second call at once: its own interpreter
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    try:
        code, out, err = server.run(list(args), cwd, env, timeout=300)
    finally:
        server.busy.release()
    return subprocess.CompletedProcess(argv, code, out, err)


END_TO_END = re.compile(r"\brun_cli\(|edgedistill\.run\(|run_seeds\(|\bdeployed_run\b|\bsubprocess\b")


def end_to_end_helpers(module) -> re.Pattern:
    """The calls that start the pipeline or an interpreter in a test module: END_TO_END's, and its own functions
    whose source matches END_TO_END (a `run_config(...)` that runs the CLI), one level deep."""
    names = [name for name, fn in inspect.getmembers(module, inspect.isfunction)
             if fn.__module__ == module.__name__ and not name.startswith("test_") and
             END_TO_END.search(inspect.getsource(fn))]
    return re.compile("|".join([END_TO_END.pattern] + [rf"\b{re.escape(n)}\(" for n in names]))


def pytest_collection_modifyitems(items) -> None:
    """A test that starts the whole pipeline or a fresh interpreter, itself or through a helper of its module, is
    `slow`, by one rule read off its source, so none is forgotten: `make test-fast` (-m "not slow") runs the rest,
    `make test` runs everything."""
    patterns: dict[str, re.Pattern] = {}
    for item in items:
        fn = getattr(item, "function", None)
        if fn is None or item.get_closest_marker("slow"):
            continue
        try:
            source = inspect.getsource(fn)
            module = inspect.getmodule(fn)
            rule = patterns.setdefault(module.__name__, end_to_end_helpers(module))
        except (OSError, TypeError, AttributeError):
            continue
        if rule.search(source) or any(END_TO_END.search(name) for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """edgedistill's cache folder (image packs, MNIST-1D's arrays) is the test session's, never the user's ~/.cache;
    CLI subprocesses inherit the variable."""
    before = os.environ.get("EDGEDISTILL_CACHE")
    os.environ["EDGEDISTILL_CACHE"] = str(tmp_path_factory.mktemp("edgedistill_cache"))
    yield
    if before is None:
        os.environ.pop("EDGEDISTILL_CACHE", None)
    else:
        os.environ["EDGEDISTILL_CACHE"] = before


def write_digits_folder(root: Path) -> Path:
    """scikit-learn's 1,797 digits as 8x8 grey PNGs, one folder per class: a small real image folder."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for i, (img, label) in enumerate(zip(bunch.images, bunch.target)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img * 255 / 16).astype(np.uint8)).save(root / str(label) / f"{i}.png")
    return root
