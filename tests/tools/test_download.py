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


# DIV2K, Flickr2K, DF2K: tiny archives laid out like the real ones, served from 127.0.0.1.


def _png(seed: int, size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def www(tmp_path: Path):
    """A folder served over HTTP on 127.0.0.1: (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _div2k_zips(root: Path) -> dict[str, Path]:
    """DIV2K_train_HR.zip (DIV2K_train_HR/0001.png ...) and DIV2K_train_LR_bicubic_X2.zip
    (DIV2K_train_LR_bicubic/X2/0001x2.png ...), as the release lays them out."""
    hr, lr = root / "DIV2K_train_HR.zip", root / "DIV2K_train_LR_bicubic_X2.zip"
    with zipfile.ZipFile(hr, "w") as z:
        for i in (1, 2):
            z.writestr(f"DIV2K_train_HR/{i:04d}.png", _png(i, 16))
    with zipfile.ZipFile(lr, "w") as z:
        for i in (1, 2):
            z.writestr(f"DIV2K_train_LR_bicubic/X2/{i:04d}x2.png", _png(10 + i, 8))
    return {"DIV2K_train_HR": hr, "DIV2K_train_LR_bicubic_X2": lr}


def _serve(monkeypatch, base: str, files: dict[str, Path], sha256: dict[str, str | None]) -> None:
    for name, path in files.items():
        spec = dataclasses.replace(dl.ARCHIVES[name], url=f"{base}/{path.name}", sha256=sha256[name])
        monkeypatch.setitem(dl.ARCHIVES, name, spec)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_div2k_archives_are_pinned_to_the_published_hashes() -> None:
    for name in dl.DIV2K_PINS:  # TensorFlow Datasets' checksums for the same URLs
        spec = dl.ARCHIVES[name]
        assert spec.url == f"https://data.vision.ee.ethz.ch/cvl/DIV2K/{name}.zip" and len(spec.sha256) == 64
    assert dl.ARCHIVES["Flickr2K"].sha256 is None  # none published: recorded on first download


def test_div2k_installs_the_layout_data_div2k_reads(tmp_path: Path, www, monkeypatch, capsys) -> None:
    from conftest import compose_train

    from sr_experiments.data.sources import resolve_sources

    root, base = www
    files = _div2k_zips(root)
    _serve(monkeypatch, base, files, {n: _sha(p) for n, p in files.items()})
    dest = tmp_path / "data"
    assert dl.download(dest, ["DIV2K"], scales=[2]) == ["DIV2K"]
    assert "downloading 2 archive(s)" in capsys.readouterr().out and not (dest / "SHA256SUMS").exists()
    cfg = compose_train(["data=div2k", f"paths.data_dir={dest}", "scale=2"], tmp_path / "run")
    sources = resolve_sources(cfg.data.train_dir, 2, "folder")
    assert [(s.gt.name, s.lq.name) for s in sources] == [("0001.png", "0001x2.png"), ("0002.png", "0002x2.png")]
    # Installed folders are left alone: no second download.
    monkeypatch.setattr(dl, "fetch", lambda *a, **k: pytest.fail("fetched again"))
    assert dl.download(dest, ["DIV2K"], scales=[2]) == ["DIV2K"]


def test_div2k_with_a_wrong_hash_is_refused_in_one_line(tmp_path: Path, www, monkeypatch) -> None:
    root, base = www
    files = _div2k_zips(root)
    _serve(monkeypatch, base, files, {"DIV2K_train_HR": "1" * 64, "DIV2K_train_LR_bicubic_X2": _sha(files["DIV2K_train_LR_bicubic_X2"])})
    dest = tmp_path / "data"
    with pytest.raises(dl.DownloadError, match=r"DIV2K_train_HR.zip: SHA-256 \w+ differs from the pinned 1{64}") as e:
        dl.download(dest, ["DIV2K"], scales=[2])
    assert "\n" not in str(e.value) and not (dest / "DIV2K" / "HR").exists()
    assert not (dest / ".downloads" / "DIV2K_train_HR.zip").exists()
    assert dl.main(["--dest", str(dest), "--sets", "DIV2K", "--scales", "2"]) == 2


def test_flickr2k_unpinned_records_its_hash_and_installs_only_the_wanted_scales(tmp_path: Path, www, monkeypatch, capsys) -> None:
    root, base = www
    tar = root / "Flickr2K.tar"
    with tarfile.open(tar, "w") as t:
        for name, data in [("Flickr2K/Flickr2K_HR/000001.png", _png(1, 16)),
                           ("Flickr2K/Flickr2K_LR_bicubic/X2/000001x2.png", _png(2, 8)),
                           ("Flickr2K/Flickr2K_LR_bicubic/X4/000001x4.png", _png(3, 4)),
                           ("Flickr2K/Flickr2K_LR_unknown/X2/000001x2.png", _png(4, 8))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    _serve(monkeypatch, base, {"Flickr2K": tar}, {"Flickr2K": None})
    dest = tmp_path / "data"
    assert dl.download(dest, ["Flickr2K"], scales=[2]) == ["Flickr2K"]
    assert (dest / "Flickr2K" / "HR" / "000001.png").is_file()
    assert sorted(p.name for p in (dest / "Flickr2K" / "LR_bicubic").iterdir()) == ["X2"]
    assert (dest / "SHA256SUMS").read_text() == f"{_sha(tar)}  Flickr2K.tar\n"
    assert "unknown size" in capsys.readouterr().out
    assert [p.name for p in dest.iterdir() if p.name.startswith("tmp")] == []


def test_df2k_plans_div2k_and_flickr2k_at_the_given_scales() -> None:
    todo = dl.plan(["DF2K", "B100"], [4])
    assert list(todo) == ["DIV2K", "Flickr2K", "BSD100"]
    assert todo["DIV2K"] == {"DIV2K_train_HR": ["DIV2K/HR"], "DIV2K_train_LR_bicubic_X4": ["DIV2K/LR_bicubic/X4"]}
    assert todo["Flickr2K"] == {"Flickr2K": ["Flickr2K/HR", "Flickr2K/LR_bicubic/X4"]}


@pytest.mark.parametrize("sets, scales, match", [(["DIV3K"], [2], "unknown set 'DIV3K'"), (["DIV2K"], [8], "--scales")])
def test_unknown_sets_and_scales_are_refused(sets, scales, match) -> None:
    with pytest.raises(dl.DownloadError, match=match):
        dl.plan(sets, scales)


def test_local_archives_are_matched_by_name_and_a_changed_layout_is_refused(tmp_path: Path, monkeypatch) -> None:
    bench, matched = dl.local_archives([tmp_path / "DIV2K_valid_HR.zip", tmp_path / "my_benchmark.tar"])
    assert bench == tmp_path / "my_benchmark.tar" and matched == {"DIV2K_valid_HR": tmp_path / "DIV2K_valid_HR.zip"}
    wrong = tmp_path / "DIV2K_valid_HR.zip"
    with zipfile.ZipFile(wrong, "w") as z:
        z.writestr("valid/0801.png", _png(0, 8))
    monkeypatch.setitem(dl.ARCHIVES, "DIV2K_valid_HR", dataclasses.replace(dl.ARCHIVES["DIV2K_valid_HR"], sha256=None))
    with pytest.raises(dl.DownloadError, match=r"DIV2K_valid_HR.zip: no folder DIV2K_valid_HR in it .*holds: valid"):
        dl.download(tmp_path / "data", ["DIV2K_valid"], scales=[4], archives={"DIV2K_valid_HR": wrong})
    assert not (tmp_path / "data" / "DIV2K_valid").exists()
