"""The one method layer: what a config means to run on LR images.

``resolve_methods(cfg)`` (``resolve_method`` for the commands that take one) is the only place
that answers "which model does this config mean?" for ``eval.py``, ``upscale.py``, ``export.py``
and ``zssr.py``. It returns ``Method`` objects: callables on an LR tensor (B, 3, h, w in [0, 1])
giving the SR tensor, with a ``label``, a ``scale`` and ``provenance`` (checkpoint path, hash,
parameters). The kinds (``kinds.py``): a network from a weights file (``ckpt_path``,
``ckpt_path=latest``, ``model.pretrained=FILE``: ours, an official release, or any file whose
network the zoo's keys or spandrel recognise), an exported ONNX file, a parameter-free model
(``model=bicubic``) and per-image ZSSR (``model=zssr``: it trains on each image when called).

A **multi-frame (video) model** is a ``NetworkMethod`` with ``multi_frame=True`` (its network
declares it): ``clips.py`` runs it on a whole clip (``run_clip``: eval's protocol) or streamed in
chunks with context (``stream_clip``: upscale.py on video files), as an engine over clips
(``clip_engine``).

Where the next kinds go. A **diffusion sampler** subclasses
``Method`` with its sampler settings (``steps``, ``seed``, from ``model.sampler``) as fields,
recorded in ``provenance`` so a result names how it was sampled, and ``whole_image=True`` where
tiles would break its global noise; ``resolve_methods`` builds it from the config's node the
way it builds ``ZSSRMethod`` from ``model.zssr``. Nothing above this layer then changes.
"""

from sr_experiments.methods.base import Method
from sr_experiments.methods.kinds import NetworkMethod, OnnxMethod, ParameterFreeMethod, ZSSRMethod
from sr_experiments.methods.resolve import checkpoint_paths, resolve_method, resolve_methods, weights_source

__all__ = ["Method", "NetworkMethod", "OnnxMethod", "ParameterFreeMethod", "ZSSRMethod", "checkpoint_paths",
           "resolve_method", "resolve_methods", "weights_source"]  # fmt: skip
