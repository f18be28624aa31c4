"""Fetch the standard SR data sets into ``paths.data_dir`` in the layout the data configs expect.

    python -m sr_experiments.tools.download --dest DIR [--sets Set5 Set14 BSD100 Urban100 DIV2K DIV2K_valid DF2K]
                                           [--scales 2 3 4] [--archive FILE ...]

Sources, each downloaded with pooch (progress bar, hash check) into ``<dest>/.downloads``:

* the benchmark archive published with EDSR (Set5, Set14, B100, Urban100, each with HR and
  MATLAB-made ``LR_bicubic/X2..X4``) -> ``<dest>/<Set>``;
* DIV2K from its authors (ETH Zurich): ``DIV2K_{train,valid}_HR.zip`` and the bicubic
  ``..._LR_bicubic_X{2,3,4}.zip`` -> ``<dest>/DIV2K`` and ``<dest>/DIV2K_valid`` (``HR/0001.png``,
  ``LR_bicubic/X4/0001x4.png``: ``data=div2k``);
* Flickr2K from the EDSR authors (``Flickr2K.tar``: HR and bicubic LR x2-x4) -> ``<dest>/Flickr2K``;
  ``DF2K`` is DIV2K + Flickr2K (``data.train_dir=[<dest>/DIV2K,<dest>/Flickr2K]``, or prepared
  for streaming: README, Training on large datasets).

Checks, in order:

* the archive's SHA-256 against ``ARCHIVES[...].sha256`` when pinned: pooch deletes a download
  that differs and the script stops (an ``--archive FILE`` that differs is refused, not deleted).
  DIV2K's hashes are the ones TensorFlow Datasets pins for the same URLs. The EDSR benchmark
  archive and Flickr2K.tar have no published hash that we found: their hash is printed and
  appended to ``<dest>/SHA256SUMS`` on first download, for the user to compare and record;
* every extracted image of Set5 and Set14 against pixel hashes of the reference copies
  (``reference_pixels.json``: SHA-256 of shape + decoded pixels, so a re-encoded PNG still
  matches while a different crop or version of an image does not); a difference is a warning
  naming the files. The other sets have no reference hashes.

A folder already installed is left as it is (delete it to install again). Manga109 is licensed
per user and has no public mirror: the script says where to request it. Without network the
script stops at once, naming the host, and ``--archive FILE`` installs from archives fetched by
other means (matched by file name; any other name is taken as the benchmark archive).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from sr_experiments.provenance import file_sha256


@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str | None  # pinned only from a cited source, or once verified by a maintainer with network access
    sets: dict[str, str] = field(default_factory=dict)  # where to install (relative to dest) -> folder inside the archive
    size: int | None = None  # bytes, where known (printed before downloading)

    @property
    def filename(self) -> str:
        return Path(urlparse(self.url).path).name


DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K"
# SHA-256 and sizes of the DIV2K archives: TensorFlow Datasets' pins for these URLs
# (tensorflow/datasets, tensorflow_datasets/datasets/div2k/checksums.tsv).
DIV2K_PINS = {
    "DIV2K_train_HR": (3530603713, "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"),
    "DIV2K_valid_HR": (448993893, "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"),
    "DIV2K_train_LR_bicubic_X2": (925390592, "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850"),
    "DIV2K_train_LR_bicubic_X3": (427847282, "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a"),
    "DIV2K_train_LR_bicubic_X4": (246914039, "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a"),
    "DIV2K_valid_LR_bicubic_X2": (117763600, "60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57"),
    "DIV2K_valid_LR_bicubic_X3": (54513392, "04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3"),
    "DIV2K_valid_LR_bicubic_X4": (31505881, "a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553"),
}
SCALES = (2, 3, 4)


def _div2k(name: str) -> Archive:
    split = "train" if "_train_" in name else "valid"
    target = "DIV2K" if split == "train" else "DIV2K_valid"
    size, sha256 = DIV2K_PINS[name]
    if name.endswith("_HR"):
        return Archive(f"{DIV2K_URL}/{name}.zip", sha256, {f"{target}/HR": name}, size)
    s = name[-1]  # the zips hold DIV2K_<split>_LR_bicubic/X<s>/<id>x<s>.png
    return Archive(f"{DIV2K_URL}/{name}.zip", sha256, {f"{target}/LR_bicubic/X{s}": f"DIV2K_{split}_LR_bicubic/X{s}"}, size)


ARCHIVES = {
    "edsr_benchmark": Archive(
        url="https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
        sha256=None,  # no published hash found; recorded in <dest>/SHA256SUMS on first download
        sets={"Set5": "benchmark/Set5", "Set14": "benchmark/Set14", "BSD100": "benchmark/B100", "Urban100": "benchmark/Urban100"},
    ),
    **{name: _div2k(name) for name in DIV2K_PINS},
    "Flickr2K": Archive(
        url="https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar",
        sha256=None,  # no published hash found; recorded in <dest>/SHA256SUMS on first download
        sets={"Flickr2K/HR": "Flickr2K/Flickr2K_HR",
              **{f"Flickr2K/LR_bicubic/X{s}": f"Flickr2K/Flickr2K_LR_bicubic/X{s}" for s in SCALES}},
    ),
}
# Data set -> the archives it comes from; {s} is each of --scales (LR archives).
DATASETS = {
    "DIV2K": ["DIV2K_train_HR", "DIV2K_train_LR_bicubic_X{s}"],
    "DIV2K_valid": ["DIV2K_valid_HR", "DIV2K_valid_LR_bicubic_X{s}"],
    "Flickr2K": ["Flickr2K"],
}
ALIASES = {"B100": ["BSD100"], "DF2K": ["DIV2K", "Flickr2K"]}
MANUAL = {"Manga109": "request it at http://www.manga109.org/en/download.html (licensed per user), then put it in <dest>/Manga109/HR"}
REFERENCE_PIXELS = Path(__file__).resolve().parents[1] / "data" / "reference_pixels.json"


class DownloadError(RuntimeError):
    pass


def pixel_hash(path: Path) -> str:
    with Image.open(path) as im:
        a = np.asarray(im)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()


def check_network(url: str, timeout: float = 5.0) -> None:
    """Fail at once (not after a long hang) when the archive's host is unreachable."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise DownloadError(
            f"cannot reach {host}:{port} ({e.strerror or e}): no network here. Fetch {url} on a machine with "
            "network and run `python -m sr_experiments.tools.download --archive FILE --dest DIR`, or copy the sets "
            "into DIR in the layout <Set>/HR/*.png"
        ) from None


def fetch(url: str, dest: Path, sha256: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with pooch; with ``sha256`` a download that differs is deleted and refused."""
    import pooch

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        # pooch streams into a temporary file beside dest and moves it there only once the hash matches.
        path = pooch.retrieve(url, known_hash=f"sha256:{sha256}" if sha256 else None, fname=dest.name,
                              path=dest.parent, progressbar=progress)
    except ValueError as e:  # pooch's hash mismatch (it names the hash it got)
        got = re.search(r"but got (\w+)", str(e))
        raise DownloadError(f"{url}: SHA-256 {got.group(1) if got else '?'} differs from the pinned {sha256} "
                            "(ARCHIVES in sr_experiments/tools/download.py); the download was deleted. Retry; if it "
                            "persists, the file on the server changed: tell the maintainers") from None
    except OSError as e:  # requests' errors are OSErrors
        raise DownloadError(f"{url}: download failed ({e}); retry, or fetch it elsewhere and pass --archive FILE") from None
    return Path(path)


def _under(name: str, prefixes: list[str] | None) -> bool:
    return prefixes is None or any(name == p or name.startswith(p.rstrip("/") + "/") for p in prefixes)


def _check_layout(archive: Path, names: list[str], prefixes: list[str] | None) -> None:
    for prefix in prefixes or []:
        if not any(_under(n, [prefix]) for n in names):
            top = ", ".join(sorted({n.split("/")[0] for n in names})[:5]) or "nothing"
            raise DownloadError(f"{archive}: no folder {prefix} in it (its top level holds: {top}); the archive's "
                                "layout changed: tell the maintainers")


def extract(archive: Path, into: Path, prefixes: list[str] | None = None) -> None:
    """Unpack ``archive`` (zip or tar) into ``into``; with ``prefixes``, only the members under those
    folders (Flickr2K.tar also holds LR sets that are not wanted), each of which must be there."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            _check_layout(archive, z.namelist(), prefixes)
            names = [n for n in z.namelist() if _under(n, prefixes)]
            for name in names:
                if Path(name).is_absolute() or ".." in Path(name).parts:
                    raise DownloadError(f"{archive}: unsafe path {name!r} in archive")
            z.extractall(into, members=names)
    else:
        with tarfile.open(archive) as t:
            _check_layout(archive, t.getnames(), prefixes)
            members = [m for m in t.getmembers() if _under(m.name, prefixes)]
            if hasattr(tarfile, "data_filter"):
                t.extractall(into, members=members, filter="data")  # refuses absolute paths, links out of the tree
            else:  # Python < 3.10.12 / 3.11.4
                for m in members:
                    if Path(m.name).is_absolute() or ".." in Path(m.name).parts or m.issym() or m.islnk():
                        raise DownloadError(f"{archive}: unsafe member {m.name!r} in archive")
                t.extractall(into, members=members)


def install_sets(extracted: Path, spec: Archive, dest: Path, targets: list[str]) -> None:
    """Move each target's folder out of the extracted archive into ``dest`` (a rename: a target folder
    exists only once complete)."""
    for target in targets:
        (dest / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(extracted / spec.sets[target]), dest / target)


def verify_pixels(dest: Path, sets: list[str]) -> list[str]:
    """Files of ``sets`` whose pixels differ from the reference copies (missing ones included)."""
    reference = json.loads(REFERENCE_PIXELS.read_text())
    bad = []
    for rel, digest in sorted(reference.items()):
        if rel.split("/")[0] not in sets:
            continue
        path = dest / rel
        if not path.is_file() or pixel_hash(path) != digest:
            bad.append(rel)
    return bad


def _scale_of(target: str) -> int | None:
    m = re.search(r"/LR_bicubic/X(\d+)$", target)
    return int(m.group(1)) if m else None


def plan(sets: list[str], scales: Sequence[int]) -> dict[str, dict[str, list[str]]]:
    """``{set name: {archive name: [targets to install from it]}}`` for ``sets`` (aliases expanded,
    Manga109 and other manual sets left out) at ``scales``."""
    if not scales or any(s not in SCALES for s in scales):
        raise DownloadError(f"--scales must be among {' '.join(map(str, SCALES))}, got {' '.join(map(str, scales))}")
    names = list(dict.fromkeys(n for s in sets for n in ALIASES.get(s, [s])))
    bench = ARCHIVES["edsr_benchmark"].sets
    todo: dict[str, dict[str, list[str]]] = {}
    for name in names:
        if name in MANUAL:
            continue
        if name in bench:
            todo[name] = {"edsr_benchmark": [name]}
        elif name in DATASETS:
            archives = dict.fromkeys(p.format(s=s) for p in DATASETS[name] for s in scales)
            todo[name] = {a: [t for t in ARCHIVES[a].sets if _scale_of(t) in (None, *scales)] for a in archives}
        else:
            known = [*bench, *DATASETS, *ALIASES, *MANUAL]
            raise DownloadError(f"--sets: unknown set {name!r}; known: {' '.join(known)}")
    return todo


def install_archive(name: str, targets: list[str], dest: Path, local: Path | None = None) -> None:
    """Fetch archive ``name`` (or take ``local``), check its hash, install ``targets`` from it."""
    spec = ARCHIVES[name]
    if local is None:
        check_network(spec.url)
        local = fetch(spec.url, dest / ".downloads" / spec.filename, spec.sha256)  # pooch checked a pinned hash
        digest = None if spec.sha256 else file_sha256(local)
    else:
        if not local.is_file():
            raise DownloadError(f"--archive: {local} does not exist")
        digest = file_sha256(local)
        if spec.sha256 and digest != spec.sha256:
            raise DownloadError(f"{local}: SHA-256 {digest} differs from the pinned {spec.sha256}; delete it and retry")
    if digest and not spec.sha256:
        print(f"{local.name}: SHA-256 {digest} (not pinned in sr_experiments/tools/download.py; recorded in "
              f"{dest}/SHA256SUMS: compare it with another copy)")
        with open(dest / "SHA256SUMS", "a") as f:
            f.write(f"{digest}  {local.name}\n")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        extract(local, Path(tmp), [spec.sets[t] for t in targets])
        install_sets(Path(tmp), spec, dest, targets)


def download(dest: Path, sets: list[str], archive: Path | None = None, scales: Sequence[int] = SCALES,
             archives: dict[str, Path] | None = None) -> list[str]:
    """Install ``sets`` into ``dest``; returns the names installed (already installed ones included).

    ``archive`` is a local copy of the benchmark archive; ``archives`` local copies by archive name.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in dict.fromkeys(n for s in sets for n in ALIASES.get(s, [s])):
        if name in MANUAL:
            print(f"{name}: {MANUAL[name]}")
    todo = plan(sets, scales)
    local = {**(archives or {}), **({"edsr_benchmark": archive} if archive is not None else {})}
    pending: dict[str, list[str]] = {}
    for per_archive in todo.values():
        for a, targets in per_archive.items():
            missing = [t for t in targets if not (dest / t).is_dir()]
            pending[a] = list(dict.fromkeys(pending.get(a, []) + missing))
    pending = {a: t for a, t in pending.items() if t}
    fetched = [ARCHIVES[a] for a in pending if a not in local]
    if fetched:
        known = sum(spec.size or 0 for spec in fetched)
        unknown = sum(spec.size is None for spec in fetched)
        print(f"downloading {len(fetched)} archive(s): {known / 1e9:.1f} GB" + (f" + {unknown} of unknown size" if unknown else ""))
    for a, targets in pending.items():
        install_archive(a, targets, dest, local.get(a))
    installed = [n for n, per in todo.items() if all((dest / t).is_dir() for ts in per.values() for t in ts)]
    bad = verify_pixels(dest, [s for s in installed if s in ("Set5", "Set14")])
    if bad:
        print(f"warning: {len(bad)} files differ from the reference Set5/Set14 pixels (first: {bad[0]}); "
              "published numbers assume the reference images", file=sys.stderr)
    for name in installed:
        print(f"{name}: installed in {dest / name}" if name in ARCHIVES["edsr_benchmark"].sets
              else f"{name}: installed in {dest}")
    return installed


def local_archives(files: list[Path]) -> tuple[Path | None, dict[str, Path]]:
    """--archive FILE...: each matched to an archive by its file name; any other is the benchmark archive."""
    by_name = {spec.filename: name for name, spec in ARCHIVES.items()}
    matched, benchmark = {}, None
    for f in files:
        if f.name in by_name:
            matched[by_name[f.name]] = f
        else:
            benchmark = f
    return benchmark, matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download the standard SR data sets (benchmarks, DIV2K, Flickr2K).")
    parser.add_argument("--dest", default="data", help="paths.data_dir (default: data/)")
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100", "Urban100", "Manga109"],
                        help="benchmark sets, DIV2K, DIV2K_valid, Flickr2K, DF2K (= DIV2K Flickr2K)")
    parser.add_argument("--scales", nargs="+", type=int, default=list(SCALES), help="LR scales of DIV2K/Flickr2K")
    parser.add_argument("--archive", type=Path, nargs="+", default=[], help="already downloaded archives")
    args = parser.parse_args(argv)
    try:
        benchmark, matched = local_archives(args.archive)
        download(Path(args.dest), args.sets, benchmark, args.scales, matched)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
