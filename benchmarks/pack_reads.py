"""How the pack is read: one epoch of random batches through a numpy memory map against pread (data/rows.py),
each in a fresh process, with its rows/s and peak resident memory.

    python benchmarks/pack_reads.py PACK_FOLDER [--batch 128] [--key pack_reads]

PACK_FOLDER holds images.u8 and meta.json (benchmarks/data_scale.py leaves one under bench_runs/). Pages a memory
map touches count in the process's RSS, so an epoch over a pack larger than the RSS budget would break it; pread
goes through the same page cache and leaves only the batch in the process. The files are read once beforehand,
so both readers start from a warm page cache.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from record import header, replace_section

READ = """
import json, resource, sys, time
import numpy as np
from pathlib import Path
folder, how, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
meta = json.loads((folder / "meta.json").read_text())
shape = tuple(meta["shape"])
order = np.random.default_rng(0).permutation(shape[0])
if how == "memmap":
    rows = np.memmap(folder / "images.u8", dtype=np.uint8, mode="r", shape=shape)
    take = lambda idx: np.asarray(rows[np.sort(idx)])
else:
    from edgedistill.data.rows import RowFile
    rows = RowFile(folder / "images.u8", shape, np.uint8)
    take = lambda idx: rows.take(np.sort(idx))
t0 = time.perf_counter()
total = 0
for i in range(0, len(order), batch):
    total += int(take(order[i:i + batch]).astype(np.float32).sum() > 0)
seconds = time.perf_counter() - t0
print(json.dumps({"rows_per_s": shape[0] / seconds, "seconds": seconds,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def read_epoch(folder: Path, how: str, batch: int) -> dict:
    out = subprocess.run([sys.executable, "-c", READ, str(folder), how, str(batch)], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", type=Path)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--key", default="pack_reads")
    args = ap.parse_args()
    t0 = time.perf_counter()
    meta = json.loads((args.pack / "meta.json").read_text())
    size = (args.pack / "images.u8").stat().st_size
    with open(args.pack / "images.u8", "rb") as fh:  # warm the page cache for both readers alike
        while fh.read(2**26):
            pass
    results = {how: read_epoch(args.pack, how, args.batch) for how in ("memmap", "pread")}
    rows = [f"| {how} | {r['rows_per_s']:,.0f} | {r['seconds']:.1f} | {r['peak_rss_bytes'] / 2**20:,.0f} MiB |"
            for how, r in results.items()]
    text = "\n".join([
        f"### Reading the pack: memory map against pread ({meta['shape'][0]:,} rows of "
        f"{'x'.join(map(str, meta['shape'][1:]))} uint8, {size / 2**30:.2f} GiB)\n",
        header(time.perf_counter() - t0).rstrip("\n"),
        f"- one epoch in random batches of {args.batch} (sorted within the batch), converted to float32; each "
        "reader in a fresh process, page cache warm\n",
        "| reader | rows/s | seconds | peak RSS of the process |", "|---|---|---|---|", *rows, ""])
    replace_section(args.key, text)
    print(text)


if __name__ == "__main__":
    main()
