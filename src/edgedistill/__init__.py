"""edgedistill: turn a large, accurate model into a small one that fits an edge device, and show what it cost."""
__version__ = "0.1.0"


def run(config=None, out_dir=None, overrides=None, overwrite: bool = False, progress: bool = True,
        resume: bool = False):
    """Run one experiment (a config object, dict, YAML path, or None for the packaged default), or with `resume`
    finish the one in `out_dir`; see pipeline.run."""
    from edgedistill.pipeline import run as _run

    return _run(config, out_dir=out_dir, overrides=overrides, overwrite=overwrite, progress=progress, resume=resume)


__all__ = ["run", "__version__"]
