"""upscale.py on video files (``input=clip.mp4``, or a folder or glob mixing images and videos), and
a video network on folders of frames (each folder's images are one clip).

Memory stays bounded for a video of any length: frames are decoded as they are needed
(``imaging/video.py``, PyAV); a video network runs on chunks of ``video_chunk`` frames with
``video_overlap`` frames of context before and after each (computed, then dropped:
``methods/clips.py``), each chunk in spatial tiles over all its frames when frames are large; an
image network runs frame by frame through upscale.py's tiled image path; SR frames are encoded as
they come (H.264 at the source's frame rate and timestamps, the audio stream kept).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from sr_experiments.data.clips import ClipError, order_frames
from sr_experiments.extras import require
from sr_experiments.imaging.io import INPUT_SUFFIXES, Animation, Picture, read_picture, write_picture
from sr_experiments.imaging.tiling import fit_tiles, upscale
from sr_experiments.imaging.video import (
    VIDEO_SUFFIXES,
    TimedFrame,
    VideoFileError,
    is_video,
    open_video,
    read_frames,
    write_video,
)
from sr_experiments.methods.clips import clip_context, stream_clip
from sr_experiments.methods.engines import Engine

VIDEO_INPUTS = (*INPUT_SUFFIXES, *VIDEO_SUFFIXES)  # what upscale.py finds in a folder
# LR uint8 (H, W, 3) frames in -> SR uint8 frames out, in order, one for one, read as needed.
FrameSR = Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]


def require_video(inputs: list[Path]) -> None:
    """A video among ``inputs`` needs PyAV: without it, one line naming the extra (``MissingExtra``)."""
    if any(is_video(p) for p in inputs):
        require("av", "upscaling video files")


def multi_frame(engine: Engine) -> bool:
    """The engine runs a video network on clips (``methods.clips.clip_engine``)."""
    return bool(getattr(engine.forward, "multi_frame", False))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded as images are written (``io._quantise``)."""
    return x.float().clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _lr_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div(255)


def clip_frames(engine: Engine, tile: int | None, cfg: DictConfig) -> FrameSR:
    """A video network over a video: ``stream_clip`` chunks, each in tiles of at most ``tile``
    LR pixels a side over all its frames (``tiling.upscale``: one tile of the whole chunk at a time,
    so ``tile_batch`` is 1), with the x8 self-ensemble when ``ensemble=true``."""
    context = clip_context(engine.forward.net, int(cfg.video_overlap))
    overlap = int(cfg.tile_overlap)

    def forward(clip: torch.Tensor) -> torch.Tensor:
        h, w = clip.shape[-2:]
        fitted = fit_tiles(h, w, tile, overlap) if tile else None
        return upscale(engine, clip, engine.scale, fitted, overlap, bool(cfg.ensemble), 1)

    def run(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        lr = (_lr_tensor(f, engine.device) for f in frames)
        for sr in stream_clip(forward, lr, int(cfg.video_chunk), context):
            yield to_uint8(sr)

    return run


def describe(engine: Engine, cfg: DictConfig) -> str:
    """How a video is run, for upscale.py's first line."""
    if not multi_frame(engine):
        return "videos frame by frame (an image network)"
    context = clip_context(engine.forward.net, int(cfg.video_overlap))
    return (f"videos and folders of frames (a clip each) in chunks of {int(cfg.video_chunk)} frames "
            f"with {context} of context each side")


@dataclass
class VideoDone:
    frames: int
    size: tuple[int, int]  # output (width, height)


def upscale_video(path: Path, target: Path, sr_frames: FrameSR, cfg: DictConfig, overwrite: bool,
                  show: bool) -> VideoDone:
    """``path`` upscaled by ``sr_frames`` into ``target`` (``write_video``: H.264, the source's frame
    rate and timestamps, its audio), with a progress bar in frames on stderr."""
    from tqdm import tqdm

    info = open_video(path)
    if info.width * info.height > int(cfg.max_pixels):
        raise VideoFileError(f"frames of {info.width}x{info.height} are over max_pixels={cfg.max_pixels}")
    timing: deque[tuple[int, int]] = deque()  # (pts, duration) of frames read and not yet written
    size = [0, 0]

    def lr_frames() -> Iterator[np.ndarray]:
        for frame in read_frames(info):
            timing.append((frame.pts, frame.duration))
            yield frame.rgb

    with tqdm(total=info.frame_count, desc=path.name, unit="frame", leave=False, file=sys.stderr,
              disable=not show) as bar:

        def sr_timed() -> Iterator[TimedFrame]:
            for sr in sr_frames(lr_frames()):
                size[:] = sr.shape[1], sr.shape[0]
                bar.update(1)
                yield TimedFrame(sr, *timing.popleft())

        say = lambda line: print(f"upscale: {path}: {line}", file=sys.stderr, flush=True)  # noqa: E731
        n = write_video(target, sr_timed(), info, int(cfg.video_crf), str(cfg.video_preset), overwrite, say)
    return VideoDone(n, (size[0], size[1]))


def frame_clips(images: list[Path]) -> dict[Path, tuple[Path, ...]]:
    """A video network's image inputs as clips: each folder's images are the frames of one clip, in
    order (``data.clips.order_frames``: numbered frames must be consecutive), keyed by the folder."""
    folders: dict[Path, list[Path]] = {}
    for path in images:
        folders.setdefault(path.parent, []).append(path)
    return {folder: order_frames(files, folder) for folder, files in folders.items()}


def upscale_frame_clip(frames: tuple[Path, ...], targets: dict[Path, Path], sr_frames: FrameSR,
                       cfg: DictConfig, overwrite: bool, show: bool) -> VideoDone:
    """The image files ``frames`` as one clip through ``sr_frames`` (a video network in chunks, so
    memory is bounded as for a video file), each SR frame written to its planned target as an image
    (8 bits, RGB) as soon as it comes. Frames of another size than the first are refused, named."""
    from tqdm import tqdm

    size: list[tuple[int, int]] = []

    def lr_frames() -> Iterator[np.ndarray]:
        for path in frames:
            read = read_picture(path, int(cfg.max_pixels))
            if isinstance(read, Animation):
                raise ClipError(f"{path}: an animated file among the frames of a clip")
            if size and read.size != size[0]:
                raise ClipError(f"{path}: {read.size[0]}x{read.size[1]}, but the clip's first frame "
                                f"'{frames[0].name}' is {size[0][0]}x{size[0][1]}: a clip's frames must be one size")
            size.append(read.size)
            yield np.floor(read.rgb * 255 + 0.5).astype(np.uint8)

    with tqdm(total=len(frames), desc=frames[0].parent.name, unit="frame", leave=False, file=sys.stderr,
              disable=not show) as bar:
        for path, sr in zip(frames, sr_frames(lr_frames())):
            write_picture(targets[path], Picture(sr.astype(np.float32) / 255, None, False, 8, None, "RGB"),
                          str(cfg.format).lower(), int(cfg.quality), overwrite)
            bar.update(1)
    return VideoDone(len(frames), (sr.shape[1], sr.shape[0]))
