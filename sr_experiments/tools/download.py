"""Fetch the standard SR benchmark sets into ``paths.data_dir`` in the standard layout.

    python -m sr_experiments.tools.download --dest DIR [--sets Set5 Set14 BSD100 Urban100] [--archive FILE]

Source: the benchmark archive published with EDSR (Set5, Set14, B100, Urban100, each with HR and
MATLAB-made ``LR_bicubic/X2..X4``), downloaded with pooch (progress bar, hash check). Checks, in order:

* the archive's SHA-256 against ``ARCHIVES[...].sha256`` when pinned: pooch deletes a download
  that differs and the script stops (an ``--archive FILE`` that differs is refused, not deleted).
  No hash is pinned yet (none was recorded from a machine with network access); until one is,
  the hash is printed and appended to ``<dest>/SHA256SUMS`` so later copies can be compared;
* every extracted image of Set5 and Set14 against pixel hashes of the reference copies
  (``reference_pixels.json``: SHA-256 of shape + decoded pixels, so a re-encoded PNG still
  matches while a different crop or version of an image does not); a difference is a warning
  naming the files. BSD100 and Urban100 have no reference hashes.

Manga109 is licensed per user and has no public mirror: the script says where to request it.
Without network the script stops at once, naming the host, and ``--archive FILE`` installs from
an archive fetched by other means.
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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from sr_experiments.provenance import file_sha256


@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str | None  # pin once verified by a maintainer with network access
    sets: dict[str, str] = field(default_factory=dict)  # our set name -> folder inside the archive


ARCHIVES = {
    "edsr_benchmark": Archive(
        url="https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
        sha256=None,
        sets={"Set5": "benchmark/Set5", "Set14": "benchmark/Set14", "BSD100": "benchmark/B100", "Urban100": "benchmark/Urban100"},
    ),
}
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


def extract(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if Path(name).is_absolute() or ".." in Path(name).parts:
                    raise DownloadError(f"{archive}: unsafe path {name!r} in archive")
            z.extractall(into)
    else:
        with tarfile.open(archive) as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(into, filter="data")  # refuses absolute paths, links out of the tree
            else:  # Python < 3.10.12 / 3.11.4
                for m in t.getmembers():
                    if Path(m.name).is_absolute() or ".." in Path(m.name).parts or m.issym() or m.islnk():
                        raise DownloadError(f"{archive}: unsafe member {m.name!r} in archive")
                t.extractall(into)


def install_sets(extracted: Path, spec: Archive, dest: Path, wanted: list[str]) -> list[str]:
    installed = []
    for name in wanted:
        inner = spec.sets.get(name)
        if inner is None or not (extracted / inner).is_dir():
            continue
        target = dest / name
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(extracted / inner), target)
        installed.append(name)
    return installed


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


def download(dest: Path, sets: list[str], archive: Path | None = None, source: str = "edsr_benchmark") -> list[str]:
    """Install ``sets`` into ``dest``; returns the names installed."""
    spec = ARCHIVES[source]
    dest.mkdir(parents=True, exist_ok=True)
    wanted = [("BSD100" if s == "B100" else s) for s in sets]
    for name in wanted:
        if name in MANUAL:
            print(f"{name}: {MANUAL[name]}")
    wanted = [s for s in wanted if s in spec.sets]
    if not wanted:
        return []
    if archive is None:
        check_network(spec.url)
        archive = fetch(spec.url, dest / ".downloads" / Path(urlparse(spec.url).path).name, spec.sha256)
    digest = file_sha256(archive)
    if spec.sha256 and digest != spec.sha256:
        raise DownloadError(f"{archive}: SHA-256 {digest} differs from the pinned {spec.sha256}; delete it and retry")
    if not spec.sha256:
        print(f"{archive.name}: SHA-256 {digest} (not pinned in sr_experiments/tools/download.py; recorded in {dest}/SHA256SUMS)")
        with open(dest / "SHA256SUMS", "a") as f:
            f.write(f"{digest}  {archive.name}\n")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        extract(archive, Path(tmp))
        installed = install_sets(Path(tmp), spec, dest, wanted)
    bad = verify_pixels(dest, [s for s in installed if s in ("Set5", "Set14")])
    if bad:
        print(f"warning: {len(bad)} files differ from the reference Set5/Set14 pixels (first: {bad[0]}); "
              "published numbers assume the reference images", file=sys.stderr)
    for name in installed:
        print(f"{name}: installed in {dest / name}")
    return installed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download the standard SR benchmark sets.")
    parser.add_argument("--dest", default="data", help="paths.data_dir (default: data/)")
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100", "Urban100", "Manga109"])
    parser.add_argument("--archive", type=Path, help="an already downloaded benchmark archive")
    args = parser.parse_args(argv)
    try:
        download(Path(args.dest), args.sets, args.archive)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
