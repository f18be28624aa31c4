"""Which zoo networks' exports open in chaiNNer and ComfyUI: both load models with spandrel, so a
file opens there exactly when spandrel's ``ModelLoader`` detects an architecture in it.

    python -m sr_experiments.tools.chainner      # the README's list, measured with the installed spandrel

Each network (every supported scale of 2, 3, 4) is exported the way ``export.py format=safetensors``
does (``export_weights``: official key layout, read back here), then read by spandrel's own
``ModelLoader.load_from_file``, as chaiNNer does. The architecture does not depend on a network's
size, so small instances (``SMALL``) keep the check to seconds; ``tests/tools/test_chainner.py`` pins the
result and that the README shows it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from sr_experiments.models import build_network, is_multi_frame, list_networks, supports_scale

# Small instances of the networks on spandrel's architecture code (models/community.py); the
# tests that run every network at every scale use them too (tests/conftest.py). spandrel detects
# each of their hyperparameters back from their state dicts (DAT and RGT need 32 channels: their
# position-bias MLPs have embed_dim // 32 channels).
COMMUNITY_SMALL: dict[str, dict] = {
    "hat": dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4, squeeze_factor=4, num_feat=16),
    "dat": dict(embed_dim=32, depth=[2], num_heads=[2], split_size=[2, 4], expansion_factor=2.0),
    "atd": dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4, num_tokens=8, reducted_dim=4,
                convffn_kernel_size=3),
    "omnisr": dict(num_feat=16, res_num=1),
    "span": dict(feature_channels=8),
    "compact": dict(num_feat=8, num_conv=2),
    "plksr": dict(dim=16, n_blocks=2, kernel_size=7),
    "realplksr": dict(dim=16, n_blocks=2, kernel_size=7),
    "drct": dict(embed_dim=12, depths=[6], num_heads=[2], window_size=4, gc=8),
    "rgt": dict(embed_dim=32, depth=[2], num_heads=[2], split_size=[2, 4]),
}
# And of the big ones written here: which architecture spandrel detects does not depend on sizes.
SMALL: dict[str, dict] = {
    **COMMUNITY_SMALL,
    "rcan": dict(width=16, groups=1, depth=1, squeeze=4),
    "rrdbnet": dict(width=16, depth=1),  # growth stays 32: spandrel 0.4.2 reads no other (its ESRGAN fixes it)
    "swinir": dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4),
    "edsr_large": dict(depth=2, width=16),
}
# Not exported: bicubic has no weights; zssr's networks live only while one image is upscaled.
# Video networks (is_multi_frame) export, but chaiNNer and ComfyUI run image networks only.
NOT_EXPORTED = ("bicubic", "zssr")
SCALES = (2, 3, 4)


def spandrel_reads(name: str, scale: int, folder: Path) -> str | None:
    """spandrel's architecture id for the export of ``name`` at ``scale``, or None where it detects
    none (or fails on the file: spandrel mistakes ``fsrcnn`` for another network and raises)."""
    from spandrel import ModelLoader

    from sr_experiments.inference.export import export_weights

    torch.manual_seed(0)
    spec = {"name": name, "scale": scale, **SMALL.get(name, {})}
    path = folder / f"{name}_x{scale}.safetensors"
    export_weights(build_network(spec), spec, "safetensors", path)
    try:
        model = ModelLoader().load_from_file(path)
    except Exception:  # UnsupportedModelError, or a detector that trips on keys it half-recognises
        return None
    return model.architecture.id if model.scale == scale else None


def support() -> dict[str, dict[int, str | None]]:
    """``{network: {scale: spandrel architecture or None}}`` for every exportable zoo network."""
    with tempfile.TemporaryDirectory() as tmp:
        return {name: {s: spandrel_reads(name, s, Path(tmp)) for s in SCALES if supports_scale(name, s)}
                for name in list_networks() if name not in NOT_EXPORTED and not is_multi_frame(name)}


def markdown(found: dict[str, dict[int, str | None]]) -> str:
    """The README's two lines: the networks whose exports open in chaiNNer/ComfyUI, and the rest."""
    import spandrel

    opens, here = [], []
    for name, by_scale in found.items():
        ids = {a for a in by_scale.values() if a}
        if not ids:
            here.append(f"`{name}`")
            continue
        scales = [s for s, a in by_scale.items() if a]
        only = "" if len(scales) == len(by_scale) else f", x{'/x'.join(map(str, scales))} only"
        opens.append(f"`{name}` ({'/'.join(sorted(ids))}{only})")
    return (f"- **Open in chaiNNer and ComfyUI** (spandrel {spandrel.__version__} detects them, every scale "
            f"the network has): {', '.join(opens)}.\n"
            f"- **Load only here** (spandrel knows no such architecture): {', '.join(here)}.")


if __name__ == "__main__":
    print(markdown(support()))
