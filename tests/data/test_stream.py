"""data=stream: training from a prepared folder with litdata; every sub-image once per epoch in any
worker or DDP layout, the same patches in each, bit-exact resume, bad folders refused in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import ROOT, compose_train
from stream_data import kill_9_resume_matches_uninterrupted, make_images, prepare

from sr_experiments.data.prepared import PreparedDataError
from sr_experiments.data.stream import StreamDataModule, StreamLoader, SubImageStream
from sr_experiments.runs.run import train

SUBIMAGES = 4 * 20  # 4 images of 100x132: 4 rows x 5 columns of 48-pixel crops every 24 pixels
# LR patches of 8 px at x2, 4 per step: 20 steps per epoch.
STREAM = ["data=stream", "data.val_dir=sample:val", "scale=2", "data.patch_size=8", "data.batch_size=4",
          "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
          "callbacks.image_panel.num_images=1"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    return prepare(make_images(root / "hr", n=4), root / "prepared")


class Numbered(SubImageStream):
    """The patches and the sub-image number each came from."""

    def __getitem__(self, index):
        return {**super().__getitem__(index), "index": int(index.index)}


def one_epoch(folder: Path, num_workers: int, batch_size: int = 4, seed: int = 7) -> dict[int, torch.Tensor]:
    """sub-image number -> the LR patch streamed from it in the first epoch (this process's share)."""
    loader = StreamLoader(Numbered(str(folder), 2, 8, seed=seed), lambda: 0, batch_size=batch_size,
                          num_workers=num_workers, drop_last=True)
    seen: dict[int, torch.Tensor] = {}
    for batch in loader:
        for i, lq in zip(batch["index"].tolist(), batch["lq"]):
            assert i not in seen, f"sub-image {i} twice in one epoch"
            seen[i] = lq
    assert len(seen) == len(loader) * batch_size
    return seen


def test_a_run_trains_from_a_prepared_folder(tmp_path: Path, prepared: Path) -> None:
    summary = train(compose_train([*STREAM, f"data.train_dir={prepared}", "trainer.max_steps=4"], tmp_path))
    assert summary["steps"] == 4 and summary["val_images"] == 2


def test_each_subimage_once_per_epoch_with_the_same_patch_in_any_worker_layout(prepared: Path) -> None:
    in_main = one_epoch(prepared, num_workers=0)
    assert sorted(in_main) == list(range(SUBIMAGES))
    in_workers = one_epoch(prepared, num_workers=2)  # 40 sub-images per worker: 10 whole batches
    assert in_workers.keys() == in_main.keys()
    assert all(torch.equal(in_workers[i], in_main[i]) for i in in_main)  # patch = f(seed, epoch, sub-image)
    assert not all(torch.equal(a, b) for a, b in zip(in_main.values(), one_epoch(prepared, 0, seed=8).values()))


def _rank_epoch(rank: int, folder: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.save(sorted(one_epoch(Path(folder), num_workers=0)), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ddp_processes_see_disjoint_shards_covering_every_subimage(tmp_path: Path, prepared: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank_epoch, args=(str(prepared), port, str(tmp_path)), nprocs=2)
    shards = [set(torch.load(tmp_path / f"rank{r}.pt")) for r in range(2)]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(range(SUBIMAGES))  # 80 = 2 ranks x 40: none dropped


def _setup(folder: Path | str, scale: int = 2) -> StreamDataModule:
    data = StreamDataModule(str(folder), "sample:val", scale=scale, patch_size=8, batch_size=4, num_workers=0)
    data.setup("fit")
    return data


def test_bad_training_folders_are_refused_in_one_line_naming_them(tmp_path: Path, prepared: Path) -> None:
    def refused(folder: Path | str, named: Path | str, scale: int = 2) -> str:
        with pytest.raises(PreparedDataError) as e:
            _setup(folder, scale)
        message = str(e.value)
        assert "\n" not in message and str(named) in message, message
        return message

    plain = make_images(tmp_path / "plain", n=1)
    assert "not a prepared dataset" in refused(plain, plain)
    assert "x[2, 4], not x3" in refused(prepared, prepared, scale=3)

    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    chunk = sorted(copy.glob("chunk-*.bin"))[0]
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])  # a copy cut short
    assert "corrupt or partial" in refused(copy, chunk)
    chunk.write_bytes(bytes(len(data)))  # same size, contents lost
    assert "cannot be" in refused(copy, copy)


@pytest.mark.slow
def test_ddp_training_run_from_a_prepared_folder(tmp_path: Path, prepared: Path) -> None:
    args = ["trainer=ddp_cpu", *STREAM, f"data.train_dir={prepared}", "trainer.max_steps=3",
            f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"world_size": 2' in (tmp_path / "run" / "metrics.json").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path: Path, prepared: Path, workers: int) -> None:
    # 20 steps per epoch, a validation (and last.ckpt) every 6: resumes mid-epoch, then crosses an epoch.
    args = [*STREAM, f"data.train_dir={prepared}", f"data.num_workers={workers}", "trainer.val_check_interval=6",
            "trainer.log_every_n_steps=2"]
    kill_9_resume_matches_uninterrupted(args, tmp_path, max_steps=30)


class Niceness(SubImageStream):
    def __getitem__(self, index):
        return {**super().__getitem__(index), "nice": os.nice(0)}


def test_loader_workers_yield_the_cpu_to_the_model_when_training_on_the_cpu(prepared: Path) -> None:
    main = os.nice(0)
    data = StreamDataModule(str(prepared), val_dir="sample:val", scale=2, patch_size=8, batch_size=4, num_workers=1)
    data.setup("fit")
    assert data.train_dataloader().worker_nice == 19  # no trainer: the CPU
    data.num_workers = 0
    assert data.train_dataloader().worker_nice == 0  # no worker: nothing to lower
    dataset = Niceness(str(prepared), 2, 8, seed=1)
    batch = next(iter(StreamLoader(dataset, lambda: 0, batch_size=4, num_workers=1, drop_last=True)))
    assert batch["nice"].tolist() == [min(19, main + 19)] * 4 and os.nice(0) == main
