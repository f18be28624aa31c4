"""``Method``: one way of super-resolving, as the commands see it (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sr_experiments.methods.engines import Engine, torch_engine


@dataclass
class Method:
    """A callable LR (B, 3, h, w in [0, 1]) -> SR (B, 3, h*scale, w*scale), with what it is.

    ``any_scale``: it runs at any integer scale (``at_scale``), as parameter-free and per-image
    methods do; otherwise it is the one ``scale`` its weights were trained for. ``whole_image``:
    it must see each image whole and alone (no tiles, no outside self-ensemble): ZSSR trains on it.
    ``multi_frame``: its network takes (B, T, 3, h, w) clips (``models.is_multi_frame``): commands run
    it with ``clips.run_clip`` / ``clips.stream_clip`` on the module, not as an image ``engine``.
    """

    label: str
    scale: int
    provenance: dict[str, Any]  # checkpoint, checkpoint_sha256, params (and what the kind adds)
    spec: dict[str, Any] | None = None  # the network spec, where there is one
    any_scale: bool = False
    whole_image: bool = False
    tuned: bool = False  # eval measures its precision and layout here (trained networks)
    multi_frame: bool = False  # a video network: it runs on clips (methods/clips.py), in fp32
    _networks: dict[tuple[int, str], Any] = field(default_factory=dict, repr=False)

    def network(self, device: torch.device | str = "cpu", scale: int | None = None) -> Any:
        """What computes the SR at ``scale`` (default: ``self.scale``) on ``device``: a module or an engine."""
        scale = self.scale if scale is None else int(scale)
        if scale != self.scale and not self.any_scale:
            raise ValueError(f"{self.label} is a x{self.scale} network; it cannot run at x{scale}")
        key = (scale, str(device))
        if key not in self._networks:
            self._networks[key] = self._build(torch.device(device), scale)
        return self._networks[key]

    def _build(self, device: torch.device, scale: int) -> Any:
        raise NotImplementedError

    def engine(self, device: torch.device, precision: str = "32", channels_last: bool | str = "auto",
               scale: int | None = None) -> Engine:
        """The network as an ``Engine`` (precision and layout measured fastest here, cached)."""
        net = self.network(device, scale)
        if isinstance(net, Engine):
            return net
        spec = {**(self.spec or {"name": self.label}), "label": self.label, "scale": scale or self.scale}
        return torch_engine(net, spec, device, precision, channels_last)

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        net = self.network(lr.device)
        if self.whole_image:  # it trains on the image: autograd stays on
            return torch.cat([net(x[None]) for x in lr])
        with torch.inference_mode():
            return net(lr)
