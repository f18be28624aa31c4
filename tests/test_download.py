"""make data: archive checks, extraction into the standard layout, pixel verification, no-network."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import shutil
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sr_experiments.tools.download as dl


def _benchmark_tar(tmp_path: Path, data_dir: Path, tamper: bool = False) -> Path:
    """A small archive laid out like EDSR's benchmark.tar, made from the local reference sets."""
    archive = tmp_path / "benchmark.tar"
    with tarfile.open(archive, "w") as t:
        t.add(data_dir / "Set5", arcname="benchmark/Set5")
        bird = data_dir / "Set5" / "HR" / "bird.png"
        with Image.open(bird) as im:
            img = im.copy()
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=9)  # re-encoded bytes, same pixels
        info = tarfile.TarInfo("benchmark/B100/HR/bird.png")
        info.size = len(buf.getvalue())
        t.addfile(info, io.BytesIO(buf.getvalue()))
        if tamper:
            img.putpixel((0, 0), (0, 0, 0))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            info = tarfile.TarInfo("benchmark/Set5/HR/bird.png")
            info.size = len(buf.getvalue())
            t.addfile(info, io.BytesIO(buf.getvalue()))
    return archive


def test_installs_standard_layout_and_verifies_pixels(tmp_path: Path, data_dir: Path, capsys) -> None:
    dest = tmp_path / "data"
    installed = dl.download(dest, ["Set5", "B100", "Manga109"], archive=_benchmark_tar(tmp_path, data_dir))
    assert installed == ["Set5", "BSD100"]
    assert sorted(p.name for p in (dest / "Set5" / "HR").iterdir()) == sorted(p.name for p in (data_dir / "Set5" / "HR").iterdir())
    assert (dest / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").is_file() and (dest / "BSD100" / "HR" / "bird.png").is_file()
    captured = capsys.readouterr()
    assert "Manga109: request it" in captured.out and "warning" not in captured.err
    assert (dest / "SHA256SUMS").read_text().endswith("  benchmark.tar\n")
    assert not dl.verify_pixels(dest, ["Set5"])


def test_changed_pixels_are_reported(tmp_path: Path, data_dir: Path, capsys) -> None:
    dl.download(tmp_path / "data", ["Set5"], archive=_benchmark_tar(tmp_path, data_dir, tamper=True))
    assert "Set5/HR/bird.png" in capsys.readouterr().err


def test_pinned_checksum_mismatch_stops_before_extracting(tmp_path: Path, data_dir: Path, monkeypatch) -> None:
    pinned = dataclasses.replace(dl.ARCHIVES["edsr_benchmark"], sha256="0" * 64)
    monkeypatch.setitem(dl.ARCHIVES, "edsr_benchmark", pinned)
    with pytest.raises(dl.DownloadError, match="differs from the pinned"):
        dl.download(tmp_path / "data", ["Set5"], archive=_benchmark_tar(tmp_path, data_dir))
    assert not (tmp_path / "data" / "Set5").exists()


def test_unsafe_archive_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(Exception):
        dl.extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_no_network_fails_at_once_with_what_to_do() -> None:
    with socket.socket() as s:  # a local port nobody listens on: refused immediately
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(dl.DownloadError, match="--archive"):
        dl.check_network(f"https://127.0.0.1:{port}/benchmark.tar")
    assert time.perf_counter() - start < 5


def test_cli_exit_code_on_error(tmp_path: Path, monkeypatch) -> None:
    def refuse(url: str, timeout: float = 5.0) -> None:
        raise dl.DownloadError("cannot reach host")

    monkeypatch.setattr(dl, "check_network", refuse)
    assert dl.main(["--dest", str(tmp_path), "--sets", "Set5"]) == 2
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def served_zip(tmp_path: Path):
    """A zip of a few PNGs laid out like a benchmark archive, served over HTTP on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(root / "bench.zip", "w") as z:
        for name in ("a", "b", "c"):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
            z.writestr(f"bench/Urban100/HR/{name}.png", buf.getvalue())
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sha = hashlib.sha256((root / "bench.zip").read_bytes()).hexdigest()
        yield f"http://127.0.0.1:{server.server_address[1]}/bench.zip", sha
    finally:
        server.shutdown()
        server.server_close()


def _serve_as_benchmark(monkeypatch, url: str, sha256: str | None) -> None:
    monkeypatch.setitem(dl.ARCHIVES, "edsr_benchmark", dl.Archive(url=url, sha256=sha256, sets={"Urban100": "bench/Urban100"}))


def test_download_with_the_pinned_hash_installs(tmp_path: Path, served_zip, monkeypatch) -> None:
    url, sha = served_zip
    _serve_as_benchmark(monkeypatch, url, sha)
    dest = tmp_path / "data"
    assert dl.download(dest, ["Urban100"]) == ["Urban100"]
    assert sorted(p.name for p in (dest / "Urban100" / "HR").iterdir()) == ["a.png", "b.png", "c.png"]
    assert (dest / ".downloads" / "bench.zip").is_file() and not (dest / "SHA256SUMS").exists()


def test_download_with_a_wrong_pinned_hash_is_refused_and_deleted(tmp_path: Path, served_zip, monkeypatch) -> None:
    url, _ = served_zip
    _serve_as_benchmark(monkeypatch, url, "0" * 64)
    dest = tmp_path / "data"
    with pytest.raises(dl.DownloadError, match=r"differs from the pinned 0{64}.*download was deleted") as e:
        dl.download(dest, ["Urban100"])
    assert "\n" not in str(e.value) and url in str(e.value)
    assert list((dest / ".downloads").iterdir()) == [] and not (dest / "Urban100").exists()


def test_unpinned_download_records_its_hash(tmp_path: Path, served_zip, monkeypatch, capsys) -> None:
    url, sha = served_zip
    _serve_as_benchmark(monkeypatch, url, None)
    dest = tmp_path / "data"
    assert dl.download(dest, ["Urban100"]) == ["Urban100"]
    assert (dest / "SHA256SUMS").read_text() == f"{sha}  bench.zip\n"
    assert f"SHA-256 {sha}" in capsys.readouterr().out
