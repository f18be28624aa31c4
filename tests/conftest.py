"""Shared fixtures: the benchmark data beside the checkout, and composed training configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from sr_experiments import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
CONF = CONF_DIR


def find_data_dir() -> Path | None:
    """$SR_DATA, else ../shared/data beside the checkout (where CI has it)."""
    for cand in (os.environ.get("SR_DATA"), ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "Set5" / "HR").is_dir():
            return Path(cand).resolve()
    return None


DATA_DIR = find_data_dir()
needs_data = pytest.mark.skipif(
    DATA_DIR is None,
    reason="benchmark data not found: set SR_DATA or put Set5/Set14/T91/BSD200 in ../shared/data",
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if DATA_DIR is None:
        pytest.skip("benchmark data not found: set SR_DATA or put Set5/Set14/T91/BSD200 in ../shared/data")
    return DATA_DIR


@pytest.fixture(scope="session", autouse=True)
def speed_cache(tmp_path_factory: pytest.TempPathFactory):
    """Speed calibrations go to a folder of this test session, never the user's cache; shared, so
    that each test configuration is measured once (subprocesses inherit it)."""
    old = os.environ.get("SR_CACHE_DIR")
    os.environ["SR_CACHE_DIR"] = str(tmp_path_factory.mktemp("sr_cache"))
    yield
    if old is None:
        os.environ.pop("SR_CACHE_DIR", None)
    else:
        os.environ["SR_CACHE_DIR"] = old


def _compose(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """sr_experiments/conf/train.yaml with ``overrides``, writing into ``output_dir`` (no Hydra run dir)."""
    return _compose("train", overrides, output_dir)


def compose_eval(overrides: list[str], output_dir: Path) -> DictConfig:
    """sr_experiments/conf/eval.yaml with ``overrides``, writing into ``output_dir`` (no Hydra run dir)."""
    return _compose("eval", overrides, output_dir)


def compose_model(name: str, scale: int) -> DictConfig:
    """The ``model`` node of ``model=NAME scale=S``, composed as train.py does (defaults list included)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=[f"model={name}", f"scale={scale}"]).model


# A run small enough for a unit test: tiny patches, few images' worth of steps.
FAST = [
    "trainer.max_steps=4",
    "data.patches_per_epoch=16",
    "data.batch_size=4",
    "data.patch_size=16",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.image_panel.num_images=1",
]


# Small instances of the networks on spandrel's architecture code (models/community.py), for the
# tests that run every network at every scale: the paper models are transformers and CNNs of up to
# 20M parameters (test_networks.py took a minute longer with them on 2 CPU cores). These take the same
# code paths, and spandrel detects each of their hyperparameters back from their state dicts (DAT
# and RGT need 32 channels: their position-bias MLPs have embed_dim // 32 channels).
from sr_experiments.tools.chainner import COMMUNITY_SMALL as SMALL  # noqa: E402,F401  (the model tests import it)

def assert_one_training_step(net, x) -> None:
    """One Adam step on an L1 loss: finite loss, finite gradients for every trainable parameter,
    weights move (parameters with ``requires_grad=False``, such as SPAN's re-parameterised
    ``eval_conv``, are derived from others and get no gradient)."""
    import torch

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in net.parameters()]
    out = net(x)
    loss = torch.nn.functional.l1_loss(out, torch.rand_like(out))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert torch.isfinite(p).all(), name
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread (tiny tensors; see the network tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def checkout_root_stays_clean():
    """Tests write under tmp_path only: a stray ``csv/a/metrics.csv`` (a zssr.py csv logger writing
    into the working folder) was once committed from the checkout's root. New top-level entries
    there fail the session, named (caches excepted)."""
    def entries() -> set[str]:
        return {p.name for p in ROOT.iterdir() if not p.name.startswith(".") and p.name != "__pycache__"
                and not p.name.endswith(".egg-info")}

    before = entries()
    yield
    stray = sorted(entries() - before)
    assert not stray, f"tests wrote {', '.join(stray)} into {ROOT}: write under tmp_path instead"
