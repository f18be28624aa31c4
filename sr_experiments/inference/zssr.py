"""``zssr.py`` / ``sr-zssr``: zero-shot SR of the user's own images, with upscale.py's file handling
(modes kept, bad files named and skipped, exit status 0/1/2) and the time announced before it starts."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from sr_experiments import CONF_DIR
from sr_experiments.console import progress
from sr_experiments.hardware import resolve_device
from sr_experiments.imaging.io import (
    FORMATS,
    Animation,
    ImageFileError,
    Picture,
    find_inputs,
    plan_outputs,
    read_picture,
    write_picture,
)
from sr_experiments.inference.upscale import command_line, each_image, exit_status, upscale_alpha
from sr_experiments.methods import resolve_method
from sr_experiments.outputs import check_writable_folder
from sr_experiments.zssr.method import (
    STAGE_OVERHEAD_S,
    StageCost,
    ZSSRSettings,
    earliest_stop,
    factor_pair,
    load_kernel,
    speed_choice,
    stage_cost,
)

PROG = "zssr"


@dataclass
class Summary:
    images: int = 0
    seconds: float = 0.0
    steps: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        per = self.seconds / self.images if self.images else 0.0
        steps = f", {np.mean(self.steps):.0f} training steps on average" if self.steps else ""
        return f"{PROG}: {self.images} images in {self.seconds:.1f} s ({per:.1f} s/image{steps}), {len(self.failures)} failed"


def estimate_seconds(size: tuple[int, int], scale: int, settings: ZSSRSettings, costs: dict[int, StageCost],
                     steps: int) -> float:
    """One image's time at ``steps`` training steps per stage, from costs measured here: the steps,
    the reconstruction test every ``test_every`` steps, the final passes (x8 ensemble) and each
    stage's set-up. Back-projection (bicubic resizes) is small beside the passes and left out."""
    w, h = size
    total = 0.0
    progressive = settings.progressive(scale)
    if progressive is not None:  # one network through every factor of the same input
        c = costs[scale]
        for f in progressive:
            sy, sx = factor_pair(f)
            test_px = min(h, settings.test_max_side) * sy * min(w, settings.test_max_side) * sx
            passes = (8 if settings.flips and sy == sx else 4 if settings.flips else 1) * h * sy * w * sx
            total += steps * c.step_s + (steps // settings.test_every + 1) * test_px * c.forward_s_px
            total += passes * c.forward_s_px + STAGE_OVERHEAD_S
        return total
    for s in settings.stages(scale):
        c = costs[s]
        test_px = min(h * s, settings.test_max_side * s) * min(w * s, settings.test_max_side * s)
        passes = (8 if settings.ensemble and settings.flips else 1) * (h * s * w * s)
        total += steps * c.step_s + (steps // settings.test_every + 1) * test_px * c.forward_s_px
        total += passes * c.forward_s_px + STAGE_OVERHEAD_S
        h, w = h * s, w * s
    return total


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_zssr(cfg: DictConfig) -> Summary:
    """Super-resolve every input; failures are reported one line each and counted, never raised."""
    fmt = str(cfg.format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"format={cfg.format} is not one of {', '.join(FORMATS)}")
    method = resolve_method(cfg, progress=bool(cfg.progress))  # model=zssr, its settings checked: zssr.*
    scale, settings = method.scale, method.settings
    stages = settings.stages(scale)
    if settings.kernel:
        load_kernel(settings.kernel)  # a bad kernel file stops the run here, named, before any training
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    inputs = find_inputs(str(cfg.input))
    out_dir = Path(str(cfg.output))
    overwrite = bool(cfg.get("overwrite", False))
    targets = plan_outputs(inputs, out_dir, fmt, (), overwrite, PROG, cfg.input)
    check_writable_folder(out_dir)
    device = resolve_device(str(cfg.device))
    speeds = {s: speed_choice(settings, s, device) for s in set(stages)}
    zssr = method.network(device)  # trains a network on each image it is called on
    zssr._speed.update(speeds)  # measured once, for the announcement and the training
    choice = speeds[stages[0]]
    progressive = settings.progressive(scale)
    plan = (" as " + " x ".join(f"x{s}" for s in stages) if len(stages) > 1 else
            " through " + ", ".join("x".join(f"{f:g}" for f in factor_pair(p)) for p in progressive) if progressive else "")
    print(f"{PROG}: x{scale}{plan} on {device}; "
          f"precision {choice.precision.precision}{', channels_last' if choice.mode.channels_last else ''} "
          f"({choice.reason})", file=sys.stderr, flush=True)
    sizes = image_sizes(inputs, int(cfg.max_pixels))
    first = next(iter(sizes.values()), (64, 64))
    costs = {s: stage_cost(c, settings, s, device, first) for s, c in speeds.items()}
    low, high = (sum(estimate_seconds(sz, scale, settings, costs, n) for sz in sizes.values())
                 for n in (earliest_stop(settings), settings.max_steps))
    span = f"~{_minutes(high)}" if low == high else f"~{_minutes(low)} to ~{_minutes(high)}"
    steps = (f"{settings.max_steps}" if earliest_stop(settings) == settings.max_steps
             else f"{earliest_stop(settings)} to {settings.max_steps}")
    print(f"{PROG}: {len(inputs)} image(s); each trains its own network for {steps} steps per stage (the "
          f"learning-rate policy decides; zssr.max_steps=N caps it) at "
          f"{1000 * costs[stages[0]].step_s:.0f} ms/step (measured here), then its final passes: {span} in all",
          file=sys.stderr, flush=True)

    loggers = list(cfg.logger.values()) if cfg.get("logger") else []
    min_side = scale if progressive else stages[0]  # the first stage's sons must be 1 px at least
    summary, show = Summary(), bool(cfg.progress)

    def one(path: Path) -> None:
        read = read_picture(path, int(cfg.max_pixels))
        if isinstance(read, Animation):
            raise ImageFileError(f"{len(read.frames)} frames: ZSSR trains a network per image; extract the frames")
        pic: Picture = read
        check_min_size(pic.size, min_side)
        lr = torch.from_numpy(pic.rgb).permute(2, 0, 1)[None].float()
        zssr(lr, name=path.name, logger=_logger(loggers, path.stem))
        result = zssr.last
        rgb = result.sr[0].float().clamp(0, 1).permute(1, 2, 0).numpy()
        alpha = upscale_alpha(pic.alpha, scale) if pic.alpha is not None else None
        write_picture(targets[path], Picture(rgb, alpha, pic.gray, pic.bits, pic.icc_profile, pic.mode), fmt,
                      int(cfg.quality), overwrite)
        print(f"{PROG}: {path.name}: {'+'.join(map(str, result.steps))} steps ({', '.join(result.stopped_by)}), "
              f"{result.seconds:.1f} s -> {targets[path]}", file=sys.stderr, flush=True)
        summary.images += 1
        summary.steps.append(sum(result.steps))

    return each_image(PROG, progress(inputs, desc="images", unit="img", enabled=show and len(inputs) > 1), summary, one)


def image_sizes(inputs: list[Path], max_pixels: int) -> dict[Path, tuple[int, int]]:
    """(width, height) of each input, read from its header (no decoding), for the announcement.

    Unreadable files and images over ``max_pixels`` (a decompression bomb: PIL raises its own error
    for those) are left out: they fail later, named, one line each, and the batch goes on."""
    sizes = {}
    for path in inputs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    if im.size[0] * im.size[1] <= max_pixels:
                        sizes[path] = im.size
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    return sizes


def check_min_size(size: tuple[int, int], min_side: int) -> None:
    """Refuse, in one line, an image too small to make a training pair from (1x1 at x2)."""
    if min(size) < min_side:
        raise ImageFileError(f"{size[0]}x{size[1]} is too small: ZSSR at this scale needs at least "
                             f"{min_side}x{min_side} pixels to make a training pair from")


def _logger(configs: list, stem: str):
    """The chosen loggers for one image (csv/tensorboard: a version folder per image)."""
    from hydra.utils import instantiate

    made = []
    for c in configs:
        extra = {"version": stem} if "version" in c else ({"name": stem} if "name" in c else {})
        made.append(instantiate(c, **extra))
    return made or None


def main(cfg: DictConfig) -> int:
    """Exit status: 0 all written, 1 some inputs failed, 2 nothing could start (bad settings)."""
    return exit_status(PROG, run_zssr, cfg)


FLAGS = {"--no-progress": "progress=false", "--overwrite": "overwrite=true"}


def cli(argv: list[str] | None = None) -> int:
    """``sr-zssr input=FILE|DIR|GLOB output=DIR [scale=2] [zssr.KEY=VALUE ...] [--no-progress] [--overwrite]``: the
    Hydra overrides of zssr.py, composed without a Hydra run (nothing is written but the images)."""
    return command_line("sr-zssr", "zssr", FLAGS, main, argv, cli.__doc__ + "\n\n" + (CONF_DIR / "zssr.yaml").read_text()
                        + "\n# zssr.*\n" + (CONF_DIR / "shared" / "zssr.yaml").read_text())


if __name__ == "__main__":
    sys.exit(cli())
