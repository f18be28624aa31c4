"""Training patches/s from BasicSR LMDBs (data=lmdb) against the in-memory backend, one process.

    python bench/lmdb_read.py [--images 40] [--patches 400] [--scale 4] [--patch 48]

Sub-images as BasicSR's extract_subimages.py makes them for DIV2K (480x480 HR, 120x120 LR at x4),
cut from the bundled photos upscaled to DIV2K size, written to an HR and an LR LMDB the way
make_lmdb_from_imgs writes them (cv2.imencode PNG, level 1). Timed per patch, in the main process
(one loader worker does the same work): the LMDB backend (read + PNG-decode HR and LR, crop, flip)
and the in-memory backend over the same pairs decoded beforehand (crop, flip). The figure a GPU
needs is data.batch_size x its steps/s: 16 x 100 = 1,600 patches/s, reached with that many
workers' worth of patches/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import lmdb
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sr_experiments.data.datasets import PairedPatchDataset
from sr_experiments.data.lmdb_source import LmdbPairs, LmdbPatchDataset
from sr_experiments.data.sources import resolve_sources
from sr_experiments.imaging.imresize import imresize

CROP, STEP = 480, 240


def sub_images(count: int, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(key, HR, LR) RGB arrays: 480x480 crops of DIV2K-size photos and their MATLAB-exact LR."""
    from PIL import Image

    out = []
    for i, source in enumerate(resolve_sources("sample:train", scale, "generate")):
        with Image.open(source.gt) as im:
            im = im.convert("RGB")
            big = np.asarray(im.resize((2040, round(im.height * 2040 / im.width)), Image.BICUBIC))
        for y in range(0, big.shape[0] - CROP + 1, STEP):
            for x in range(0, big.shape[1] - CROP + 1, STEP):
                hr = np.ascontiguousarray(big[y : y + CROP, x : x + CROP])
                lr = imresize(torch.from_numpy(hr.transpose(2, 0, 1).copy()), scale=1 / scale).numpy().transpose(1, 2, 0)
                out.append((f"{i + 1:04d}_s{len(out) + 1:03d}", hr, np.ascontiguousarray(lr)))
                if len(out) == count:
                    return out
    return out


def write_lmdb(path: Path, images: list[tuple[str, np.ndarray]]) -> None:
    env = lmdb.open(str(path), map_size=1 << 32)
    with env.begin(write=True) as txn, open(path / "meta_info.txt", "w") as meta:
        for key, rgb in images:
            _, data = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            txn.put(key.encode("ascii"), data.tobytes())
            meta.write(f"{key}.png ({rgb.shape[0]},{rgb.shape[1]},3) 1\n")
    env.close()


def patches_per_s(dataset, patches: int) -> float:
    for i in range(10):  # warm-up
        dataset[i]
    start = time.perf_counter()
    for i in range(patches):
        dataset[i]
    return patches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--patches", type=int, default=400)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--patch", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one loader worker's share
    subs = sub_images(args.images, args.scale)
    with tempfile.TemporaryDirectory() as tmp:
        hr, lr = Path(tmp) / "HR_sub.lmdb", Path(tmp) / f"LR_X{args.scale}_sub.lmdb"
        write_lmdb(hr, [(k, h) for k, h, _ in subs])
        write_lmdb(lr, [(k, low) for k, _, low in subs])
        pairs = LmdbPairs([str(hr)], [str(lr)], args.scale)
        lazy = LmdbPatchDataset(pairs, args.scale, args.patch, args.patches + 10, seed=0)
        memory = PairedPatchDataset(list(pairs), args.scale, args.patch, args.patches + 10, seed=0)
        size_mb = sum(p.stat().st_size for d in (hr, lr) for p in d.iterdir()) / 1e6
        rates = {"lmdb": patches_per_s(lazy, args.patches), "memory": patches_per_s(memory, args.patches)}
    print(f"{len(subs)} sub-images {CROP}x{CROP} (LR x{args.scale}), LMDBs {size_mb:.0f} MB; LR patch {args.patch}, "
          f"one thread")
    for name, rate in rates.items():
        print(f"{name:>7}: {rate:8.0f} patches/s per worker; workers for 1,600 patches/s: {1600 / rate:5.1f}")


if __name__ == "__main__":
    main()
