"""The one byte formatter, so a size reads the same in the CLI, the fit verdict and the reports."""
from __future__ import annotations


def human_bytes(n: float) -> str:
    """Bytes in KB (1024, one decimal) below 1 MB, MB or GB (two decimals) above; under 1 KB as plain bytes."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{int(n)} B"
