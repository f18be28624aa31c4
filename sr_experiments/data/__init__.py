"""Data: standard-layout sources, cached pairs, patch datasets, the datamodule."""

from sr_experiments.data.datamodule import SRDataModule
from sr_experiments.data.datasets import PairedImageDataset, PairedPatchDataset
from sr_experiments.data.pairs import ImagePair, load_pair, mod_crop
from sr_experiments.data.sources import ImageSource, resolve_sources

__all__ = [
    "SRDataModule",
    "PairedImageDataset",
    "PairedPatchDataset",
    "ImagePair",
    "load_pair",
    "mod_crop",
    "ImageSource",
    "resolve_sources",
]
