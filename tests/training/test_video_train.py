"""Training video networks on clip batches: (B, T, C, H, W) steps, the loss over all frames, the
frozen-then-slower flow network, clip validation, speed calibration, EMA and exact resume.

A stand-in network (registered here, tests only) has the video interface: ``multi_frame``,
``frames_out``, ``num_frame``, and a ``spynet`` submodule."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from conftest import compose_train
from torch import nn

from sr_experiments.evaluation.video import ClipMetrics, run_clip, window_indices
from sr_experiments.models.registry import NETWORKS, SCALES, register
from sr_experiments.runs.run import train

NAME = "test_clip_standin"


class ClipStandIn(nn.Module):
    """Each frame plus its two neighbours (through a 'spynet' conv), upsampled by pixel shuffle."""

    multi_frame = True

    def __init__(self, scale: int = 4, num_feat: int = 8, frames_out: str = "all", num_frame: int = 3, **_: object):
        super().__init__()
        self.frames_out, self.num_frame, self.scale = frames_out, num_frame, scale
        self.spynet = nn.Conv2d(6, 3, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(6, num_feat, 3, padding=1), nn.ReLU(), nn.Conv2d(num_feat, 3 * scale**2, 3, padding=1))
        self.up = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        prev = torch.cat([x[:, :1], x[:, :-1]], 1)
        aligned = self.spynet(torch.cat([x, prev], 2).flatten(0, 1))
        feats = torch.cat([x.flatten(0, 1), aligned], 1)
        base = nn.functional.interpolate(x.flatten(0, 1), scale_factor=self.scale, mode="bilinear")
        out = (self.up(self.body(feats)) + base).view(b, t, c, h * self.scale, w * self.scale)
        return out[:, t // 2] if self.frames_out == "center" else out


@pytest.fixture(autouse=True)
def _standin_registered():
    """The stand-in is registered only while this file's tests run: other files (the registry's
    own tests) see exactly the shipped networks."""
    register(NAME)(ClipStandIn)
    yield
    NETWORKS.pop(NAME)
    SCALES.pop(NAME)

# experiment=video_cpu's settings, on the stand-in network and tiny clips.
FAST = ["data=video_synthetic", "scale=4", "loss=charbonnier", f"model.name={NAME}", "~model.depth", "~model.width",
        "~model.res_scale", "+model.num_feat=8", "data.num_frame=3", "data.patch_size=8",
        "data.batch_size=2", "data.patches_per_epoch=8", "data.val_max_frames=3", "logger=none",
        "trainer.precision=32", "model.channels_last=false",
        "module._target_=sr_experiments.training.video.VideoSRLitModule", "+module.charbonnier_eps=1e-6",
        "+module.fix_flow_steps=0", "+module.flow_lr_mul=0.125"]


def test_window_indices_reflection_circle_as_basicsr():
    assert window_indices(0, 10, 5) == [4, 3, 0, 1, 2]  # BasicSR generate_frame_indices docstring
    assert window_indices(9, 10, 5) == [7, 8, 9, 6, 5]
    assert window_indices(4, 10, 5) == [2, 3, 4, 5, 6]


def test_clip_metrics_average_frames_then_clips():
    m = ClipMetrics("y", 0)
    gt = torch.rand(4, 3, 16, 16)
    noisy = (gt + 0.05 * torch.randn_like(gt)).clamp(0, 1)
    m.update(noisy, gt, 0)
    m.update(noisy[:1], gt[:1], 1)  # a one-frame clip weighs as much as a four-frame one
    idx, p, _ = m.per_clip()
    assert idx.tolist() == [0, 1]
    assert float(m.compute()["psnr"]) == pytest.approx(float(p.mean()))
    assert int(m.compute()["images"]) == 2


def test_run_clip_modes():
    net = ClipStandIn(scale=2).eval()
    lq = torch.rand(5, 3, 8, 8)
    assert run_clip(net, lq).shape == (5, 3, 16, 16)
    net.frames_out = "center"
    out = run_clip(net, lq)
    assert out.shape == (5, 3, 16, 16)
    assert torch.allclose(out[2], net(lq[1:4][None])[0])


@pytest.mark.slow
def test_training_steps_freeze_flow_then_train_it_slower(tmp_path: Path):
    cfg = compose_train([*FAST, "trainer.max_steps=4", "module.fix_flow_steps=2", "lr=1e-3"], tmp_path)
    import lightning as L
    from hydra.utils import instantiate

    L.seed_everything(cfg.seed)  # as train() does before building the module: the same initial weights
    module = instantiate(cfg.module, _recursive_=False)
    spy0 = module.net.spynet.weight.detach().clone()
    summary = train(cfg)
    assert summary["steps"] == 4 and summary["final"]["psnr"] > 10
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["bicubic"]["images"] == 4  # four validation clips, clip-averaged
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert groups[1]["initial_lr"] == pytest.approx(groups[0]["initial_lr"] * 0.125)
    assert not torch.equal(ckpt["state_dict"]["net.spynet.weight"], spy0)  # trained after step 2
    # Frozen for the whole run: SpyNet stays at its initial weights.
    cfg2 = compose_train([*FAST, "trainer.max_steps=2", "module.fix_flow_steps=10", f"seed={cfg.seed}"], tmp_path / "frozen")
    train(cfg2)
    ckpt2 = torch.load(tmp_path / "frozen" / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.equal(ckpt2["state_dict"]["net.spynet.weight"], spy0)


@pytest.mark.slow
def test_center_frame_network_and_ema_and_speed_calibration(tmp_path: Path):
    cfg = compose_train([*FAST, "trainer.max_steps=2", "+model.frames_out=center", "model.ema_decay=0.9",
                         "trainer.precision=auto"], tmp_path)
    summary = train(cfg)
    assert summary["final"]["psnr_raw"] > 10 and summary["steps"] == 2
    assert "frames" in json.dumps(summary["speed_choice"]) or summary["precision"]


def test_single_image_network_refused_in_one_line(tmp_path: Path):
    cfg = compose_train(["data=video_synthetic", "scale=4", "module._target_=sr_experiments.training.video.VideoSRLitModule", "trainer.max_steps=1", "logger=none"], tmp_path)
    with pytest.raises(ValueError, match="single-image network") as e:
        train(cfg)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_resume_is_exact(tmp_path: Path):
    """Stopped after epoch 1 (same 4-step schedule), resumed to step 4: the uninterrupted run's
    weights, with the flow network unfrozen at step 2 in both."""
    common = [*FAST, "trainer.max_steps=4", "module.fix_flow_steps=2", "data.patches_per_epoch=4"]
    train(compose_train(common, tmp_path / "a"))
    train(compose_train([*common, "trainer.max_epochs=1"], tmp_path / "b"))
    mid = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert torch.load(mid, weights_only=True)["global_step"] == 2
    train(compose_train([*common, f"ckpt_path={mid}"], tmp_path / "b"))
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_video_cpu_experiment_runs_basicvsr_tiny(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """experiment=video_cpu on a fresh machine: the real small BasicVSR, its SpyNet pre-trained on the
    synthetic clips' true motion first (2 steps here), said in the log, metrics.json and checkpoint."""
    cfg = compose_train(["experiment=video_cpu", "trainer.max_steps=2", "data.patches_per_epoch=4",
                         "data.patch_size=16", "data.val_max_frames=2", "logger=none",
                         "module.spynet_pretrain_steps=2"], tmp_path)
    assert cfg.model.name == "basicvsr" and cfg.module._target_.endswith("VideoSRLitModule")
    with caplog.at_level(logging.INFO):
        summary = train(cfg)
    assert summary["steps"] == 2 and summary["final"]["psnr"] > 10
    line = summary["spynet"]
    assert line.startswith("spynet: pre-trained 2 steps on the clips' true motion, EPE ") and line in caplog.text
    assert json.loads((tmp_path / "metrics.json").read_text())["spynet"] == line
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["sr_spynet"] == line and ckpt["hyper_parameters"]["spynet_pretrain_steps"] == 2


@pytest.mark.slow
def test_spynet_file_is_used_as_given_not_pretrained(tmp_path: Path):
    """model.spynet_pretrained=FILE: the file's flow network, no pre-training, and the run says so."""
    from sr_experiments.models.spynet import SpyNet

    torch.manual_seed(3)
    weights = {k: v for k, v in SpyNet().state_dict().items() if k not in ("mean", "std")}
    path = tmp_path / "spynet.pth"
    torch.save({"params": weights}, path)
    cfg = compose_train(["experiment=video_cpu", "trainer.max_steps=1", "data.patches_per_epoch=4",
                         "data.patch_size=16", "data.val_max_frames=2", "logger=none",
                         "module.spynet_pretrain_steps=5", "module.fix_flow_steps=10",
                         f"model.spynet_pretrained={path}"], tmp_path / "run")
    summary = train(cfg)
    assert summary["spynet"] == f"spynet: from {path}"
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    w = "basic_module.2.basic_module.0.weight"
    assert torch.equal(state[f"net.spynet.{w}"], weights[w])  # frozen all run: the file's weights exactly


def test_a_video_run_records_the_video_protocol(tmp_path: Path):
    """metrics.json's provenance says what validation measured: Y, no border, frames then clips."""
    summary = train(compose_train([*FAST, "trainer.max_steps=1"], tmp_path))
    protocol = summary["provenance"]["protocol"]
    assert protocol["border_crop"] == 0 and protocol["channel"].startswith("Y")
    assert "mean over a clip, then over clips" in protocol["averaging"]
    assert json.loads((tmp_path / "metrics.json").read_text())["provenance"]["protocol"]["border_crop"] == 0


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path: Path):
    """The real small BasicVSR on in-memory REDS-layout clips, killed (SIGKILL) after its first
    checkpoint and resumed with ckpt_path= alone: the uninterrupted run's weights, the flow network
    unfrozen at step 3 in both. 8 steps per epoch, last.ckpt every 4: resumes mid-epoch, then
    crosses an epoch."""
    from clip_data import make_reds
    from stream_data import kill_9_resume_matches_uninterrupted

    reds = make_reds(tmp_path / "REDS")
    args = ["experiment=video_cpu", "data=reds", f"data.train.root={reds}", f"data.val.root={reds}", "data.num_frame=3",
            "data.patch_size=8", "data.batch_size=2", "data.patches_per_epoch=16", "data.val_max_frames=2",
            "model.num_feat=8", "model.num_block=1", "module.fix_flow_steps=3", "trainer.precision=32",
            "model.channels_last=false", "trainer.val_check_interval=4", "trainer.log_every_n_steps=2",
            "trainer.enable_progress_bar=false", "module.spynet_pretrain_steps=0"]
    kill_9_resume_matches_uninterrupted(args, tmp_path, max_steps=12)
