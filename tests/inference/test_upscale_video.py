"""upscale.py on video files: frame count, size x scale, exact frame rate and the audio stream come
back; a video network streamed in chunks matches its whole-clip run; an image network runs frame
by frame; bad videos and bad outputs are refused in one line naming the file.

The clips are made here with PyAV itself (H.264 + AAC in MP4, VP9 + Opus in WebM, H.264 + PCM in
Matroska): small (32x24, 12 frames at 24000/1001 fps), so each test takes seconds."""

from __future__ import annotations

import sys
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from test_upscale import save_checkpoint

from sr_experiments.imaging.video import TimedFrame, open_video, read_frames, write_video
from sr_experiments.inference.upscale import cli
from sr_experiments.methods.clips import ClipForward, run_clip, stream_clip
from sr_experiments.models import build_network

av = pytest.importorskip("av")  # the video extra (in dev)
pytestmark = pytest.mark.usefixtures("one_thread")

FPS = Fraction(24000, 1001)
BASICVSR_TINY = {"name": "basicvsr", "scale": 4, "num_feat": 16, "num_block": 3}  # conf/model/basicvsr_tiny.yaml
EDVR_TINY = {"name": "edvr_m", "scale": 4, "num_feat": 16, "num_frame": 5, "deformable_groups": 4,
             "num_extract_block": 2, "num_reconstruct_block": 3, "with_tsa": True}  # conf/model/edvr_tiny.yaml
IMAGE_NET = {"name": "edsr", "scale": 2, "depth": 2, "width": 8}


def camera_frames(n: int = 12, size: tuple[int, int] = (32, 24)) -> np.ndarray:
    """(n, h, w, 3) uint8: a camera panning over a photo, a pixel per frame."""
    w, h = size
    photo = skdata.astronaut()[100:300:4, 100:300:4]  # 50x50
    return np.stack([photo[i // 2 : i // 2 + h, i : i + w] for i in range(n)])


def make_clip(path: Path, frames: np.ndarray, codec: str = "libx264", audio: str | None = "aac",
              fps: Fraction = FPS) -> Path:
    """``frames`` encoded at ``fps`` with half a second of a 440 Hz tone (``audio`` codec, or none)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv444p" if frames.shape[2] % 2 else "yuv420p"
        sound = out.add_stream(audio, rate=48000) if audio else None
        for rgb in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            step = 960 if audio == "libopus" else 1024
            for i in range(0, 24000, step):
                t = np.arange(i, i + step) / 48000
                tone = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], 2, 0)
                frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 48000, i
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def decode(path: Path) -> np.ndarray:
    return np.stack([f.rgb for f in read_frames(open_video(path))])


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def run(args: list[str]) -> int:
    return cli([*args, "progress=false"])


def test_bicubic_round_trip_keeps_frames_size_fps_and_audio(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", camera_frames())
    assert run(["model=bicubic", "scale=2", f"input={src}", f"output={tmp_path / 'out'}"]) == 0
    out, info_in = tmp_path / "out" / "clip.mp4", open_video(src)
    info = open_video(out)
    assert (info.width, info.height) == (64, 48) and info.codec == "h264"
    assert info.fps == FPS == info_in.fps  # exact: 24000/1001, not 23.976
    frames = decode(out)
    assert len(frames) == len(decode(src)) == 12
    assert info.audio == "aac" and audio_packets(out) == audio_packets(src)  # remuxed, not re-encoded
    with av.open(str(src)) as a, av.open(str(out)) as b:
        d_in = float(a.streams.video[0].duration * a.streams.video[0].time_base)
        d_out = float(b.streams.video[0].duration * b.streams.video[0].time_base)
    assert d_out == pytest.approx(d_in, abs=1e-3)
    # The pixels are the bicubic upscale of the decoded input, through one more H.264 round trip.
    lr = torch.from_numpy(decode(src)).permute(0, 3, 1, 2).float() / 255
    ref = build_network({"name": "bicubic", "scale": 2})(lr).clamp(0, 1).mul(255).permute(0, 2, 3, 1).numpy()
    assert np.abs(frames.astype(float) - ref).mean() < 3


def _streamed(net: torch.nn.Module, lq: torch.Tensor, chunk: int, context: int) -> torch.Tensor:
    return torch.stack(list(stream_clip(partial(run_clip, net), iter(lq), chunk, context)))


def test_chunks_with_context_match_the_whole_clip_run() -> None:
    lq = torch.from_numpy(camera_frames(8)).permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)
    edvr = build_network(EDVR_TINY).eval()  # a 5-frame window: 2 frames each side are all it sees
    assert torch.allclose(_streamed(edvr, lq, chunk=3, context=2), run_clip(edvr, lq), atol=1e-4)  # float reordering
    # Its pyramid takes sides that are multiples of 4: any frame or tile is padded, the output cropped.
    assert ClipForward(edvr)(torch.rand(3, 3, 22, 30)).shape == (3, 3, 88, 120)
    basicvsr = build_network(BASICVSR_TINY).eval()
    whole = run_clip(basicvsr, lq)
    assert torch.allclose(_streamed(basicvsr, lq, chunk=4, context=7), whole, atol=1e-5)  # each chunk sees it all
    # A recurrent network carries information from any distance: 2 frames of context leave a
    # difference under half an 8-bit level (measured: 0.09 at most, this random-init preset), and
    # none at all is worse (0.73).
    near, cut = ((_streamed(basicvsr, lq, chunk=4, context=c) - whole).abs().max() * 255 for c in (2, 0))
    assert near < 0.5 and cut > near


def test_video_network_round_trip_in_chunks(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_network(BASICVSR_TINY).eval(), BASICVSR_TINY, tmp_path / "basicvsr.ckpt")
    src = make_clip(tmp_path / "clip.mkv", camera_frames(), audio="pcm_s16le")
    outs = {}
    for name, chunk, tile in (("whole", 100, "0"), ("chunks", 5, "auto"), ("tiles", 100, "16")):
        assert run([f"ckpt_path={ckpt}", f"input={src}", f"output={tmp_path / name}", f"video_chunk={chunk}",
                    "video_overlap=11", "video_crf=0", f"tile={tile}", "tile_overlap=8"]) == 0
        info = open_video(tmp_path / name / "clip.mkv")
        assert (info.width, info.height, info.audio) == (128, 96, "pcm_s16le")
        assert audio_packets(tmp_path / name / "clip.mkv") == audio_packets(src)
        outs[name] = decode(tmp_path / name / "clip.mkv").astype(int)
    err = capsys.readouterr().err
    assert "chunks of 5 frames with 11 of context" in err and "tile 16 (set by tile=16)" in err
    assert len(outs["whole"]) == 12 and outs["whole"].shape[1:] == (96, 128, 3)
    assert np.abs(outs["whole"] - outs["chunks"]).max() <= 2  # the same SR frames (crf=0: 4:2:0 rounding only)
    # Spatial tiles over the whole chunk (16 LR px, 8 of overlap: 2 x 3 tiles of a 32x24 frame): the
    # flow and the recurrence see less context near a seam, so close, not equal.
    assert outs["tiles"].shape == outs["whole"].shape
    assert 0 < np.abs(outs["whole"] - outs["tiles"]).mean() < 0.5  # measured 0.017 (this random-init preset)


def test_a_video_network_takes_each_folder_of_frames_as_one_clip(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    net = build_network(BASICVSR_TINY).eval()
    ckpt = save_checkpoint(net, BASICVSR_TINY, tmp_path / "basicvsr.ckpt")
    frames, folder = camera_frames(n=8), tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames):  # numbered as REDS and Vid4 number them
        Image.fromarray(f).save(folder / f"{i + 1:08d}.png")
    args = [f"ckpt_path={ckpt}", "precision=32", "channels_last=false", "tile=0"]
    assert run([*args, f"input={folder}", f"output={tmp_path / 'out'}", "video_chunk=3", "video_overlap=8"]) == 0
    assert "folders of frames (a clip each) in chunks of 3 frames" in capsys.readouterr().err
    out = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{i + 1:08d}.png")) for i in range(8)]).astype(int)
    lq = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        whole = run_clip(net, lq).clamp(0, 1).mul(255).add(0.5).floor().permute(0, 2, 3, 1).numpy()
        alone = net(lq[3:4][None])[0, 0].clamp(0, 1).mul(255).add(0.5).floor().permute(1, 2, 0).numpy()
    assert out.shape == (8, 96, 128, 3) and np.abs(out - whole).max() <= 1  # the clip, run as one (in chunks)
    assert np.abs(out[3] - alone).mean() > 0.1  # not each frame alone: the recurrence saw its neighbours

    (folder / "00000005.png").unlink()  # a gap: refused in one line before anything runs
    assert run([*args, f"input={folder}", f"output={tmp_path / 'gap'}"]) == 2
    assert "frame(s) 5..5 missing before '00000006.png'" in capsys.readouterr().err
    Image.fromarray(frames[0][:20]).save(folder / "00000005.png")  # a frame of another size: named
    assert run([*args, f"input={folder}", f"output={tmp_path / 'sizes'}"]) == 1
    assert "00000005.png: 32x20, but the clip's first frame '00000001.png' is 32x24" in capsys.readouterr().err


def test_image_network_runs_frame_by_frame(tmp_path: Path, monkeypatch) -> None:
    import sr_experiments.inference.upscale as up

    torch.manual_seed(0)
    net = build_network(IMAGE_NET).eval()
    ckpt = save_checkpoint(net, IMAGE_NET, tmp_path / "net.ckpt")
    src = make_clip(tmp_path / "clip.mov", camera_frames(), audio=None)
    calls = []
    real = up.upscale_picture
    monkeypatch.setattr(up, "upscale_picture", lambda *a, **k: calls.append(a[1].size) or real(*a, **k))
    assert run([f"ckpt_path={ckpt}", "precision=32", f"input={src}", f"output={tmp_path / 'out'}", "video_crf=0"]) == 0
    assert calls == [(32, 24)] * 12  # one call per frame
    out = decode(tmp_path / "out" / "clip.mov").astype(float)
    lr = torch.from_numpy(decode(src)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():  # as upscale.py runs a 24-row image: 16 rows of edge context each side, cut
        padded = torch.nn.functional.pad(lr, (0, 0, 16, 16), mode="replicate")
        ref = net(padded)[:, :, 32:-32].clamp(0, 1).mul(255).permute(0, 2, 3, 1).numpy()
    assert out.shape == ref.shape == (12, 48, 64, 3) and open_video(tmp_path / "out" / "clip.mov").audio is None
    luma = np.array([0.299, 0.587, 0.114])  # 4:2:0 halves the chroma of a random network's noise-like output
    assert np.abs(out @ luma - ref @ luma).mean() < 2  # measured 1.3


def test_folder_of_images_and_a_webm(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    frames = camera_frames(n=6)
    for i, f in enumerate(frames[:3]):
        Image.fromarray(f).save(folder / f"frame_{i:03d}.png")
    make_clip(folder / "clip.webm", frames, codec="libvpx-vp9", audio="libopus", fps=Fraction(25))
    assert run(["model=bicubic", "scale=2", f"input={folder}", f"output={tmp_path / 'out'}"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["clip.mkv", "frame_000.png", "frame_001.png", "frame_002.png"]  # WebM holds no H.264
    info = open_video(tmp_path / "out" / "clip.mkv")
    assert (info.width, info.height, info.audio, info.fps) == (64, 48, "opus", 25)
    assert len(decode(tmp_path / "out" / "clip.mkv")) == 6
    assert Image.open(tmp_path / "out" / "frame_000.png").size == (64, 48)


def test_odd_sizes_are_encoded_444_not_padded(tmp_path: Path, capsys) -> None:
    src = make_clip(tmp_path / "odd.mkv", camera_frames(n=4, size=(11, 9)), audio=None)
    assert run(["model=bicubic", "scale=3", f"input={src}", f"output={tmp_path / 'out'}"]) == 0
    assert "33x27 has an odd side" in capsys.readouterr().err
    with av.open(str(tmp_path / "out" / "odd.mkv")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height, s.codec_context.pix_fmt) == (33, 27, "yuv444p")
    assert len(decode(tmp_path / "out" / "odd.mkv")) == 4


def test_audio_the_container_cannot_hold_is_transcoded_and_said(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "pcm.mkv", camera_frames(n=4), audio="pcm_s16le")
    info, notes = open_video(src), []
    frames = (TimedFrame(f.rgb, f.pts, f.duration) for f in read_frames(info))
    assert write_video(tmp_path / "out.mp4", frames, info, say=notes.append) == 4
    assert notes == ["audio: pcm_s16le cannot go into a .mp4 file: transcoded to AAC"]  # MP4 players take AAC
    assert open_video(tmp_path / "out.mp4").audio == "aac"


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_a_corrupt_video_is_one_line_naming_it_and_the_batch_goes_on(tmp_path: Path, capsys, kind: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = make_clip(tmp_path / "good.mp4", camera_frames(n=4))
    data = b"\x00\x00\x00\x18ftypmp42 not a video at all" * 40 if kind == "garbage" else good.read_bytes()[: good.stat().st_size // 3]
    (folder / "bad.mp4").write_bytes(data)
    Image.fromarray(camera_frames(n=1)[0]).save(folder / "photo.png")
    assert run(["model=bicubic", f"input={folder}", f"output={tmp_path / 'out'}"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "bad.mp4" in line]
    assert len(lines) == 1 and lines[0].startswith(f"upscale: {folder / 'bad.mp4'}: ") and lines[0].endswith("(skipped)")
    assert "corrupt" in lines[0] and "Traceback" not in lines[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.png"]  # no partial video left


def test_output_onto_the_input_or_an_existing_file_is_refused_before_computing(tmp_path: Path, capsys) -> None:
    src = make_clip(tmp_path / "clip.mp4", camera_frames(n=3), audio=None)
    before = src.read_bytes()
    assert run(["model=bicubic", f"input={src}", f"output={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is the input" in err and str(src) in err, err
    assert src.read_bytes() == before
    assert run(["model=bicubic", f"input={src}", f"output={tmp_path / 'out'}"]) == 0
    written = (tmp_path / "out" / "clip.mp4").read_bytes()
    assert run(["model=bicubic", f"input={src}", f"output={tmp_path / 'out'}", "scale=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "already exists" in err[-1] and "overwrite=true" in err[-1]
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == written
    assert run(["model=bicubic", f"input={src}", f"output={tmp_path / 'out'}", "scale=3", "overwrite=true"]) == 0
    assert open_video(tmp_path / "out" / "clip.mp4").width == 96


def test_without_pyav_a_video_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    src = make_clip(tmp_path / "clip.mp4", camera_frames(n=2), audio=None)
    monkeypatch.setitem(sys.modules, "av", None)  # import av halted
    assert run(["model=bicubic", f"input={src}", f"output={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'sr-experiments[video]'" in err, err
