"""train.py end to end: composed configs, fast_dev_run, the README commands, resume, fine-tune."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF, FAST, ROOT, SMALL, compose_train
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sr_experiments.models.weights import CheckpointLoadError, read_weights
from sr_experiments.models import build_network, is_multi_frame, list_networks
from sr_experiments.runs.run import train

# model=from_file is the network a weights file holds: built from a file in tests/models/test_interop.py.
MODEL_CONFIGS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem != "from_file")
DATA_PRESETS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))


def test_fast_dev_run_of_composed_config(tmp_path: Path) -> None:
    cfg = compose_train([*FAST, "trainer.fast_dev_run=true"], tmp_path)
    summary = train(cfg)
    assert summary["steps"] == 1
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["bicubic"]["psnr"] > 20 and saved["final"]["psnr"] > 0 and saved["params"] > 0


def test_nested_and_top_level_overrides(tmp_path: Path) -> None:
    cfg = compose_train(
        ["model=deep", "lr=1e-4", "trainer.max_steps=100", "data.batch_size=32", "model.depth=8", "scale=3"], tmp_path
    )
    assert cfg.trainer.max_steps == 100 and cfg.data.batch_size == 32 and cfg.data.scale == 3
    module = instantiate(cfg.module, _recursive_=False)
    assert len(module.net.body) == 8 and module.net.upsample[0].out_channels == 9 * 32
    assert module.hparams.optimizer["lr"] == 1e-4


def test_seed_model_sets_its_sketched_recipe(tmp_path: Path) -> None:
    cfg = compose_train(["model=seed"], tmp_path)
    assert cfg.lr == 1e-4 and cfg.loss == "mse" and cfg.model.name == "seed"
    assert compose_train(["model=seed", "lr=3e-4"], tmp_path).lr == 3e-4  # the command line still wins


@pytest.mark.usefixtures("one_thread")  # tiny inputs; on a busy 2-core machine 2 threads spin-wait
@pytest.mark.parametrize("model", MODEL_CONFIGS)
def test_every_model_config_builds(tmp_path: Path, model: str) -> None:
    cfg = compose_train([f"model={model}", "scale=4"], tmp_path)
    assert cfg.model.name in list_networks()
    net = build_network(cfg.model)
    if is_multi_frame(net):  # a clip in: all its frames out, or the window's centre (EDVR)
        frames = net.num_frame or 3
        expected = (2, frames, 3, 48, 48) if net.frames_out == "all" else (2, 3, 48, 48)
        assert net(torch.rand(2, frames, 3, 12, 12)).shape == expected
        return
    # Two images: DAT's channel interaction has a BatchNorm, which needs 2+ in training mode (as officially).
    assert net(torch.rand(2, 3, 12, 12)).shape == (2, 3, 48, 48)


@pytest.mark.parametrize("preset", DATA_PRESETS)
def test_every_data_preset_composes(tmp_path: Path, preset: str) -> None:
    overrides = [f"data={preset}", "paths.data_dir=/data/sr"]
    if preset == "folder":
        overrides += ["data.train_dir=/my/train", "data.val_dir=/my/val"]
    if preset == "stream":  # a prepared folder (prepare.py): no default
        overrides += ["data.train_dir=/my/prepared"]
    cfg = compose_train(overrides, tmp_path)
    if "train_dir" not in cfg.data:  # a clip preset (video): layouts instead of folders
        assert cfg.data.train.layout and cfg.data.val.layout
        return
    dirs = cfg.data.train_dir if isinstance(cfg.data.train_dir, str) else list(cfg.data.train_dir)
    assert dirs  # resolved without missing values
    if preset.startswith(("t91", "bsd")):
        assert cfg.data.val_dir == "/data/sr/Set5"


def test_parameter_free_model_refuses_to_train(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(compose_train([*FAST, "model=bicubic"], tmp_path))


def test_resume_from_last_checkpoint_continues_the_run(tmp_path: Path) -> None:
    first = train(compose_train(FAST, tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert first["steps"] == 4 and last.is_file() and (tmp_path / "a" / "checkpoints" / "best.ckpt").is_file()
    assert not list((tmp_path / "a" / "checkpoints").glob(".*tmp"))  # atomic writes leave nothing behind
    ckpt = read_weights(last)  # weights_only=True
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["network"]["name"] == "edsr"

    overrides = [o for o in FAST if not o.startswith("trainer.max_steps")]
    resumed = train(compose_train([*overrides, "trainer.max_steps=8", f"ckpt_path={last}"], tmp_path / "b"))
    assert resumed["steps"] == 8
    assert [h["step"] for h in resumed["history"]] == [4, 8]  # history carried over, not restarted
    assert resumed["bicubic"] == first["bicubic"]


def test_fine_tune_loads_weights_only(tmp_path: Path) -> None:
    train(compose_train(FAST, tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    tuned = train(compose_train([*FAST, f"ckpt_path={last}", "resume=false"], tmp_path / "b"))
    assert tuned["steps"] == 4 and [h["step"] for h in tuned["history"]] == [4]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoint_that_runs_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode()}, bad, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointLoadError, match="evil.ckpt"):
        read_weights(bad)
    assert not (tmp_path / "pwned").exists()


def _run_cli(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [["model=deep", "lr=1e-4", "trainer.max_steps=20"], ["model=seed", "trainer.max_steps=20"]],
    ids=["deep", "seed"],
)
def test_cli_commands_as_typed(tmp_path: Path, args: list[str]) -> None:
    proc = _run_cli([*args, f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["final"]["psnr"] > 0
    assert "gain over bicubic" in proc.stdout


@pytest.mark.slow
def test_cli_trains_on_t91_bsd200(tmp_path: Path, data_dir: Path) -> None:
    proc = _run_cli(["data=t91_bsd200", f"paths.data_dir={data_dir}", "trainer.max_steps=50", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 50 and metrics["val_images"] == 5  # validated on Set5


@pytest.mark.slow
def test_cli_missing_data_gives_a_clear_error(tmp_path: Path) -> None:
    proc = _run_cli(["data=t91", f"paths.data_dir={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode != 0
    assert "paths.data_dir" in proc.stderr and "nowhere" in proc.stderr


def test_experiment_recipe_sets_groups_and_keys(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=edsr_baseline_t91_bsd200_x2", "paths.data_dir=/data/sr"], tmp_path)
    assert cfg.model.name == "edsr" and cfg.model.depth == 16 and cfg.lr == 1e-4
    assert cfg.scheduler.name == "multistep" and cfg.trainer.max_steps == 300000
    assert list(cfg.data.train_dir) == ["/data/sr/T91", "/data/sr/BSD200"]


def test_run_shorter_than_an_epoch_still_validates_and_checkpoints_its_last_step(tmp_path: Path) -> None:
    overrides = [o for o in FAST if not o.startswith("trainer.max_steps")]
    summary = train(compose_train([*overrides, "trainer.max_steps=6"], tmp_path / "a"))  # epochs of 4 steps
    assert [h["step"] for h in summary["history"]] == [4, 6]
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert read_weights(last)["global_step"] == 6
    resumed = train(compose_train([*overrides, "trainer.max_steps=10", f"ckpt_path={last}"], tmp_path / "b"))
    assert resumed["steps"] == 10 and resumed["history"][-1]["step"] == 10


@pytest.mark.slow
def test_multirun_sweep_writes_one_run_per_combination(tmp_path: Path) -> None:
    args = ["-m", "lr=1e-3,2e-3", "model.depth=2,4", "data.patches_per_epoch=16", "data.batch_size=4",
            "data.patch_size=16", "trainer.max_steps=4", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={tmp_path}"]
    proc = _run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(tmp_path.glob("*/metrics.json"))
    assert len(runs) == 4
    combos = {tuple(o for o in json.loads(r.read_text())["overrides"] if o.startswith(("lr=", "model.depth="))) for r in runs}
    assert combos == {(f"lr={lr}", f"model.depth={d}") for lr in ("0.001", "0.002") for d in (2, 4)}


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory) -> tuple[Path, Path]:
    """Small train/val folders cut from the bundled photos, so every network trains in seconds."""
    from PIL import Image

    from sr_experiments.data.sources import SAMPLE_SPLITS, sample_dir

    root = tmp_path_factory.mktemp("tiny")
    for split, names in SAMPLE_SPLITS.items():
        (root / split).mkdir()
        for name in names[:2]:
            with Image.open(sample_dir() / name) as im:
                im.convert("RGB").crop((100, 100, 164, 164)).save(root / split / f"{Path(name).stem}.png")
    return root / "train", root / "val"


def _network_of(config: str) -> str:
    node = OmegaConf.load(CONF / "model" / f"{config}.yaml")
    return (node.model if "model" in node else node).name


# The networks on spandrel's code train at their small sizes (conftest.SMALL), and once each: their
# presets (hat_s, dat_light, ...) differ only in hyperparameters, built at full size above. At
# paper size each took minutes on 2 CPU cores here.
# Image networks on image folders; the video networks train on clips (test_video_networks.py and the clip tests).
TRAINED_CONFIGS = [m for m in MODEL_CONFIGS if m != "bicubic" and (m in SMALL or _network_of(m) not in SMALL)
                   and not is_multi_frame(_network_of(m))]


@pytest.mark.slow
@pytest.mark.parametrize("model", TRAINED_CONFIGS)
def test_every_network_trains_through_train_py(tmp_path: Path, model: str, tiny_folders) -> None:
    train_dir, val_dir = tiny_folders
    scale = 4 if model == "rrdbnet" else 2
    overrides = [*FAST, f"model={model}", f"scale={scale}", "data=folder", f"data.train_dir={train_dir}",
                 f"data.val_dir={val_dir}", "trainer.max_steps=2", "data.batch_size=2",
                 *(f"++model.{key}={value}" for key, value in SMALL.get(model, {}).items())]
    summary = train(compose_train(overrides, tmp_path))
    assert summary["steps"] == 2 and summary["final"]["psnr"] > 0 and summary["params"] > 0


@pytest.mark.slow
def test_cli_swinir_light_as_typed(tmp_path: Path) -> None:
    proc = _run_cli(["model=swinir_light", "trainer.max_steps=5", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 5


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds(tmp_path: Path, experiment: str) -> None:
    cfg = compose_train([f"experiment={experiment}", "paths.data_dir=/data/sr"], tmp_path)
    module = instantiate(cfg.module, _recursive_=False)
    with torch.device("meta"):
        assert build_network(cfg.model) is not None
    assert module.hparams.scale == cfg.scale and cfg.trainer.max_steps > 0
    # Paper recipes validate on Set5 under paths.data_dir; CPU demonstrations on the bundled photos.
    if experiment == "video_cpu":  # clips synthesised from the bundled photos
        assert cfg.data.val.layout == "synthetic"
        return
    assert str(cfg.data.val_dir) == ("sample:val" if experiment == "gan_cpu_demo" else "/data/sr/Set5")


def test_crash_mid_epoch_leaves_a_resumable_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_experiments.training.module import SRLitModule

    original = SRLitModule.training_step

    def crash_at_step_6(self, batch, batch_idx):
        if self.global_step == 6:
            raise RuntimeError("simulated crash")
        return original(self, batch, batch_idx)

    overrides = [o for o in FAST if not o.startswith("trainer.max_steps")]
    monkeypatch.setattr(SRLitModule, "training_step", crash_at_step_6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_train([*overrides, "trainer.max_steps=12"], tmp_path / "a"))
    saved = tmp_path / "a" / "checkpoints" / "interrupted.ckpt"
    assert read_weights(saved)["global_step"] == 6  # not 4, the last epoch end
    monkeypatch.setattr(SRLitModule, "training_step", original)
    resumed = train(compose_train([*overrides, "trainer.max_steps=12", f"ckpt_path={saved}"], tmp_path / "b"))
    assert resumed["steps"] == 12


@pytest.mark.slow
def test_a_default_run_prints_no_python_warnings(tmp_path: Path) -> None:
    # -W error turns any warning (ours, Lightning's, torch's) into a failed run; INFO lines are all
    # that may reach stderr.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-W", "error", "train.py", "trainer.max_steps=3", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    progress = ("Sanity Checking", "Epoch ", "Validation")
    noise = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("INFO:")
             and not any(p in line for p in progress)]
    assert noise == [], noise
    assert "Total FLOPs: 0 " not in proc.stdout  # the model summary counts real FLOPs
