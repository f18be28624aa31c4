"""Adversarial training (SRGANModule): discriminators, one step of each network, precision,
checkpoints with the discriminator, resume, the ESRGAN recipe from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, compose_train
from hydra.utils import instantiate

from sr_experiments.models.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator, build_discriminator
from sr_experiments.models.weights import read_weights, load_network
from sr_experiments.training.gan import SRGANModule
from sr_experiments.runs.run import train

pytestmark = pytest.mark.usefixtures("one_thread")

# experiment=esrgan_x4 (vgg128: 128x128 HR patches, x4), every network tiny, random VGG, fp32.
TINY = [
    "model.depth=1", "model.width=8", "model.growth=4", "discriminator.num_feat=4",
    "losses.percep.pretrained=false", "~losses.percep.layer_weights", "+losses.percep.layer_weights={conv1_2: 1.0}",
    "data.batch_size=2", "data.patches_per_epoch=4",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "callbacks.image_panel.num_images=1",
]  # fmt: skip
GAN = ["experiment=esrgan_x4", "data=sample", *TINY]
EXACT = ["trainer.precision=32", "model.channels_last=false"]


# --- discriminators -------------------------------------------------------------------------------


def test_vgg128_takes_128x128_and_names_keys_as_basicsr() -> None:
    torch.manual_seed(0)
    d = build_discriminator({"name": "vgg128", "num_feat": 8})
    assert isinstance(d, VGGStyleDiscriminator)
    assert d(torch.rand(3, 3, 128, 128)).shape == (3, 1)
    with pytest.raises(ValueError, match="takes 128x128 HR patches.*unet_sn"):
        d(torch.rand(1, 3, 96, 96))
    assert build_discriminator({"name": "vgg128", "num_feat": 4, "input_size": 256})(torch.rand(1, 3, 256, 256)).shape == (1, 1)
    keys = set(build_discriminator({"name": "vgg128"}).state_dict())
    assert {"conv0_0.weight", "conv0_0.bias", "conv0_1.weight", "bn0_1.running_mean", "conv4_1.weight",
            "linear1.weight", "linear2.bias"} <= keys and "conv0_1.bias" not in keys


@pytest.mark.parametrize("size", [(128, 128), (64, 64), (37, 53), (8, 8)])
def test_unet_sn_takes_any_size_with_one_logit_per_pixel(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(num_in_ch=3, num_feat=8)
    assert d(torch.rand(2, 3, *size)).shape == (2, 1, *size)
    keys = set(d.state_dict())  # torch's spectral_norm, as BasicSR: weight_orig / _u / _v
    assert {"conv0.weight", "conv1.weight_orig", "conv1.weight_u", "conv1.weight_v", "conv9.bias"} <= keys


def test_an_unknown_discriminator_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="discriminator.name='nope'.*unet_sn, vgg128"):
        build_discriminator({"name": "nope"})


# --- one step ---------------------------------------------------------------------------------------


def _module_and_data(tmp_path: Path, extra: list[str] = ()) -> tuple[SRGANModule, L.LightningDataModule]:
    cfg = compose_train([*GAN, *EXACT, *extra], tmp_path)
    module = instantiate(cfg.module, _recursive_=False)
    assert isinstance(module, SRGANModule)
    return module, instantiate(cfg.data)


def _fit(module: L.LightningModule, data: L.LightningDataModule, steps: int, precision: str = "32") -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, limit_val_batches=0,
                        enable_progress_bar=False, enable_model_summary=False, precision=precision)
    trainer.fit(module, datamodule=data)
    return trainer


def _snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_one_gan_step_updates_generator_discriminator_and_ema(tmp_path: Path) -> None:
    module, data = _module_and_data(tmp_path)
    g, d = _snapshot(module.net), _snapshot(module.net_d)
    trainer = _fit(module, data, steps=1)
    assert trainer.global_step == 1  # one iteration is one step, though two optimizers stepped
    assert any(not torch.equal(g[k], v) for k, v in module.net.state_dict().items())
    assert any(not torch.equal(d[k], v) for k, v in module.net_d.state_dict().items() if k.endswith("weight"))
    opt_g, opt_d = trainer.optimizers
    assert all(int(s["step"]) == 1 for opt in (opt_g, opt_d) for s in opt.state.values())
    assert int(module.ema_updates) == 1  # started at the initial weights, one update
    ema = module.net_ema.state_dict()
    assert any(not torch.equal(ema[k], v) for k, v in module.net.state_dict().items())


def test_gan_step_runs_under_the_precision_plugin_with_fp32_adversarial_terms(tmp_path: Path, monkeypatch) -> None:
    module, data = _module_and_data(tmp_path)
    seen: dict[str, list] = {"d_out": [], "gan": [], "backward": [], "autocast": []}
    module.net_d.register_forward_hook(lambda m, i, o: seen["d_out"].append(o.dtype))
    generator = module.gan.generator

    def spy_generator(*args):
        seen["autocast"].append(torch.is_autocast_enabled("cpu"))
        out = generator(*args)
        seen["gan"].append(out.dtype)
        return out

    monkeypatch.setattr(module.gan, "generator", spy_generator)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, limit_val_batches=0,
                        enable_progress_bar=False, enable_model_summary=False, precision="bf16-mixed")
    plugin = trainer.strategy.precision_plugin
    backward = plugin.backward

    def spy_backward(tensor, *args, **kwargs):
        seen["backward"].append(tensor.dtype)
        return backward(tensor, *args, **kwargs)

    monkeypatch.setattr(plugin, "backward", spy_backward)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2
    assert seen["autocast"] == [True, True]  # the step runs inside the plugin's bf16 autocast
    assert set(seen["d_out"]) == {torch.bfloat16}  # the discriminator in bf16 ...
    assert seen["gan"] == [torch.float32] * 2  # ... its loss in fp32
    assert seen["backward"] == [torch.float32] * 4  # generator and discriminator, through manual_backward
    assert all(torch.isfinite(p).all() for p in module.parameters())


# --- checkpoints and resume -------------------------------------------------------------------------


def test_gan_checkpoint_holds_the_discriminator_and_resumes_bit_exactly(tmp_path: Path) -> None:
    base = [*GAN, *EXACT, "scheduler=constant"]  # the first part stops at 2 of 4 steps
    ref = train(compose_train([*base, "trainer.max_steps=4"], tmp_path / "ref"))
    train(compose_train([*base, "trainer.max_steps=2"], tmp_path / "a"))
    first = tmp_path / "a" / "checkpoints" / "last.ckpt"
    saved = read_weights(first)
    assert len(saved["optimizer_states"]) == 2 and len(saved["lr_schedulers"]) == 2
    assert any(k.startswith("net_d.") for k in saved["state_dict"]) and saved["global_step"] == 2
    resumed = train(compose_train([*base, "trainer.max_steps=4", f"ckpt_path={first}"], tmp_path / "b"))
    assert resumed["steps"] == 4 and resumed["history"] == ref["history"]
    a = read_weights(tmp_path / "ref" / "checkpoints" / "last.ckpt")
    b = read_weights(tmp_path / "b" / "checkpoints" / "last.ckpt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for sa, sb in zip(a["optimizer_states"], b["optimizer_states"]):
        for pa, pb in zip(sa["state"].values(), sb["state"].values()):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # The generator of a GAN run loads like any network (its EMA), the discriminator left behind.
    net, spec = load_network(tmp_path / "b" / "checkpoints" / "last.ckpt", quiet=True)
    assert spec["name"] == "rrdbnet" and net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_gan_stage_starts_from_a_psnr_checkpoint(tmp_path: Path) -> None:
    psnr = [o for o in GAN if not o.startswith("experiment=") and "discriminator." not in o and "losses." not in o]
    train(compose_train(["model=rrdbnet", "scale=4", *psnr, *EXACT, "trainer.max_steps=2", "data.patch_size=8"], tmp_path / "psnr"))
    ckpt = tmp_path / "psnr" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match="no discriminator.*resume=false"):
        train(compose_train([*GAN, *EXACT, "trainer.max_steps=3", f"ckpt_path={ckpt}"], tmp_path / "resume"))
    done = train(compose_train([*GAN, *EXACT, "trainer.max_steps=1", f"ckpt_path={ckpt}", "resume=false"], tmp_path / "gan"))
    assert done["steps"] == 1 and done["losses"]["gan"]["type"] == "GANLoss(ragan)"


# --- the recipe, as typed -----------------------------------------------------------------------------


@pytest.mark.slow
def test_esrgan_recipe_runs_from_the_command_line_without_vgg_weights(tmp_path: Path) -> None:
    # `python train.py experiment=esrgan_x4 trainer.max_steps=5 data=sample`, with tiny networks so that
    # the suite stays fast (the full-size command is the same code path: BENCHMARKS.md times it).
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCH_HOME": str(tmp_path / "torch_home")}  # surely no VGG file
    args = ["experiment=esrgan_x4", "trainer.max_steps=5", "data=sample",
            *[o for o in TINY if not o.startswith("losses.percep.pretrained")], f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warning = [line for line in (proc.stdout + proc.stderr).splitlines() if "RANDOM VGG19" in line]
    assert len(warning) == 1 and "vgg19-dcbb9e9d.pth" in warning[0] and "https://download.pytorch.org" in warning[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["ema_decay"] == 0.999 and metrics["final"]["psnr_raw"] > 0
    assert metrics["losses"]["percep"]["vgg_weights"].startswith("random")
