"""The output policy of the image-writing commands (issue 24): upscale, zssr, degrade and export never
write over an input or a file they did not write (unless overwrite=true), never into an input folder or
another command's run folder, refuse with one line (exit 2) before computing, and a full disk leaves no
partial file (one line, exit 1). Every file under tmp_path is hashed before and after a refusal."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from sr_experiments import CONF_DIR
from sr_experiments.inference.upscale import cli as upscale_cli
from sr_experiments.inference.zssr import cli as zssr_cli

pytestmark = pytest.mark.usefixtures("one_thread")

ZSSR_FAST = ["zssr.precision=32", "zssr.channels_last=false", "zssr.crop_size=8", "zssr.max_steps=2",
             "zssr.ensemble=false", "progress=false"]


def hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (links followed), by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def image(path: Path, size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (10, 200, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _degrade(*overrides: str) -> int:
    from sr_experiments.data.degradations.files import main

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="degrade", overrides=list(overrides))
    return main(cfg)


def _upscale(*overrides: str) -> int:
    return upscale_cli(["model=bicubic", "progress=false", *overrides])


def _zssr(*overrides: str) -> int:
    return zssr_cli([*ZSSR_FAST, *overrides])


COMMANDS = {"upscale": _upscale, "zssr": _zssr, "degrade": lambda *o: _degrade("scale=2", *o)}


def _refused(capsys, *says: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for word in says:
        assert word in err, err
    return err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_output_is_never_the_input_folder_nor_through_a_link(tmp_path: Path, capsys, command: str) -> None:
    folder = tmp_path / "in"
    image(folder / "hr.png", (16, 16))
    (tmp_path / "link").symlink_to(folder)
    before = hashes(tmp_path)
    for out in (folder, tmp_path / "link"):
        assert COMMANDS[command](f"input={folder}", f"output={out}") == 2
        _refused(capsys, "input folder")
    assert hashes(tmp_path) == before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_output_name_that_exists_is_refused_before_computing(tmp_path: Path, capsys, command: str) -> None:
    photo = image(tmp_path / "dir" / "photo.jpg", (16, 16))
    unrelated = image(tmp_path / "dir" / "photo.png", (5, 5), (1, 2, 3))  # not an input: still never replaced
    before = hashes(tmp_path)
    assert COMMANDS[command](f"input={photo}", f"output={tmp_path / 'dir'}") == 2
    _refused(capsys, str(unrelated), "overwrite=true")
    assert hashes(tmp_path) == before


def test_degrade_two_inputs_with_one_output_name_are_refused(tmp_path: Path, capsys) -> None:
    image(tmp_path / "in" / "a.jpg", (16, 16))
    image(tmp_path / "in" / "a.png", (16, 16), (5, 6, 7))
    before = hashes(tmp_path)
    assert _degrade(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "scale=2") == 2
    _refused(capsys, "a.jpg", "a.png")
    assert hashes(tmp_path) == before and not any((tmp_path / "out").glob("*"))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_twice_into_one_folder_refuses_then_overwrite_replaces(tmp_path: Path, capsys, command: str) -> None:
    image(tmp_path / "in" / "a.png", (16, 16))
    out = tmp_path / "out"
    assert COMMANDS[command](f"input={tmp_path / 'in'}", f"output={out}") == 0
    capsys.readouterr()
    before = hashes(tmp_path)
    inodes = {p.name: p.stat().st_ino for p in out.iterdir()}
    assert COMMANDS[command](f"input={tmp_path / 'in'}", f"output={out}") == 2
    _refused(capsys, str(out / "a.png"), "already exists")
    assert hashes(tmp_path) == before
    assert COMMANDS[command](f"input={tmp_path / 'in'}", f"output={out}", "overwrite=true") == 0
    assert {p.name: p.stat().st_ino for p in out.iterdir()}.keys() == inodes.keys()
    assert (out / "a.png").stat().st_ino != inodes["a.png"]  # replaced (atomically: a new file renamed in)


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("marker", [".sr_run.json", ".hydra"])
def test_another_commands_run_folder_is_refused(tmp_path: Path, capsys, command: str, marker: str) -> None:
    image(tmp_path / "in" / "a.png", (16, 16))
    run = tmp_path / "run"
    run.mkdir()
    if marker == ".hydra":
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text("lr: 1\n")
    else:
        (run / ".sr_run.json").write_text(json.dumps({"slurm_job_id": None, "started_at": 1.0}))  # train.py's
    before = hashes(tmp_path)
    assert COMMANDS[command](f"input={tmp_path / 'in'}", f"output={run}", "overwrite=true") == 2
    _refused(capsys, str(run))
    assert hashes(tmp_path) == before


def test_upscale_with_the_disk_full_stops_with_one_line_and_no_partial_file(tmp_path: Path, capsys,
                                                                              monkeypatch) -> None:
    for name in ("a", "b"):
        image(tmp_path / "in" / f"{name}.png", (16, 16))
    out = tmp_path / "out"

    def full_disk(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG partial")  # what a full disk leaves: the start of the file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    assert _upscale(f"input={tmp_path / 'in'}", f"output={out}") == 1
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("upscale: bicubic")]
    assert len(err) == 1 and "no space left" in err[0] and str(out / "a.png") in err[0], err
    assert list(out.iterdir()) == []  # no 0-byte, partial or temporary file


def test_zssr_skips_a_decompression_bomb_with_one_line_and_goes_on(tmp_path: Path, capsys, monkeypatch) -> None:
    image(tmp_path / "in" / "bomb.png", (64, 64))
    image(tmp_path / "in" / "ok.png", (8, 8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's own guard: 64x64 is over twice this
    assert _zssr(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "max_pixels=1000") == 1
    err = capsys.readouterr().err
    skipped = [ln for ln in err.splitlines() if "skipped" in ln]
    assert len(skipped) == 1 and "bomb.png" in skipped[0] and "max_pixels" in skipped[0], err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ok.png"]


def test_zssr_on_a_1x1_image_is_one_line_naming_the_minimum(tmp_path: Path, capsys) -> None:
    image(tmp_path / "in" / "dot.png", (1, 1))
    assert _zssr(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}") == 1
    skipped = [ln for ln in capsys.readouterr().err.splitlines() if "skipped" in ln]
    assert len(skipped) == 1 and "dot.png" in skipped[0] and "2x2" in skipped[0], skipped


@pytest.mark.parametrize("scale", ["0", "-2", "1.5", "abc"])
def test_degrade_bad_scale_is_one_line(tmp_path: Path, capsys, scale: str) -> None:
    image(tmp_path / "in" / "a.png", (16, 16))
    assert _degrade(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"scale={scale}") == 2
    _refused(capsys, "scale=")


def test_degrade_small_images_are_degraded(tmp_path: Path, capsys) -> None:
    """The USM sharpening's 51-tap kernel cannot reflect on images under 26 px: they replicate their border."""
    for n in (6, 20, 25):
        image(tmp_path / "in" / f"s{n}.png", (n, n + 2))
    assert _degrade(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "scale=2", "degradation=realesrgan") == 0
    for n in (6, 20, 25):
        with Image.open(tmp_path / "out" / f"s{n}.png") as im:
            assert im.size == (n // 2, (n + 2) // 2)


# export.py -----------------------------------------------------------------------------------------------

@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    from sr_experiments.models import build_network

    spec = {"name": "edsr", "scale": 2, "depth": 1, "width": 8}
    path = tmp_path / "run" / "best.ckpt"
    path.parent.mkdir()
    torch.save({"state_dict": {f"net.{k}": v for k, v in build_network(spec).state_dict().items()},
                "hyper_parameters": {"network": spec}}, path)
    return path


def _export(*overrides: str) -> int:
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("export_script", ROOT / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="export", overrides=list(overrides))
    try:
        module.main.__wrapped__(cfg)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_export_never_over_its_checkpoint_or_a_file_it_did_not_write(tmp_path: Path, ckpt: Path, capsys) -> None:
    before = hashes(tmp_path)
    assert _export(f"ckpt_path={ckpt}", "format=pth", f"output={ckpt}", "overwrite=true") == 2
    _refused(capsys, str(ckpt), "input")
    (tmp_path / "mine.pth").write_bytes(b"someone's file")
    before = hashes(tmp_path)
    assert _export(f"ckpt_path={ckpt}", "format=pth", f"output={tmp_path / 'mine.pth'}") == 2
    _refused(capsys, "mine.pth", "overwrite=true")
    assert hashes(tmp_path) == before


def test_export_twice_refuses_then_overwrite_replaces(tmp_path: Path, ckpt: Path, capsys) -> None:
    out = ckpt.with_suffix(".pth")  # the default: beside the checkpoint
    assert _export(f"ckpt_path={ckpt}", "format=pth") == 0 and out.is_file()
    capsys.readouterr()
    before, inode = hashes(tmp_path), out.stat().st_ino
    assert _export(f"ckpt_path={ckpt}", "format=pth") == 2
    _refused(capsys, str(out), "already exists")
    assert hashes(tmp_path) == before
    assert _export(f"ckpt_path={ckpt}", "format=pth", "overwrite=true") == 0
    assert out.stat().st_ino != inode and sorted(p.name for p in out.parent.iterdir()) == ["best.ckpt", "best.pth"]


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder nothing can be written to: a read-only tmpfs as root (root ignores modes), else mode 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("root without permission to mount a read-only tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.parametrize("fmt", ["pth", "onnx"])
def test_export_into_a_read_only_folder_is_one_line(tmp_path: Path, ckpt: Path, capsys, read_only_dir: Path,
                                                    fmt: str) -> None:
    assert _export(f"ckpt_path={ckpt}", f"format={fmt}", f"output={read_only_dir / ('m.' + fmt)}") == 1  # cli.py: a write the folder refuses (read-only) failed while running: exit 1
    _refused(capsys, str(read_only_dir), "writable")


def test_zssr_logger_writes_under_the_output_folder_not_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    """A csv logger once wrote csv/<image>/metrics.csv into the working folder (the checkout's root)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    image(tmp_path / "in" / "a.png", (8, 8))
    assert _zssr(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "logger=csv") == 0
    assert list(cwd.iterdir()) == [] and (tmp_path / "out" / "csv" / "a" / "metrics.csv").is_file()


@pytest.mark.parametrize("command", ["upscale", "zssr"])
def test_console_scripts_take_overwrite_as_a_flag(tmp_path: Path, command: str) -> None:
    image(tmp_path / "in" / "a.png", (8, 8))
    out = tmp_path / "out"
    run = COMMANDS[command]
    assert run(f"input={tmp_path / 'in'}", f"output={out}") == 0
    inode = (out / "a.png").stat().st_ino
    assert run(f"input={tmp_path / 'in'}", f"output={out}") == 2
    assert run(f"input={tmp_path / 'in'}", f"output={out}", "--overwrite") == 0
    assert (out / "a.png").stat().st_ino != inode
