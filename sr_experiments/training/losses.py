"""Training losses: a pixel loss by name (``loss=l1|mse|charbonnier``), or a weighted sum of named
terms (``losses=esrgan``, ``sr_experiments/conf/losses/``): pixel, VGG perceptual, adversarial.

A ``losses`` config maps a term's name (logged as ``train/loss_<name>``) to its settings::

    losses:
      pixel:  {type: l1, weight: 1e-2}
      percep: {type: perceptual, weight: 1.0, layer_weights: {conv5_4: 1.0}}
      gan:    {type: gan, weight: 5e-3, gan_type: ragan}

``type`` names a term registered with ``@register_loss`` (or a term gives ``_target_``: any
callable ``(sr, gt) -> scalar tensor``, instantiated by Hydra with the other keys); ``weight``
multiplies it (0 leaves the term out). Every term runs in fp32 whatever the autocast of the network.
The adversarial term (``type: gan``) needs the discriminator of ``SRGANModule``
(``sr_experiments/training/gan.py``), which computes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)


class CharbonnierLoss(nn.Module):
    """``mean(sqrt((x - y)^2 + eps^2))``: a differentiable L1 (LapSRN); ``eps`` for identical images."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((pred - target).pow(2) + self.eps**2).mean()


LOSSES = {"l1": nn.L1Loss, "mse": nn.MSELoss, "charbonnier": CharbonnierLoss}


def build_loss(name: str, charbonnier_eps: float = 1e-3) -> nn.Module:
    """A pixel loss by name: ``l1``, ``mse`` or ``charbonnier``."""
    key = str(name).lower()
    if key not in LOSSES:
        raise ValueError(f"loss={name!r} is not known; choose one of {', '.join(LOSSES)}")
    return CharbonnierLoss(charbonnier_eps) if key == "charbonnier" else LOSSES[key]()


# --- the term registry -----------------------------------------------------------------------------

LOSS_TERMS: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Registers a loss term factory under ``name`` (the ``type`` of a ``losses`` entry)."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in LOSS_TERMS:
            raise ValueError(f"loss term {name!r} is already registered")
        LOSS_TERMS[name] = factory
        return factory

    return decorator


for _name in LOSSES:  # the pixel losses are terms too
    register_loss(_name)(lambda eps=1e-3, _n=_name: build_loss(_n, eps))


# --- perceptual: VGG19 features (ESRGAN, Real-ESRGAN; BasicSR's PerceptualLoss) --------------------

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_NAMES = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualWeightsMissing(FileNotFoundError):
    """The ImageNet VGG19 weights are not on this machine; the message says where to put them."""


def default_vgg19_path() -> Path:
    """torchvision's cache file for its ImageNet VGG19 (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def missing_weights_message(path: Path, key: str = "losses.<term>") -> str:
    return (f"VGG19 ImageNet weights for the perceptual loss not found at {path}: download {VGG19_URL} "
            f"and put it there (or pass {key}.weights_path=FILE)")


class VGGFeatures(nn.Module):
    """torchvision's VGG19 ``features`` up to the deepest requested layer, returning the requested
    layers' outputs by BasicSR name (``conv5_4``: the convolution's output, before its ReLU).

    The weights are frozen (``requires_grad=False``); ``PerceptualLoss`` keeps this module outside
    the LightningModule's tree, so no optimizer, EMA, DDP buffer broadcast or checkpoint (80 MB each
    otherwise) sees it. ``pretrained``: load ImageNet weights from ``weights_path``
    (default: torchvision's cache file); otherwise the torchvision initialisation from a fixed seed
    (tests; a run without the file, where allowed), so the global RNG is untouched.
    """

    def __init__(self, layers: list[str], pretrained: bool = True, weights_path: str | None = None,
                 require_weights: bool = False, config_key: str = "losses.<term>") -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        unknown = [name for name in layers if name not in VGG19_NAMES]
        if unknown:
            raise ValueError(f"perceptual layer_weights: {', '.join(unknown)} not in VGG19 (e.g. conv1_2, conv5_4)")
        last = max(VGG19_NAMES.index(name) for name in layers)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            features = make_layers(cfgs["E"])
            for m in features.modules():  # torchvision's VGG init
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.constant_(m.bias, 0)
        self.weights = "random"
        if pretrained:
            path = Path(weights_path).expanduser() if weights_path else default_vgg19_path()
            if path.is_file():
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                    features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
                except Exception as e:  # not torchvision's VGG19 file: name it, in one line
                    raise ValueError(f"{path} is not torchvision's VGG19 weights ({VGG19_FILE}, {VGG19_URL}): "
                                     f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
                self.weights = str(path)
            elif require_weights:
                raise PerceptualWeightsMissing(missing_weights_message(path, config_key))
            else:
                log.warning("%s. This run's perceptual loss uses RANDOM VGG19 weights, not the paper's loss "
                            "(%s.require_weights=true makes this an error)", missing_weights_message(path, config_key), config_key)
                self.weights = f"random ({path} not found)"
        self.layers = list(layers)
        self.names = VGG19_NAMES[: last + 1]
        self.body = nn.Sequential(*list(features)[: last + 1])
        for m in self.body.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the conv outputs returned must not be overwritten by the next ReLU
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # always eval: a fixed feature extractor

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out = {}
        for name, layer in zip(self.names, self.body):
            x = layer(x)
            if name in self.layers:
                out[name] = x
        return out


@register_loss("perceptual")
class PerceptualLoss(nn.Module):
    """``sum_l w_l * L1(VGG_l(sr), VGG_l(gt))`` over VGG19 layers (BasicSR's ``PerceptualLoss``:
    ImageNet-normalised input in [0, 1], features before activation, L1 criterion).

    ESRGAN: ``{conv5_4: 1}``; Real-ESRGAN: ``{conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, conv4_4: 1,
    conv5_4: 1}``. ``pretrained=true`` (default) reads the ImageNet weights from the local file
    ``weights_path`` (default: torchvision's cache, ``~/.cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth``);
    nothing is downloaded. If it is missing, ``require_weights=true`` stops with one line naming
    the file and its URL; otherwise the run warns in one line and uses random VGG weights.
    ``pretrained=false`` uses random weights silently (tests).
    """

    def __init__(self, layer_weights: Mapping[str, float] | None = None, criterion: str = "l1",
                 pretrained: bool = True, weights_path: str | None = None, require_weights: bool = False,
                 config_key: str = "losses.<term>") -> None:
        super().__init__()
        # A layer of weight 0 is left out (and the VGG cut after the deepest layer left).
        self.layer_weights = {str(k): float(v) for k, v in (layer_weights or {"conv5_4": 1.0}).items() if float(v) != 0}
        if not self.layer_weights:
            raise ValueError(f"{config_key}.layer_weights: every layer has weight 0")
        crit = {"l1": nn.L1Loss, "mse": nn.MSELoss}
        if criterion not in crit:
            raise ValueError(f"perceptual criterion={criterion!r}: choose l1 or mse")
        self.criterion = crit[criterion]()
        # Outside the module tree (see VGGFeatures); moved to the input's device on first use.
        object.__setattr__(self, "vgg", VGGFeatures(list(self.layer_weights), pretrained, weights_path,
                                                      require_weights, config_key))

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        if self.vgg.mean.device != sr.device:
            self.vgg.to(sr.device)
        f_sr = self.vgg(sr)
        with torch.no_grad():
            f_gt = self.vgg(gt.detach())
        return sum(self.criterion(f_sr[k], f_gt[k]) * w for k, w in self.layer_weights.items())


# --- adversarial -----------------------------------------------------------------------------------

GAN_TYPES = ("vanilla", "lsgan", "hinge", "ragan")


@register_loss("gan")
class GANLoss(nn.Module):
    """Adversarial losses on discriminator logits (BasicSR's ``GANLoss``), in fp32.

    ``vanilla``: BCE with logits; ``lsgan``: least squares; ``hinge``; ``ragan``: ESRGAN's
    relativistic average GAN (BCE on ``D(x) - mean D(y)``, both directions, halved). The term's
    ``weight`` applies to the generator only, as in BasicSR; the discriminator's loss is unweighted.
    """

    def __init__(self, gan_type: str = "vanilla", real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        if gan_type not in GAN_TYPES:
            raise ValueError(f"gan_type={gan_type!r}: choose one of {', '.join(GAN_TYPES)}")
        self.gan_type, self.real_label, self.fake_label = gan_type, float(real_label), float(fake_label)

    def criterion(self, logits: torch.Tensor, real: bool, for_disc: bool = True) -> torch.Tensor:
        """BasicSR's ``GANLoss.forward(input, target_is_real, is_disc)``, unweighted."""
        if self.gan_type == "hinge":
            if for_disc:
                return F.relu(1 - logits).mean() if real else F.relu(1 + logits).mean()
            return -logits.mean()
        target = torch.full_like(logits, self.real_label if real else self.fake_label)
        if self.gan_type == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)  # vanilla, ragan

    def generator(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's loss from ``D(sr)`` (and, for RaGAN, ``D(gt)``, detached)."""
        with torch.autocast(fake.device.type, enabled=False):
            fake = fake.float()
            if self.gan_type != "ragan":
                return self.criterion(fake, True, for_disc=False)
            real = real.detach().float()
            return (self.criterion(real - fake.mean(), False) + self.criterion(fake - real.mean(), True)) / 2

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's losses on real and on (detached) fake images: ``(l_real, l_fake)``;
        it minimises their sum (ESRGAN's RaGAN: their mean, as BasicSR's ``ESRGANModel``)."""
        with torch.autocast(real.device.type, enabled=False):
            real, fake = real.float(), fake.float()
            if self.gan_type == "ragan":
                return (self.criterion(real - fake.mean(), True) / 2, self.criterion(fake - real.mean(), False) / 2)
            return self.criterion(real, True), self.criterion(fake, False)

    def forward(self, *args: Any) -> torch.Tensor:  # pragma: no cover - needs the discriminator
        raise RuntimeError("the adversarial term is computed by SRGANModule with its discriminator")


# --- the weighted sum ------------------------------------------------------------------------------


class CompositeLoss(nn.Module):
    """The weighted terms of a ``losses`` config except the adversarial one: ``forward(sr, gt)``
    returns ``{name: weight * term(sr, gt)}`` computed in fp32; ``adversarial`` holds the
    ``(name, weight, GANLoss)`` of a ``type: gan`` term, if any."""

    def __init__(self, terms: Mapping[str, tuple[float, nn.Module]],
                 adversarial: tuple[str, float, GANLoss] | None = None) -> None:
        super().__init__()
        self.weights = {name: w for name, (w, _) in terms.items()}
        self.terms = nn.ModuleDict({name: m for name, (_, m) in terms.items()})
        self.adversarial = adversarial
        if adversarial is not None:
            self.gan = adversarial[2]

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(sr.device.type, enabled=False):
            sr, gt = sr.float(), gt.float()
            return {name: self.weights[name] * term(sr, gt) for name, term in self.terms.items()}

    def pixel_only(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The weighted sum of the pixel terms: what the speed calibration times (cheap, and with no
        network on another device); the full sum trains."""
        names = [n for n, t in self.terms.items() if isinstance(t, (*LOSSES.values(),))]

        def loss(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            if not names:
                return F.l1_loss(sr, gt)
            return sum(self.weights[n] * self.terms[n](sr, gt) for n in names)

        return loss

    def describe(self) -> dict[str, Any]:
        """What ``metrics.json`` records: each term's weight, and the VGG weights a perceptual term used."""
        out: dict[str, Any] = {}
        for name, term in self.terms.items():
            out[name] = {"type": type(term).__name__, "weight": self.weights[name]}
            if isinstance(term, PerceptualLoss):
                out[name]["vgg_weights"] = term.vgg.weights
        if self.adversarial is not None:
            name, w, gan = self.adversarial
            out[name] = {"type": f"GANLoss({gan.gan_type})", "weight": w}
        return out


def build_losses(losses: Mapping[str, Any] | None, loss: str = "l1", charbonnier_eps: float = 1e-3) -> CompositeLoss:
    """The ``losses`` config as a ``CompositeLoss``; without one, the single pixel loss ``loss``
    (weight 1, named ``pixel``)."""
    if not losses:
        return CompositeLoss({"pixel": (1.0, build_loss(loss, charbonnier_eps))})
    terms: dict[str, tuple[float, nn.Module]] = {}
    adversarial = None
    for name, spec in losses.items():
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"losses.{name}: give a mapping such as {{type: l1, weight: 1.0}}, not {spec!r}")
        spec = dict(spec)
        weight = float(spec.pop("weight", 1.0))
        if weight == 0:
            continue
        if "_target_" in spec:
            from hydra.utils import instantiate

            term = instantiate(spec)
        else:
            kind = str(spec.pop("type", name))
            if kind not in LOSS_TERMS:
                raise ValueError(f"losses.{name}.type={kind!r} is not known; choose one of {', '.join(LOSS_TERMS)}")
            if kind == "charbonnier":
                spec.setdefault("eps", charbonnier_eps)
            if kind == "perceptual":
                spec.setdefault("config_key", f"losses.{name}")
            try:
                term = LOSS_TERMS[kind](**spec)
            except TypeError as e:
                raise ValueError(f"losses.{name}: {e}") from None
        if isinstance(term, GANLoss):
            if adversarial is not None:
                raise ValueError(f"losses.{name}: a second adversarial term (the first is losses.{adversarial[0]})")
            adversarial = (str(name), weight, term)
        else:
            terms[str(name)] = (weight, term)
    if not terms and adversarial is None:
        raise ValueError("losses: every term has weight 0; nothing to train")
    return CompositeLoss(terms, adversarial)


def build_criterion(losses: Mapping[str, Any] | None, loss: str, charbonnier_eps: float,
                    adversarial: bool) -> CompositeLoss:
    """``build_losses``, refusing an adversarial term where the module trains no discriminator
    (checked before building the terms, a VGG, for nothing)."""
    gan_terms = [k for k, t in (losses or {}).items() if isinstance(t, Mapping) and t.get("type") == "gan"]
    if gan_terms and not adversarial:
        raise ValueError(f"losses.{gan_terms[0]} is adversarial: it needs a discriminator "
                         "(discriminator=vgg128|unet_sn, or experiment=esrgan_x4)")
    criterion = build_losses(losses, loss, charbonnier_eps)
    if criterion.adversarial is not None and not adversarial:
        raise ValueError(f"losses.{criterion.adversarial[0]} is adversarial: it needs a discriminator")
    return criterion
