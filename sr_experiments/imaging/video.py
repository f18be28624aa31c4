"""Video files in and out (``upscale.py input=clip.mp4``), with PyAV: FFmpeg's libraries, shipped
inside its wheel (the ``video`` extra).

``open_video`` reads a file's header (``VideoInfo``: size, exact frame rate and time base, frame
count where the container states it, the audio stream) and ``read_frames`` decodes it lazily, one
RGB uint8 frame at a time with its timestamp, so a video of any length never sits in memory whole.
``write_video`` encodes frames as H.264 (libx264, ``crf``) with the source's frame rate, time base
and timestamps (exact rationals: frame count, duration and audio sync match the source), muxes the
source's audio packets in as they are, and writes atomically (``outputs.atomic_write``: a temporary
file in the target folder, renamed into place; nothing partial is left).

Containers (``OUTPUT_SUFFIX``): .mp4/.m4v -> .mp4, .mov -> .mov, .mkv -> .mkv; .webm and .avi ->
.mkv (WebM holds only VP8/VP9/AV1 video, AVI no B-frame timestamps; Matroska holds H.264 and any
audio those hold, so their audio is still copied). Audio the output container cannot hold (PCM in
MP4) is transcoded to AAC, and said in one line.

Pixel format: yuv420p, which every player decodes. An odd side (an odd input at an odd scale)
cannot be 4:2:0, and SR output is exactly scale x the input (padding or cropping a pixel would
change it), so such a video is encoded as yuv444p (x264's High 4:4:4 profile), said in one line.

Colour: frames become RGB with the matrix and range the stream is tagged with (BT.601 limited
range when untagged, FFmpeg's default), go back to YUV with the same, and the output keeps the tags.

Stage: imaging. ``av`` is imported inside the functions: commands check the extra first
(``extras.require("av", ...)``) and name it in one line when it is missing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sr_experiments.outputs import atomic_write

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm")
OUTPUT_SUFFIX = {".mp4": ".mp4", ".m4v": ".mp4", ".mov": ".mov", ".mkv": ".mkv", ".webm": ".mkv", ".avi": ".mkv"}
_NAMED_LAYOUT = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}  # FFmpeg's default layouts: MP4 needs a named one
# Audio an MP4/MOV file is copied with: what their muxers and players take (FFmpeg also muxes PCM
# into MP4 as ISO 23003-5 `ipcm`, which few players read and which needs a named channel layout).
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}
# AVColorSpace tag -> the swscale matrix name (PyAV's reformat takes the latter).
_MATRIX = {1: "itu709", 4: "fcc", 5: "itu601", 6: "itu601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}


class VideoFileError(ValueError):
    """A video that cannot be read or written: one line, the reason (the caller names the file)."""


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def video_output_path(out_dir: Path, src: Path) -> Path:
    """``out_dir/<stem>`` with the container ``src`` is written back in (``OUTPUT_SUFFIX``)."""
    return out_dir / f"{src.stem}{OUTPUT_SUFFIX[src.suffix.lower()]}"


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's header says about its first video stream and its first audio stream."""

    path: Path
    width: int
    height: int
    fps: Fraction  # average frame rate, exact (24000/1001, not 23.976)
    time_base: Fraction  # of the video stream's timestamps
    frame_count: int | None  # as the container states it; None where it does not (Matroska)
    codec: str
    audio: str | None  # the audio codec, None without audio
    colorspace: int = 2  # AVColorSpace tag (2: unspecified)
    color_range: int = 0  # AVColorRange tag (0: unspecified, 1: limited, 2: full)


class TimedFrame(NamedTuple):
    """One frame: (H, W, 3) uint8 RGB, and its timestamp and duration in ``VideoInfo.time_base``."""

    rgb: np.ndarray
    pts: int
    duration: int


def _reason(e: BaseException) -> str:
    """FFmpeg's error and its last log line (``[mp4] unsupported channel layout``), without the path."""
    reason = (getattr(e, "strerror", None) or str(e) or type(e).__name__).splitlines()[0]
    log = getattr(e, "log", None)
    if log and log[1] and log[1][2].strip():
        reason += f": [{log[1][1]}] {log[1][2].strip()}"
    return reason


def open_video(path: str | Path) -> VideoInfo:
    """The header of ``path`` (nothing decoded); ``VideoFileError`` for a file FFmpeg cannot read."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoFileError("no video stream in it (an audio-only file, or truncated or corrupt?)")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            fps = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not fps or not stream.time_base or not ctx.width:
                raise VideoFileError("no frame rate, time base or size in its header; re-mux it (ffmpeg -i IN -c copy OUT.mkv)")
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            return VideoInfo(path, ctx.width, ctx.height, Fraction(fps), Fraction(stream.time_base),
                             int(stream.frames) or None, ctx.name, audio, int(ctx.colorspace), int(ctx.color_range))
    except av.FFmpegError as e:
        raise VideoFileError(f"not a readable video ({_reason(e)}); the file is truncated or corrupt") from None


def read_frames(info: VideoInfo) -> Iterator[TimedFrame]:
    """The frames of ``info.path`` in display order, decoded one at a time as they are asked for.

    A frame without a timestamp gets its place at the frame rate; one whose timestamp does not
    advance is moved one tick on (an encoder refuses non-increasing timestamps)."""
    import av

    step = max(1, round(1 / (info.fps * info.time_base)))  # one frame, in time_base ticks
    last, index = None, 0
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg's frame threads: decoding keeps up with a fast network
            for index, frame in enumerate(container.decode(stream)):
                if (frame.width, frame.height) != (info.width, info.height):
                    raise VideoFileError(f"frame {index + 1} is {frame.width}x{frame.height}, the first "
                                         f"{info.width}x{info.height}: a size change inside a video is not supported")
                pts = frame.pts if frame.pts is not None else index * step
                pts = pts if last is None or pts > last else last + 1
                last = pts
                yield TimedFrame(frame.to_ndarray(format="rgb24"), pts, int(frame.duration or step))
    except av.FFmpegError as e:
        raise VideoFileError(f"cannot decode frame {index + 1} ({_reason(e)}); the file is truncated or corrupt") from None


def write_video(path: str | Path, frames: Iterable[TimedFrame], like: VideoInfo, crf: int = 18,
                preset: str = "medium", overwrite: bool = True, say: Callable[[str], None] | None = None) -> int:
    """Encode ``frames`` into ``path`` as H.264 with ``like``'s frame rate, time base and colour
    tags, and the audio of ``like.path``; returns the number of frames written.

    ``crf``: x264's constant rate factor (0 lossless, 18 visually lossless, 23 x264's default; lower
    is larger). ``preset``: x264's speed/size trade (ultrafast ... veryslow). ``say``: where the
    one-line notes go (audio transcoded, odd size). Written atomically, as ``outputs.atomic_write``."""
    import av

    path = Path(path)
    say = say or (lambda _line: None)
    with atomic_write(path, overwrite) as tmp:
        try:
            with av.open(str(tmp), "w") as out, av.open(str(like.path)) as src:
                return _encode(out, src, iter(frames), like, crf, preset, say)
        except av.FFmpegError as e:
            if isinstance(e, OSError):  # a full disk: atomic_write names it, and the batch stops
                raise
            raise VideoFileError(f"cannot encode {path.name} ({_reason(e)})") from None


def _encode(out: Any, src: Any, frames: Iterator[TimedFrame], like: VideoInfo, crf: int, preset: str,
            say: Callable[[str], None]) -> int:
    import av

    first = next(frames, None)
    if first is None:
        raise VideoFileError("it has no video frames")
    h, w = first.rgb.shape[:2]
    pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
    if pix_fmt != "yuv420p":
        say(f"{w}x{h} has an odd side, which 4:2:0 cannot hold: encoded as yuv444p (High 4:4:4; "
            "some hardware players play only yuv420p)")
    video = out.add_stream("libx264", rate=like.fps, options={"crf": str(int(crf)), "preset": str(preset)})
    video.width, video.height, video.pix_fmt = w, h, pix_fmt
    video.codec_context.time_base = like.time_base
    video.codec_context.colorspace, video.codec_context.color_range = like.colorspace, like.color_range
    audio = _AudioTrack(out, src, say) if src.streams.audio else None
    matrix = _MATRIX.get(like.colorspace, "itu601")
    count = 0
    for item in itertools.chain([first], frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(item.rgb), format="rgb24")
        frame = frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=like.color_range or None)
        frame.pts, frame.duration, frame.time_base = item.pts, item.duration, like.time_base
        out.mux(video.encode(frame))
        if audio is not None:
            audio.mux_until(item.pts * like.time_base)
        count += 1
    out.mux(video.encode(None))
    if audio is not None:
        audio.mux_until(None)
    return count


class _AudioTrack:
    """The source's first audio stream, muxed in step with the video (by time, so the muxer never
    holds more than a moment of either): packets copied as they are where the output container
    holds the codec, else decoded and encoded as AAC."""

    def __init__(self, out: Any, src: Any, say: Callable[[str], None]) -> None:
        self.out, self.source = out, src.streams.audio[0]
        codec, suffix = self.source.codec_context.name, Path(out.name).suffix.lower()
        try:
            if suffix in (".mp4", ".mov") and codec not in _MP4_AUDIO:
                raise ValueError(f"{codec} in {suffix}")
            self.stream = out.add_stream_from_template(self.source)
            self.transcode = False
        except ValueError:  # "'mp4' format does not support 'vorbis' codec"
            self.stream = out.add_stream("aac", rate=self.source.codec_context.sample_rate)
            layout = self.source.codec_context.layout  # "2 channels" (no order: PCM in Matroska) -> "stereo"
            unnamed = layout.name.endswith("channels")
            self.stream.layout = _NAMED_LAYOUT.get(layout.nb_channels, layout) if unnamed else layout
            self.transcode = True
            say(f"audio: {codec} cannot go into a {suffix} file: transcoded to AAC")
        self.packets = src.demux(self.source)
        self.held = None  # the first packet past the last time asked for

    def mux_until(self, until: Fraction | None) -> None:
        """Mux the audio up to time ``until`` (seconds; None: all of it, then flush the encoder)."""
        while True:
            packet = self.held or next(self.packets, None)
            self.held = None
            if packet is None:
                break
            if packet.dts is None and packet.pts is None:  # the demuxer's flush packet: no data
                if self.transcode:
                    self._mux(packet)  # drains the decoder
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if until is not None and stamp * packet.time_base > until:
                self.held = packet
                return
            self._mux(packet)
        if self.transcode:
            self.out.mux(self.stream.encode(None))

    def _mux(self, packet: Any) -> None:
        if not self.transcode:
            packet.stream = self.stream
            self.out.mux(packet)
            return
        for frame in packet.decode():
            self.out.mux(self.stream.encode(frame))
