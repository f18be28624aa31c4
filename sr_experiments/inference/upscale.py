"""Upscale the user's own images and videos: files, folders or globs, any mode, tiled, one bad file never
stops the batch. Video files go through ``upscale_video.py`` (decode, chunks, encode); this module dispatches.

``run_upscale(cfg)`` is the whole command (sr_experiments/conf/upscale.yaml); ``upscale.py`` is its Hydra app and
``cli()`` the ``sr-upscale`` console script.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from sr_experiments import CONF_DIR
from sr_experiments.imaging.annotate import font_size, label_strip
from sr_experiments.cli import first_line
from sr_experiments.extras import MissingExtra
from sr_experiments.hardware import resolve_device
from sr_experiments.methods.engines import (
    Engine,
    auto_tile,
)
from sr_experiments.imaging.io import (
    FORMATS,
    Animation,
    Picture,
    check_frames,
    find_inputs,
    plan_outputs,
    read_picture,
    write_animation,
    write_picture,
)
from sr_experiments.imaging.tiling import Tile, count_tiles, fit_tiles, upscale
from sr_experiments.imaging.video import is_video
from sr_experiments.inference.upscale_video import (
    VIDEO_INPUTS,
    FrameSR,
    clip_frames,
    describe,
    frame_clips,
    multi_frame,
    require_video,
    to_uint8,
    upscale_frame_clip,
    upscale_video,
)
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.outputs import WriteError, check_writable_folder


@dataclass
class Summary:
    images: int = 0
    megapixels: float = 0.0  # output pixels written
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.megapixels / self.seconds if self.seconds else 0.0
        return (f"upscale: {self.images} images, {self.megapixels:.2f} MP out in {self.seconds:.1f} s "
                f"({rate:.2f} MP/s), {len(self.failures)} failed")


def load_engine(cfg: DictConfig) -> Engine:
    """The method the config means (``methods.resolve_method``: ``ckpt_path``, an ONNX file, a
    parameter-free ``model``, or ``model=zssr``) as an engine on ``cfg.device``; a video network as
    an engine over clips (``methods.clips.clip_engine``; an image is a one-frame clip)."""
    from sr_experiments.methods import resolve_method
    from sr_experiments.methods.clips import clip_engine

    device = resolve_device(str(cfg.device))
    method = resolve_method(cfg, device, progress=bool(cfg.progress))
    if method.whole_image and cfg.ensemble:
        raise ValueError(f"model={method.label} has its own x8 ensemble: set model.{method.label}.ensemble, not ensemble=true")
    if method.multi_frame:
        return clip_engine(method, device, int(cfg.video_chunk) + 2 * int(cfg.video_overlap))
    return method.engine(device, str(cfg.precision), cfg.get("channels_last", "auto"))


def _trains_per_image(engine: Engine) -> bool:
    """ZSSR: the engine trains on each image whole (no tiles; autograd on)."""
    return bool(getattr(engine.forward, "trains_per_image", False))


def _to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)


def _to_array(x: torch.Tensor) -> np.ndarray:
    # Clamp in fp32 before quantising (write_picture rounds): bf16 never reaches the file.
    return x[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha is not a colour: a bicubic resize, clamped, rather than the network."""
    a = torch.from_numpy(alpha)[None, None]
    return F.interpolate(a, scale_factor=scale, mode="bicubic", align_corners=False)[0, 0].clamp_(0, 1).numpy()


def layout(h: int, w: int, tile: int | None, cfg: DictConfig) -> tuple[tuple[int, int], Tile | None, int]:
    """(pad_y, pad_x), the tile and the number of tiles for an ``h`` x ``w`` image.

    An axis shorter than ``tile_overlap`` is edge-padded by ``tile_overlap // 2`` on each side: the
    network then sees the context tiling guarantees instead of only its zero padding (a 1x1 image
    is all border: a trained network gave it another colour)."""
    overlap = int(cfg.tile_overlap)
    pad = (overlap // 2 if h < overlap else 0, overlap // 2 if w < overlap else 0)
    h, w = h + 2 * pad[0], w + 2 * pad[1]
    # tile is the largest side; equal tiles that just cover this image waste the least. The
    # self-ensemble also runs the image rotated, so it keeps square tiles.
    fitted = fit_tiles(h, w, tile, overlap) if tile and not cfg.ensemble else tile
    n_tiles = (count_tiles(h, w, fitted, overlap) if fitted else 1) * (8 if cfg.ensemble else 1)
    return pad, fitted, n_tiles


def upscale_picture(
    engine: Engine, pic: Picture, cfg: DictConfig, tile: Tile | None, bar=None, pad: tuple[int, int] = (0, 0),
    name: str = "",
) -> Picture:
    """``pic`` upscaled (``pad``: LR pixels of edge context added, then cut from the output)."""
    (py, px), s = pad, engine.scale
    lq = _to_tensor(np.pad(pic.rgb, ((py, py), (px, px), (0, 0)), mode="edge"), engine.device)
    if _trains_per_image(engine):
        sr = engine.forward(lq.float(), name=name)
    else:
        sr = upscale(engine, lq, engine.scale, tile, int(cfg.tile_overlap), bool(cfg.ensemble), int(cfg.tile_batch),
                     progress=bar.update if bar is not None else None)
    sr = sr[..., py * s : sr.shape[-2] - py * s, px * s : sr.shape[-1] - px * s]
    alpha = upscale_alpha(pic.alpha, engine.scale) if pic.alpha is not None else None
    return Picture(_to_array(sr), alpha, pic.gray, pic.bits, pic.icc_profile, pic.mode)


def compare_image(pic: Picture, sr: Picture, scale: int, model_label: str = "SR") -> Picture:
    """bicubic | model, side by side under their names, 8-bit RGB (alpha composited over white, as
    viewers show it); below them the square where the two differ most (outlined in red above),
    enlarged with nearest neighbour to the frames' width: whole frames hide what SR changes."""
    from sr_experiments.imaging.annotate import detail_box, outline

    with torch.inference_mode():
        bic = _to_array(Bicubic(scale)(_to_tensor(pic.rgb, torch.device("cpu"))))
    panels = []
    for rgb, alpha in ((bic, sr.alpha), (sr.rgb, sr.alpha)):
        panels.append(rgb if alpha is None else rgb * alpha[..., None] + (1 - alpha[..., None]))
    h, w = sr.rgb.shape[:2]
    box = detail_box(panels[0], panels[1], max(16, min(h, w) // 4))
    y, x, side = box
    zoom = max(1, w // side)
    crops = [np.repeat(np.repeat(p[y : y + side, x : x + side], zoom, 0), zoom, 1) for p in panels]
    crops = [np.pad(c, ((0, 0), (0, w - c.shape[1]), (0, 0)), constant_values=1.0) for c in crops]
    gap = np.ones((h, 8, 3), np.float32)
    size = font_size(w)
    strip = label_strip(2 * w + 8, [(0, w, "bicubic"), (w + 8, 2 * w + 8, model_label)], size)
    detail = label_strip(2 * w + 8, [(0, w, f"bicubic, detail x{zoom}"), (w + 8, 2 * w + 8, f"{model_label}, detail x{zoom}")], size)
    red = (1.0, 0.0, 0.0)
    body = np.concatenate([outline(panels[0], box, red), gap, outline(panels[1], box, red)], axis=1)
    zoomed = np.concatenate([crops[0], np.ones((crops[0].shape[0], 8, 3), np.float32), crops[1]], axis=1)
    rows = [strip.astype(np.float32) / 255, body, detail.astype(np.float32) / 255, zoomed]
    return Picture(np.concatenate(rows, axis=0).astype(np.float32), None, False, 8, sr.icc_profile, "RGB")


def _tile_setting(cfg: DictConfig, engine: Engine) -> tuple[int | None, str]:
    if _trains_per_image(engine):
        return None, "it trains on each image whole"
    if str(cfg.tile) == "auto":  # a video network's tiles hold a whole chunk, one at a time
        batch = 1 if multi_frame(engine) else int(cfg.tile_batch)
        return auto_tile(engine, int(cfg.tile_overlap), batch, cfg.get("tile_memory_mb"))
    tile = int(cfg.tile)
    return (tile or None), ("set by tile=" + str(tile))


def run_upscale(cfg: DictConfig) -> Summary:
    """Upscale every input; failures are reported one line each and counted, never raised."""
    from tqdm import tqdm

    fmt = str(cfg.format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"format={cfg.format} is not one of {', '.join(FORMATS)}")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    inputs = find_inputs(str(cfg.input), VIDEO_INPUTS)
    out_dir = Path(str(cfg.output))
    overwrite = bool(cfg.get("overwrite", False))
    targets = plan_outputs(inputs, out_dir, fmt, ("_compare.png",) if cfg.compare else (), overwrite, "upscale",
                           cfg.input)
    check_writable_folder(out_dir)
    require_video(inputs)
    engine = load_engine(cfg)
    clips: dict[Path, tuple[Path, ...]] = {}
    if multi_frame(engine):
        cfg.tile_batch = 1  # the engine reads a batch as the frames of one clip: tiles go one at a time
        clips = frame_clips([p for p in inputs if not is_video(p)])  # each folder's images: one clip
    items = [p for p in inputs if is_video(p)] + list(clips) if clips else inputs
    tile, why = _tile_setting(cfg, engine)
    videos = f"; {describe(engine, cfg)}" if clips or any(map(is_video, inputs)) else ""
    print(f"upscale: {engine.label} x{engine.scale} on {engine.device}; precision {engine.precision.precision} "
          f"({engine.precision.reason}){', channels_last' if engine.channels_last else ''}; "
          f"tile {tile or 'off'} ({why}), overlap {cfg.tile_overlap}{videos}", file=sys.stderr, flush=True)

    summary, show = Summary(), bool(cfg.progress)

    def one(path: Path) -> None:
        if path in clips:
            done = upscale_frame_clip(clips[path], targets, video_frames(engine, tile, cfg), cfg, overwrite, show)
            summary.images += done.frames
            summary.megapixels += done.size[0] * done.size[1] * done.frames / 1e6
            return
        if is_video(path):
            done = upscale_video(path, targets[path], video_frames(engine, tile, cfg), cfg, overwrite, show)
            summary.images += 1
            summary.megapixels += done.size[0] * done.size[1] * done.frames / 1e6
            return
        read = read_picture(path, int(cfg.max_pixels))
        frames = read.frames if isinstance(read, Animation) else [read]
        check_frames(len(frames), fmt)
        w, h = frames[0].size
        pad, fitted, n_tiles = layout(h, w, tile, cfg)
        if _trains_per_image(engine):  # it learns from the image itself: no border added
            pad = (0, 0)
        with tqdm(total=n_tiles * len(frames), desc=path.name, unit="tile", leave=False, file=sys.stderr,
                  disable=not show or n_tiles * len(frames) < 4) as bar:
            srs = (upscale_picture(engine, pic, cfg, fitted, bar, pad, path.name) for pic in frames)
            if isinstance(read, Animation):
                sr = write_animation(targets[path], srs, read, fmt, int(cfg.quality), overwrite)
            else:
                sr = next(srs)
                write_picture(targets[path], sr, fmt, int(cfg.quality), overwrite)
        if cfg.compare:  # the first frame of an animation
            write_picture(out_dir / f"{path.stem}_compare.png",
                          compare_image(frames[0], sr, engine.scale, f"SR ({engine.label})"), "png", 95, overwrite)
        summary.images += 1
        summary.megapixels += sr.size[0] * sr.size[1] * len(frames) / 1e6

    bars = tqdm(items, desc="images", unit="img", disable=not show or len(items) < 2, file=sys.stderr)
    return each_image("upscale", bars, summary, one)


def video_frames(engine: Engine, tile: int | None, cfg: DictConfig) -> FrameSR:
    """How a video's frames are upscaled: a video network on chunks of frames (``clip_frames``),
    an image network frame by frame through ``upscale_picture`` (tiled as an image is)."""
    if _trains_per_image(engine):
        raise ValueError(f"model={engine.label} trains on each image: it is not run on every frame of a video")
    if multi_frame(engine):
        return clip_frames(engine, tile, cfg)

    def frame_by_frame(frames: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
        for rgb in frames:
            pad, fitted, _ = layout(rgb.shape[0], rgb.shape[1], tile, cfg)
            sr = upscale_picture(engine, Picture(rgb.astype(np.float32) / 255, None, False, 8, None, "RGB"), cfg,
                                 fitted, None, pad)
            yield to_uint8(torch.from_numpy(sr.rgb).permute(2, 0, 1))

    return frame_by_frame


def each_image(prog: str, paths: Iterable[Path], summary: Any, process: Callable[[Path], None]) -> Any:
    """``process`` each input (it counts its successes in ``summary``). An input that fails is named
    in one line (``prog: path: reason (skipped)``) and counted in ``summary.failures``, and the
    batch goes on; a failed write (a full disk) stops it. Then ``summary.line()`` is printed."""
    start = time.perf_counter()
    for path in paths:
        try:
            process(path)
        except WriteError:  # a full disk fails every later image as well: stop (nothing partial is left)
            raise
        except (ValueError, OSError, RuntimeError) as e:  # ImageFileError is a ValueError
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"{prog}: {path}: {reason} (skipped)", file=sys.stderr, flush=True)
            summary.failures.append(str(path))
    summary.seconds = time.perf_counter() - start
    print(summary.line(), flush=True)
    return summary


def exit_status(prog: str, run: Callable[[DictConfig], Any], cfg: DictConfig) -> int:
    """``run(cfg)`` over a batch of images as a command's exit status: 0 all written, 1 some inputs
    failed (each reported by ``run``) or a write failed (a full disk: one line, the batch stops),
    2 nothing could start (bad model/config, or an output refused by the output policy: one line)."""
    try:
        summary = run(cfg)
    except WriteError as e:  # failed while writing (a full disk): the images written so far are whole
        print(f"{prog}: {first_line(e)}", file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError, MissingExtra) as e:
        print(f"{prog}: {first_line(e)}", file=sys.stderr)
        return 2
    return 1 if summary.failures else 0


def main(cfg: DictConfig) -> int:
    """Exit status: 0 all written, 1 some inputs failed, 2 nothing could start (bad model/config)."""
    return exit_status("upscale", run_upscale, cfg)


FLAGS = {"--compare": "compare=true", "--ensemble": "ensemble=true", "--no-progress": "progress=false",
         "--overwrite": "overwrite=true"}


def cli(argv: list[str] | None = None) -> int:
    """``sr-upscale key=value ... [--compare] [--ensemble] [--no-progress] [--overwrite]``: the Hydra overrides of
    upscale.py, composed without a Hydra run (nothing is written but the images)."""
    return command_line("sr-upscale", "upscale", FLAGS, main, argv, cli.__doc__ + "\n\n" + (CONF_DIR / "upscale.yaml").read_text())


def command_line(prog: str, config: str, flags: dict[str, str], run: Callable[[DictConfig], int],
                 argv: list[str] | None, help_text: str) -> int:
    """A console script over images (sr-upscale, sr-zssr): ``--help``, its ``flags`` as overrides,
    the config composed without a Hydra run; a bad option or override is one line, exit 2."""
    from hydra import compose, initialize_config_dir

    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(help_text)
        return 0
    unknown = [a for a in args if a.startswith("--") and a not in flags]
    if unknown:
        print(f"{prog}: unknown option {unknown[0]} (options: {', '.join(flags)}, or key=value overrides)", file=sys.stderr)
        return 2
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config, overrides=[flags.get(a, a) for a in args])
    except Exception as e:  # noqa: BLE001  (Hydra's override errors, of several types: one line, not a traceback)
        print(f"{prog}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return run(cfg)


if __name__ == "__main__":
    sys.exit(cli())
