"""``ResumableSampler``: the training stream as a pure function of (seed, patch number).

Lightning restarts a plain DataLoader from the beginning of the epoch on resume, and the patch
crops came from the global RNG, so a resumed run trained on other patches than the run it
continued. Here patch number ``n`` (counted from the start of training) always gets the same
image, crop and flips (``PairedPatchDataset`` seeds each item from ``(seed, n)``), epoch ``e``
visits ``[e*L, (e+1)*L)`` in an order seeded by ``(seed, e)``, and each iteration starts at the
patch the trainer has reached, so a resumed run sees exactly the patches the uninterrupted run
would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def derived_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys]).generate_state(2, np.uint64)[0] >> 1)


class ResumableSampler(Sampler[int]):
    """Patch numbers of one epoch in a seeded order, starting at the patch training has reached.

    Args:
        epoch_length: patches per epoch (a multiple of the batch size).
        seed: base seed of the whole stream.
        consumed: returns how many patches training has consumed so far (read when an epoch's
            iteration starts; 0 outside a trainer).
    """

    def __init__(self, epoch_length: int, seed: int, consumed: Callable[[], int] = lambda: 0) -> None:
        if epoch_length < 1:
            raise ValueError(f"epoch_length must be positive, got {epoch_length}")
        self.epoch_length, self.seed, self.consumed = int(epoch_length), int(seed), consumed

    def __len__(self) -> int:
        return self.epoch_length

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(int(self.consumed()), self.epoch_length)
        g = torch.Generator().manual_seed(derived_seed(self.seed, 1, epoch))
        order = torch.randperm(self.epoch_length, generator=g) + epoch * self.epoch_length
        yield from order[offset:].tolist()
