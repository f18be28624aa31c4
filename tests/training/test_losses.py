"""Composable losses: pixel, VGG perceptual (local weights only, never a download), adversarial;
a weighted sum configured in Hydra, each term logged."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
from conftest import FAST, compose_train

from sr_experiments.runs.config_schema import ConfigError, validate_train_config
from sr_experiments.training.losses import (
    GANLoss,
    LOSSES,
    PerceptualLoss,
    PerceptualWeightsMissing,
    VGG19_URL,
    build_losses,
)
from sr_experiments.runs.run import train

pytestmark = pytest.mark.usefixtures("one_thread")

REAL_ESRGAN_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


def _images(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, size, size, generator=g), torch.rand(2, 3, size, size, generator=g)


@pytest.mark.parametrize("name", list(LOSSES))
def test_pixel_terms_are_zero_for_identical_images_and_positive_otherwise(name: str) -> None:
    x, y = _images()
    term = build_losses({"t": {"type": name, "weight": 1.0}}).terms["t"]
    # Charbonnier's minimum is eps (sqrt(0 + eps^2)), by definition; the others are 0.
    floor = 1e-3 if name == "charbonnier" else 0.0
    assert term(x, x).item() == pytest.approx(floor, abs=1e-7)
    assert term(x, y).item() > floor + 0.01


@pytest.fixture(scope="module")
def perceptual() -> PerceptualLoss:
    return PerceptualLoss(REAL_ESRGAN_LAYERS, pretrained=False)  # random weights: no file, no download


def test_perceptual_term_is_zero_for_identical_images_and_positive_otherwise(perceptual: PerceptualLoss) -> None:
    x, y = _images()
    assert perceptual(x, x).item() == 0.0
    assert perceptual(x, y).item() > 0
    x.requires_grad_(True)
    perceptual(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # a gradient for the generator
    assert not any(True for _ in perceptual.parameters())  # the VGG is nobody's parameter


def test_perceptual_features_are_taken_before_the_activation(perceptual: PerceptualLoss) -> None:
    feats = perceptual.vgg(_images()[0])
    assert set(feats) == set(REAL_ESRGAN_LAYERS)
    assert all(f.min() < 0 for f in feats.values())  # conv outputs: a ReLU's would be >= 0
    assert perceptual.vgg.names[-1] == "conv5_4"  # truncated after the deepest layer used
    cut = PerceptualLoss({**REAL_ESRGAN_LAYERS, "conv4_4": 0, "conv5_4": 0}, pretrained=False)
    assert cut.vgg.names[-1] == "conv3_4" and set(cut.layer_weights) == {"conv1_2", "conv2_2", "conv3_4"}


def test_perceptual_loads_local_imagenet_weights(tmp_path: Path) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(3)
    features = make_layers(cfgs["E"])
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()} | {"classifier.0.weight": torch.zeros(1)}, path)
    loss = PerceptualLoss({"conv5_4": 1.0}, pretrained=True, weights_path=str(path), require_weights=True)
    assert loss.vgg.weights == str(path)
    assert torch.equal(loss.vgg.body[0].weight, features[0].weight)
    wrong = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="other.pth is not torchvision's VGG19 weights"):
        PerceptualLoss({"conv5_4": 1.0}, weights_path=str(wrong))


def test_missing_vgg_weights_name_the_file_and_url_or_warn_and_use_random(tmp_path: Path, caplog) -> None:
    missing = tmp_path / "nowhere" / "vgg19.pth"
    with pytest.raises(PerceptualWeightsMissing) as err:
        build_losses({"percep": {"type": "perceptual", "weights_path": str(missing), "require_weights": True}})
    message = str(err.value)
    assert "\n" not in message and str(missing) in message and VGG19_URL in message and "losses.percep" in message
    with caplog.at_level(logging.WARNING):
        loss = build_losses({"percep": {"type": "perceptual", "weights_path": str(missing)}})
    assert "RANDOM" in caplog.text and str(missing) in caplog.text
    assert loss.describe()["percep"]["vgg_weights"].startswith("random")


@pytest.mark.parametrize("gan_type", ["vanilla", "lsgan", "hinge", "ragan"])
def test_gan_losses_reward_fooling_and_telling_apart_in_fp32(gan_type: str) -> None:
    gan = GANLoss(gan_type)
    hi, lo = (1.0, 0.0) if gan_type == "lsgan" else (3.0, -3.0)  # LSGAN regresses to the labels 1 / 0
    sure_real, sure_fake = torch.full((4, 1), hi), torch.full((4, 1), lo)
    unsure = torch.full((4, 1), (hi + lo) / 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # Generator: lower when D calls its output real (RaGAN: real than the real images).
        fooled = gan.generator(sure_real, sure_fake if gan_type == "ragan" else None)
        caught = gan.generator(sure_fake, sure_real if gan_type == "ragan" else None)
        # Discriminator: lower when it tells them apart.
        right = sum(gan.discriminator(sure_real.bfloat16(), sure_fake.bfloat16()))
        wrong = sum(gan.discriminator(sure_fake, sure_real))
        unsure_d = sum(gan.discriminator(unsure, unsure))
    assert fooled.dtype == caught.dtype == right.dtype == torch.float32
    assert fooled < caught and right < unsure_d < wrong
    assert right >= 0 or gan_type == "hinge"


def test_weighted_sum_of_named_terms() -> None:
    x, y = _images()
    loss = build_losses({"pixel": {"type": "l1", "weight": 0.5}, "mse": {"type": "mse", "weight": 2.0},
                         "off": {"type": "charbonnier", "weight": 0}, "gan": {"type": "gan", "weight": 5e-3, "gan_type": "ragan"}})
    terms = loss(x, y)
    assert set(terms) == {"pixel", "mse"}  # weight 0 leaves a term out; the adversarial one is apart
    assert terms["pixel"] == pytest.approx(0.5 * (x - y).abs().mean().item())
    assert terms["mse"] == pytest.approx(2.0 * (x - y).pow(2).mean().item())
    assert loss.adversarial[0] == "gan" and loss.adversarial[1] == 5e-3
    single = build_losses(None, "mse")  # loss=mse, as ever
    assert set(single(x, y)) == {"pixel"} and single(x, y)["pixel"] == pytest.approx((x - y).pow(2).mean().item())
    with pytest.raises(ValueError, match=r"losses.x.type='nope'"):
        build_losses({"x": {"type": "nope"}})
    custom = build_losses({"tv": {"_target_": "torch.nn.SmoothL1Loss", "weight": 1.0}})  # anything Hydra builds
    assert custom(x, x)["tv"] == 0


def test_losses_config_group_composes_and_is_validated(tmp_path: Path) -> None:
    cfg = compose_train(["losses=esrgan"], tmp_path)
    assert cfg.losses.pixel.weight == 1e-2 and cfg.losses.pixel.type == "l1" and cfg.losses.gan.gan_type == "ragan"
    assert dict(cfg.losses.percep.layer_weights) == {"conv5_4": 1.0}
    assert compose_train(["losses=realesrgan", "loss=mse"], tmp_path).losses.pixel.type == "mse"
    assert dict(compose_train(["losses=realesrgan"], tmp_path).losses.percep.layer_weights) == REAL_ESRGAN_LAYERS
    with pytest.raises(ConfigError, match=r"^losses.pixel.weight="):
        validate_train_config(compose_train(["losses=esrgan", "losses.pixel.weight=-1"], tmp_path))
    with pytest.raises(ConfigError, match=r"^model.ema_decay="):
        validate_train_config(compose_train(["model.ema_decay=1.5"], tmp_path))
    with pytest.raises(ValueError, match="adversarial: it needs a discriminator"):  # one line, before any VGG is built
        train(compose_train([*FAST, "losses=esrgan"], tmp_path / "run"))


def test_each_term_is_logged_during_training(tmp_path: Path) -> None:
    overrides = [*FAST, "trainer.max_steps=2", "trainer.log_every_n_steps=1", "model.depth=1", "model.width=8",
                 "losses=perceptual", "losses.percep.pretrained=false", "~losses.percep.layer_weights",
                 "+losses.percep.layer_weights={conv1_2: 1.0}"]
    summary = train(compose_train(overrides, tmp_path))
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert rows and all(float(r["train/loss_pixel"]) > 0 and float(r["train/loss_percep"]) > 0 for r in rows)
    for r in rows:
        assert float(r["train/loss"]) == pytest.approx(float(r["train/loss_pixel"]) + float(r["train/loss_percep"]), rel=1e-5)
    assert summary["losses"]["percep"]["vgg_weights"] == "random"
