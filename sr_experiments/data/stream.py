"""``data=stream``: training patches streamed from a prepared dataset (prepare.py) with litdata.

Memory per process does not grow with the data set: litdata reads chunks from the folder (or
downloads them from an object store into a bounded cache) and holds only the index, while the
in-memory backend (datamodule.py) decodes every image into each process. Training starts as soon
as litdata has read ``index.json``.

What litdata gives, not written here: chunked storage, object-store URIs (``s3://``, ``gs://``,
...), shuffling with chunk locality, disjoint shards per DDP rank and per loader worker (each
sub-image once per epoch), and the loader position for resuming mid-epoch.

What is ours: one patch per sub-image visit, drawn by ``sample_patch`` (the in-memory backend's
sampler) with a seed of ``(seed, epoch, sub-image index)``, so a patch does not depend on which
rank or worker reads it or on a resume; and the resume position taken from the trainer's step
count (``StreamLoader.state_dict``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sr_experiments.extras import require

require("litdata", "data=stream (streaming a prepared dataset)")
from litdata import StreamingDataLoader, StreamingDataset  # noqa: E402

from sr_experiments.data.datamodule import SRDataModule
from sr_experiments.data.datasets import sample_patch
from sr_experiments.data.pairs import ImagePair, to_chw
from sr_experiments.data.prepared import FORMAT, PreparedDataError, decode_image, read_manifest
from sr_experiments.data.sampler import derived_seed

log = logging.getLogger(__name__)
# Training on the CPU, the model's threads use every core: a loader worker at normal priority takes
# a core from one of them, and both wait at the next barrier (the step was 5% slower with one worker
# than in memory; at nice 19 the worker fills the gaps and the step is in-memory's: BENCHMARKS.md,
# Data at scale). On a GPU the workers keep their priority: the host's cores are theirs.
CPU_WORKER_NICE = 19


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("local:")


class SubImageStream(StreamingDataset):
    """Random aligned (LR, HR) patches, one per sub-image of a prepared dataset per epoch.

    Args:
        input_dir: prepared folder or object-store URI (``s3://bucket/div2k_sub``).
        scale: the LR of this scale is read (``lq_x<scale>``).
        patch_size: LR patch side; the HR patch is ``patch_size * scale``.
        augment: random flips and transpose (as the in-memory backend).
        seed: seed of the whole stream (order and patches).
        cache_dir, max_cache_size: where and how much of a remote dataset litdata keeps locally.
    """

    what = "sub-image"  # an item, in messages

    def __init__(self, input_dir: str, scale: int, patch_size: int, augment: bool = True, seed: int = 0,
                 cache_dir: str | None = None, max_cache_size: str | int = "50GB") -> None:
        # litdata shuffles with numpy's legacy RNG: a 32-bit seed derived from ours.
        super().__init__(input_dir, cache_dir=cache_dir, shuffle=True, seed=derived_seed(seed, 3) % 2**32,
                         max_cache_size=max_cache_size)
        self.scale, self.patch_size, self.augment, self.patch_seed = int(scale), int(patch_size), augment, int(seed)
        self.where = input_dir

    def lq_key(self, item: dict[str, Any]) -> str:
        """The key of the LR at this scale in a stored item, or one line if it has none."""
        key = f"lq_x{self.scale}"
        if key not in item:
            stored = sorted(int(k[4:]) for k in item if k.startswith("lq_x"))
            raise PreparedDataError(f"data.train_dir: '{self.where}' holds LR for x{stored}, not x{self.scale}: "
                                    "prepare it with this scale (prepare.py scale=[...])")
        return key

    def decode(self, item: dict[str, Any]) -> ImagePair:
        """The decoded (LR, HR) sub-image of a stored item."""
        name = item.get("name", "?")
        key = self.lq_key(item)
        where = f"{self.where}: sub-image {name}"
        return ImagePair(name, to_chw(decode_image(item[key], where)), to_chw(decode_image(item["gt"], where)), False)

    def stored(self, index: Any) -> dict[str, Any]:
        """Item ``index`` as stored (PNG bytes), or one line naming the folder if it cannot be read."""
        try:
            return super().__getitem__(index)
        except Exception as e:  # litdata reading a damaged chunk fails in many ways; say where
            number = int(index.index if hasattr(index, "index") else index)
            raise PreparedDataError(f"data.train_dir: '{self.where}': {self.what} {number} cannot be read "
                                    f"({type(e).__name__}: {e}); is a chunk corrupt? prepare the data again") from None

    def __getitem__(self, index: Any) -> dict:
        number = int(index.index if hasattr(index, "index") else index)
        pair = self.decode(self.stored(index))
        seed = derived_seed(self.patch_seed, 2, self.current_epoch, number)
        return sample_patch(pair, self.patch_size, self.scale, self.augment, seed)


class StreamLoader(StreamingDataLoader):
    """litdata's loader, with its resume position counted from the steps trained.

    litdata counts the batches it handed out, but Lightning fetches one batch ahead (to know the
    epoch's last), so a checkpoint would resume one batch late. The state saved here is that of the
    batches the trainer has consumed: ``consumed_batches()`` (per process), which makes a resumed
    run see exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, dataset: StreamingDataset, consumed_batches: Callable[[], int], trainer: Any = None,
                 **kwargs: Any) -> None:
        self.worker_nice = worker_nice(trainer, int(kwargs.get("num_workers", 0)))
        super().__init__(dataset, worker_init_fn=partial(_renice, self.worker_nice) if self.worker_nice else None,
                         **kwargs)
        self.consumed_batches = consumed_batches

    def _done_in_epoch(self) -> int:
        """Batches of litdata's current epoch (numbered from 1) that training has consumed."""
        epoch = max(1, self.current_epoch)
        return min(max(0, self.consumed_batches() - (epoch - 1) * len(self)), len(self))

    def __iter__(self) -> Any:
        # Lightning ends an epoch at its last batch without asking litdata's iterator for more, so a
        # resumed epoch never tells litdata it is over, and litdata would replay its end in the next.
        if self.restore and self._done_in_epoch() >= len(self):
            self.restore = False
        yield from super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        done = self._done_in_epoch()
        saved = self._num_samples_yielded_streaming, self._latest_worker_idx, self.current_epoch
        self._num_samples_yielded_streaming = done * self.batch_size
        self._latest_worker_idx = (done - 1) % max(1, self.num_workers) if done else 0
        self.current_epoch = max(1, self.current_epoch)
        try:
            return super().state_dict()
        finally:
            self._num_samples_yielded_streaming, self._latest_worker_idx, self.current_epoch = saved


def _renice(nice: int, worker_id: int) -> None:
    os.nice(nice)  # each loader worker once, as it starts (worker_init_fn)


def worker_nice(trainer: Any, num_workers: int) -> int:
    """The niceness of the loader workers: ``CPU_WORKER_NICE`` when training on the CPU (no trainer:
    the CPU as well), 0 on a GPU or without workers."""
    on_cpu = trainer is None or trainer.strategy.root_device.type == "cpu"
    return CPU_WORKER_NICE if on_cpu and num_workers else 0


def batches_consumed(trainer: Any) -> int:
    """Batches training has consumed (per process): ``StreamLoader``'s resume position."""
    return 0 if trainer is None else trainer.global_step * trainer.accumulate_grad_batches


def open_prepared(uri: str, scale: int, fmt: str = FORMAT) -> tuple[str, dict | None, int | None]:
    """A local prepared folder checked before training: its manifest (format ``fmt``, prepared for
    ``scale``) and its chunk files (``check_chunks``). Returns the folder, its manifest and item
    count; a remote URI as it is, with None (litdata reads it)."""
    if is_remote(uri):
        return uri, None, None
    folder = Path(uri).expanduser().resolve()
    manifest = read_manifest(folder, fmt=fmt)
    if scale not in manifest["scales"]:
        raise PreparedDataError(f"data.train_dir: '{folder}' was prepared for x{manifest['scales']}, not "
                                f"x{scale}: prepare it with scale=[...,{scale}] or change scale=")
    return str(folder), manifest, check_chunks(folder)


def check_chunks(folder: Path) -> int:
    """Refuse a prepared folder whose chunk files are missing or not the size its index says
    (a copy cut short); returns the number of items. Reads no chunk: stat only."""
    try:
        index = json.loads((folder / "index.json").read_text())
        chunks = index["chunks"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PreparedDataError(f"data.train_dir: '{folder / 'index.json'}' is missing or unreadable ({e}); "
                                "prepare the data again") from None
    for chunk in chunks:
        path = folder / chunk["filename"]
        size = path.stat().st_size if path.is_file() else None
        if size != chunk.get("chunk_bytes", size):
            raise PreparedDataError(f"data.train_dir: chunk '{path}' is {'missing' if size is None else f'{size} bytes'}"
                                    f", the index says {chunk['chunk_bytes']}: a corrupt or partial copy; copy or "
                                    "prepare it again")
    return sum(int(c["chunk_size"]) for c in chunks)


class StreamDataModule(SRDataModule):
    """Training patches streamed from a prepared dataset; validation images as ``SRDataModule``.

    An epoch is one pass over the sub-images (each once, split across DDP ranks and loader
    workers), one random patch from each; there is no ``patches_per_epoch``.

    Args:
        train_dir: a folder made by ``prepare.py``, or its copy in an object store (``s3://...``).
        val_dir, scale, patch_size, batch_size, num_workers, lr_source, augment, pin_memory, seed:
            as ``SRDataModule`` (``lr_source`` applies to the validation images only).
        cache_dir: where litdata keeps the chunks of a remote ``train_dir`` (default: its own cache).
        max_cache_size: the most disk that cache may take (``"50GB"``).
    """

    def __init__(self, train_dir: str, val_dir: str | list[str], scale: int = 2, patch_size: int = 48,
                 batch_size: int = 16, num_workers: int | str = "auto", lr_source: str = "auto", augment: bool = True,
                 pin_memory: bool | None = None, seed: int | None = None, cache_dir: str | None = None,
                 max_cache_size: str | int = "50GB", patches_per_epoch: int | None = None) -> None:
        if patches_per_epoch is not None:
            raise ValueError("data.patches_per_epoch: data=stream has none (an epoch is one pass over the prepared "
                             "sub-images); remove it, or use trainer.max_steps")
        if not isinstance(train_dir, str):
            raise ValueError(f"data.train_dir: data=stream reads one prepared folder, got {train_dir!r}; prepare "
                             "several image folders into one with prepare.py input=[dir1,dir2]")
        super().__init__(train_dir, val_dir, scale, patch_size, batch_size, batch_size, num_workers, lr_source,
                         augment, pin_memory, seed)
        self.cache_dir, self.max_cache_size = cache_dir, max_cache_size
        self.train_set: SubImageStream | None = None

    def _setup_train(self) -> None:
        uri, manifest, count = open_prepared(self.train_dirs[0], self.scale)
        if manifest is not None:
            lr_side = int(manifest["crop_size"]) // self.scale
            if self.patch_size > lr_side:
                raise PreparedDataError(f"data.patch_size={self.patch_size} is larger than the {lr_side}-pixel LR "
                                        f"sub-images of '{uri}' at x{self.scale}: lower it")
        self.train_set = SubImageStream(uri, self.scale, self.patch_size, self.augment, self.seed, self.cache_dir,
                                        self.max_cache_size)
        self.train_set.decode(self.train_set.stored(0))  # a wrong scale or an unreadable first chunk: refused now
        log.info("data: streaming %s sub-images from %s, %d validation images, x%d, LR patch %d, batch %d",
                 count if count is not None else len(self.train_set), uri, len(self.val_pairs), self.scale,
                 self.patch_size, self.batch_size)

    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seed = int(state_dict.get("seed", self.seed))  # before setup() on resume

    def _batches_consumed(self) -> int:
        return batches_consumed(self.trainer)

    def train_dataloader(self) -> StreamLoader:
        return StreamLoader(self.train_set, self._batches_consumed, self.trainer, batch_size=self.batch_size,
                            drop_last=True, num_workers=self.num_workers, pin_memory=self.pin_memory)
