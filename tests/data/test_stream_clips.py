"""prepare.py kind=clips and data=stream_clips: clip windows (and sub-clips) stored losslessly that
round-trip to the source frames and their BI LR, a training run from them, disjoint shards per rank,
bit-exact resume after SIGKILL, bad inputs refused in one line naming the path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_data import FRAMES, make_reds, make_vimeo
from conftest import compose_train
from PIL import Image
from stream_data import (
    kill_9_resume_matches_uninterrupted,
    make_images,
    prepare,
    prepare_config,
    stored_items,
)

from sr_experiments.data.clips import ClipError, degrade, degrade_bi
from sr_experiments.data.clips_datamodule import sample_clip_patch
from sr_experiments.data.clips_stream import ClipStreamDataModule, ClipWindowStream
from sr_experiments.data.prepare import run_prepare
from sr_experiments.data.prepared import MANIFEST, PreparedDataError, decode_frames
from sr_experiments.data.sampler import derived_seed
from sr_experiments.data.stream import StreamLoader
from sr_experiments.imaging.io import load_rgb
from sr_experiments.runs.run import train


def prepare_clips(source: str | Path, output: Path, extra: list[str] = ()) -> Path:
    overrides = ["kind=clips", f"input={source}", f"output={output}", "scale=4", "num_workers=1", "part_size=2"]
    return run_prepare(prepare_config([*overrides, *extra]))


def clip_frames(folder: Path) -> torch.Tensor:
    """uint8 (T, 3, H, W) of a clip folder, as the in-memory backend decodes it."""
    return torch.stack([torch.from_numpy(load_rgb(f)[0].transpose(2, 0, 1).copy()) for f in sorted(folder.iterdir())])


def frames_of(item: dict, key: str) -> torch.Tensor:
    return torch.from_numpy(decode_frames(item[key], item["frames"], "test")).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def reds(tmp_path_factory) -> Path:
    return make_reds(tmp_path_factory.mktemp("reds") / "REDS")


@pytest.fixture(scope="module")
def prepared(reds: Path, tmp_path_factory) -> Path:
    """Windows of 5 frames (2 per clip), whole frames: 12 items."""
    return prepare_clips(reds, tmp_path_factory.mktemp("clips") / "prepared", ["layout=reds", "clip_frames=5"])


def test_reds_windows_and_subclips_round_trip_to_the_frames_and_their_bi_lr(tmp_path: Path, reds: Path) -> None:
    # Windows of 4 frames every 3 (0, 3, 6), sub-clips of 16 px every 8: 3 x 3 x 5 = 45 items per clip.
    out = prepare_clips(reds, tmp_path / "p", ["layout=reds", "clip_frames=4", "clip_step=3", "crop_size=16", "step=8"])
    items = {it["name"]: it for it in stored_items(out)}
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["counts"] == {"clips": 6, "items": 6 * 45, "frames": 6 * FRAMES, "chunks": manifest["counts"]["chunks"]}
    assert manifest["layout"] == "reds" and manifest["scales"] == [4] and len(manifest["config_sha256"]) == 64
    assert (manifest["min_frames"], manifest["min_lr_side"]) == (4, 4)
    assert len(items) == 6 * 45 and not any(n.startswith("000_") for n in items)  # REDS4 held out
    for clip in ("001", "006"):
        gt = clip_frames(reds / "train_sharp" / clip)
        lq = degrade_bi(gt, 4)  # BI of the whole frames, as the in-memory backend makes it
        boxes = [(y, x) for y in (0, 8, 16) for x in (0, 8, 16, 24, 32)]
        for start in (0, 3, 6):
            for n, (y, x) in enumerate(boxes, start=1):
                item = items[f"{clip}_t{start:04d}_s{n:03d}"]
                assert torch.equal(frames_of(item, "gt"), gt[start:start + 4, :, y:y + 16, x:x + 16])
                assert torch.equal(frames_of(item, "lq_x4"), lq[start:start + 4, :, y // 4:y // 4 + 4, x // 4:x // 4 + 4])


def test_vimeo_septuplets_with_their_lr_files_or_bd_made_here(tmp_path: Path) -> None:
    root = make_vimeo(tmp_path / "vimeo90k")
    bd = {}
    for name in ("00001/0001", "00001/0002"):  # LR files as mmagic's BIx4/ (here: BD pixels, to tell them apart)
        gt = clip_frames(root / "sequences" / name)
        bd[name] = degrade(gt, 4, "BD")
        (root / "BIx4" / name).mkdir(parents=True)
        for t in range(7):
            Image.fromarray(bd[name][t].permute(1, 2, 0).numpy()).save(root / "BIx4" / name / f"im{t + 1}.png")
    items = {it["name"]: it for it in stored_items(prepare_clips(root, tmp_path / "p", ["layout=vimeo90k"]))}
    assert sorted(items) == ["00001/0001_t0000_s001", "00001/0002_t0000_s001"]  # 7 frames < clip_frames: whole
    for name in bd:
        assert items[f"{name}_t0000_s001"]["frames"] == 7
        assert torch.equal(frames_of(items[f"{name}_t0000_s001"], "gt"), clip_frames(root / "sequences" / name))
        assert torch.equal(frames_of(items[f"{name}_t0000_s001"], "lq_x4"), bd[name])
    made = {it["name"]: it for it in stored_items(prepare_clips(root, tmp_path / "bd", ["layout=vimeo90k",
                                                                                      "lr_source=generate",
                                                                                      "clip_degradation=BD"]))}
    assert torch.equal(frames_of(made["00001/0001_t0000_s001"], "lq_x4"), bd["00001/0001"])


class Numbered(ClipWindowStream):
    """The patches and the item number each came from."""

    def __getitem__(self, index):
        return {**super().__getitem__(index), "index": int(index.index)}


def test_each_item_once_per_epoch_the_same_patch_in_any_worker_layout(prepared: Path) -> None:
    def epoch(workers: int, seed: int = 3) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        loader = StreamLoader(Numbered(str(prepared), 4, 3, 4, seed=seed), lambda: 0, batch_size=2,
                              num_workers=workers, drop_last=True)
        seen = {}
        for batch in loader:
            for i, lq, gt in zip(batch["index"].tolist(), batch["lq"], batch["gt"]):
                assert i not in seen
                seen[i] = (lq, gt)
        return seen

    main = epoch(0)
    assert sorted(main) == list(range(12))
    # The in-memory backend's sampler (T frames, one crop, flips, reversal) on the stored window, seeded
    # by (seed, epoch 1, item): tested for one crop and flip on every frame with the in-memory data.
    stored = ClipWindowStream(str(prepared), 4, 3, 4, seed=3)
    for i in (0, 7):
        lq, gt = stored.decode(stored.stored(i))
        expected = sample_clip_patch(lq, gt, 3, 4, 4, (True, True), derived_seed(3, 2, 1, i))
        assert torch.equal(main[i][0], expected["lq"]) and torch.equal(main[i][1], expected["gt"])
    workers = epoch(2)
    assert workers.keys() == main.keys()
    assert all(torch.equal(workers[i][0], main[i][0]) and torch.equal(workers[i][1], main[i][1]) for i in main)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(main.values(), epoch(0, seed=4).values()))


def test_two_ranks_read_disjoint_items_covering_the_set(prepared: Path, monkeypatch) -> None:
    """litdata's shard assignment, each rank's dataset built as under DDP (WORLD_SIZE/GLOBAL_RANK)."""
    shards = []
    for rank in range(2):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        ds = Numbered(str(prepared), 4, 3, 4, seed=5)
        assert ds.distributed_env.world_size == 2 and ds.distributed_env.global_rank == rank
        shards.append([item["index"] for item in ds])
    assert len(shards[0]) == len(shards[1]) == 6 and not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == set(range(12))


def test_a_run_trains_basicvsr_from_prepared_clips(tmp_path: Path, prepared: Path, reds: Path) -> None:
    cfg = compose_train(["experiment=video_cpu", "data=stream_clips", f"data.train_dir={prepared}",
                         f"data.val.root={reds}", "data.num_frame=3", "data.patch_size=8", "data.batch_size=2",
                         "data.val_max_frames=2", "model.num_feat=8", "model.num_block=1", "trainer.max_steps=2",
                         "module.spynet_pretrain_steps=0", "trainer.precision=32", "model.channels_last=false", "logger=none",
                         "trainer.enable_progress_bar=false"], tmp_path)
    summary = train(cfg)
    assert summary["steps"] == 2 and summary["val_images"] == 1 and summary["final"]["psnr"] > 10


def test_bad_inputs_and_folders_are_refused_in_one_line_naming_the_path(tmp_path: Path, reds: Path,
                                                                      prepared: Path) -> None:
    def refused(error: type, path: Path | str, run) -> str:
        with pytest.raises(error) as e:
            run()
        message = str(e.value)
        assert "\n" not in message and str(path) in message, message
        return message

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "does not exist" in refused(FileNotFoundError, empty, lambda: prepare_clips(empty, tmp_path / "o", ["layout=reds"]))
    gap = make_reds(tmp_path / "gap", ("001",))
    (gap / "train_sharp" / "001" / "00000004.png").unlink()
    assert "missing" in refused(ClipError, gap / "train_sharp" / "001",
                                lambda: prepare_clips(gap, tmp_path / "o", ["layout=reds"]))
    lr = gap / "train_sharp_bicubic" / "X4" / "001"  # an x2 LR where REDS keeps its x4
    lr.mkdir(parents=True)
    (gap / "train_sharp" / "001" / "00000004.png").write_bytes((reds / "train_sharp" / "001" / "00000004.png").read_bytes())
    for t in range(FRAMES):
        Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(lr / f"{t:08d}.png")
    assert "another scale" in refused(ValueError, lr / "00000000.png",
                                      lambda: prepare_clips(gap, tmp_path / "o", ["layout=reds"]))
    assert not (tmp_path / "o").exists()  # refused before anything was written
    assert "holds another dataset" in refused(ValueError, prepared, lambda: prepare_clips(
        reds, prepared, ["layout=reds", "clip_frames=6"]))

    def setup(folder: Path, **kw) -> None:
        ClipStreamDataModule(str(folder), {"layout": "reds", "root": str(reds), "split": "reds4"}, scale=4,
                             num_frame=kw.get("num_frame", 3), patch_size=4, batch_size=2, num_workers=0).setup("fit")

    assert "must not exceed" in refused(PreparedDataError, prepared, lambda: setup(prepared, num_frame=6))
    images = prepare(make_images(tmp_path / "hr", n=1), tmp_path / "sub")
    assert "data=stream" in refused(PreparedDataError, images, lambda: setup(images))
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    chunk = sorted(copy.glob("chunk-*.bin"))[0]
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])  # a copy cut short
    assert "corrupt or partial" in refused(PreparedDataError, chunk, lambda: setup(copy))
    chunk.write_bytes(bytes(len(data)))  # same size, contents lost
    assert "cannot be" in refused(PreparedDataError, copy, lambda: setup(copy))


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path: Path, prepared: Path, reds: Path) -> None:
    # 12 items, 2 per step: 6 steps per epoch; last.ckpt every 4: resumes mid-epoch, then crosses epochs.
    args = ["experiment=video_cpu", "data=stream_clips", f"data.train_dir={prepared}", f"data.val.root={reds}",
            "data.num_frame=3", "data.patch_size=8", "data.batch_size=2", "data.val_max_frames=2", "model.num_feat=8",
            "model.num_block=1", "module.fix_flow_steps=3", "trainer.precision=32", "model.channels_last=false",
            "trainer.val_check_interval=4", "trainer.log_every_n_steps=2", "trainer.enable_progress_bar=false",
            "data.num_workers=0", "module.spynet_pretrain_steps=0"]
    kill_9_resume_matches_uninterrupted(args, tmp_path, max_steps=14)
