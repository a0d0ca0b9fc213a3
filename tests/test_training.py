"""The training package on a tiny synthetic identity tree: config, train, resume, export, load."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from models.embedder import Embedder
from models.inputs import normalise
from tests.helpers import sigterm_in_step, tiny_identity_tree, tiny_training_overrides
from training.config import TrainConfig, apply_overrides, config_from_dict, load_config
from training.data import AugmentConfig, augment, balanced_weights
from training.export import export
from training.train import lr_at, train


@pytest.fixture
def tiny_tree(tmp_path: Path) -> Path:
    return tiny_identity_tree(tmp_path / "train")


def tiny_config(tiny_tree: Path, tmp_path: Path, steps: int) -> TrainConfig:
    return load_config(None, tiny_training_overrides(tiny_tree, tmp_path, steps))


def test_train_resume_export_and_load(tiny_tree: Path, tmp_path: Path):
    run = train(tiny_config(tiny_tree, tmp_path, steps=3), resume=False)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["arch"] == "iresnet_tiny" and saved["augment"]["flip"] == 0.5
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 3

    # Resume with a longer schedule: applied, and saved with the run.
    train(tiny_config(tiny_tree, tmp_path, steps=5), resume=True)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 5
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 5

    weights = export(run, tmp_path / "w" / "tiny.pt", flip_tta=True)
    # The card says how the weights were made: three steps' schedule, then resumed on five steps'.
    reproduce = json.loads(weights.with_suffix(".json").read_text())["reproduce"]
    assert reproduce.endswith(
        " --set steps=3 && python -m training.train --config " + f"{run / 'config.yaml'} --resume --set steps=5"
    ), reproduce
    embedder = Embedder(weights)
    crops = [cv2.imread(str(p))[:, :, ::-1].copy() for p in sorted((tiny_tree / "person_0").iterdir())[:2]]
    vectors = embedder.embed(crops)
    assert vectors.shape == (2, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 16)


def test_the_card_of_a_run_started_with_overrides_reproduces_that_run_not_the_committed_config(
    tiny_tree: Path, tmp_path: Path, monkeypatch
):
    # A committed config (training/configs/<name>.yaml, looked up from the working directory) and a
    # run of it started with --set, as training/learning_curve.sh starts its runs.
    monkeypatch.chdir(tmp_path)
    committed = tmp_path / "training" / "configs" / "tiny.yaml"
    committed.parent.mkdir(parents=True)
    committed.write_text(yaml.safe_dump({"name": "tiny", "steps": 2, "loss_kwargs": {"s": 32.0, "m": 0.5}}))
    sets = tiny_training_overrides(tiny_tree, tmp_path, steps=3) + [
        "identity_fraction=0.67",
        "loss_kwargs={s: 16.0, m: 0.3}",
        "augment.flip=0",
        "augment.scale=[0.9, 1.1]",
    ]  # and threads, out_dir, cache_dir: where and how fast, not part of the command
    run = train(load_config(str(committed), sets), resume=False)
    card = json.loads(export(run, tmp_path / "w" / "tiny.pt", flip_tta=False).with_suffix(".json").read_text())

    command = shlex.split(card["reproduce"])
    assert command[:5] == ["python", "-m", "training.train", "--config", "training/configs/tiny.yaml"], command
    given = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    assert not any(arg.startswith(("eval_every=", "threads=", "out_dir=", "cache_dir=")) for arg in given), given
    where = ["threads=1", f"out_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}"]
    rebuilt = load_config("training/configs/tiny.yaml", given + where)
    assert rebuilt == config_from_dict(yaml.safe_load((run / "config.yaml").read_text())), given
    # Without the overrides the committed config would train another model.
    assert load_config("training/configs/tiny.yaml", []).to_dict() != rebuilt.to_dict()


def test_export_with_a_cohort_scores_with_the_head_centres(tiny_tree: Path, tmp_path: Path):
    run = train(tiny_config(tiny_tree, tmp_path, steps=2), resume=False)
    plain = Embedder(export(run, tmp_path / "w" / "plain.pt", flip_tta=False))
    assert plain.card.scoring["method"] == "cosine" and plain.card.raw["scoring"] == {"method": "cosine"}

    weights = export(run, tmp_path / "w" / "c.pt", flip_tta=False, cohort_top_k=2)
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["scoring"]["method"] == "cohort" and card["scoring"]["cohort_size"] == 3
    embedder = Embedder(weights)
    centres = torch.load(run / "checkpoint.pt", weights_only=False)["head"]["weight"].numpy()
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    a, b = np.random.default_rng(0).normal(size=(2, 1, 16)).astype(np.float32)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)

    def top2(v):
        return np.sort(centres @ v[0])[-2:].mean()

    expected = float(a[0] @ b[0]) - 0.5 * (top2(a) + top2(b))
    assert embedder.score(a, b)[0, 0] == pytest.approx(expected, abs=2e-3)  # centres stored in fp16
    assert plain.score(a, b)[0, 0] == pytest.approx(float(a[0] @ b[0]), abs=1e-5)

    cohort = weights.with_suffix(".cohort.npy")
    cohort.write_bytes(cohort.read_bytes()[:-2] + b"\0\0")
    with pytest.raises(ValueError, match="SHA-256"):
        Embedder(weights)
    cohort.unlink()
    with pytest.raises(FileNotFoundError, match="cohort"):
        Embedder(weights)


def test_adaface_training_keeps_its_norm_statistics_across_resume(tiny_tree: Path, tmp_path: Path):
    cfg = apply_overrides(
        tiny_config(tiny_tree, tmp_path, steps=3), {"loss": "adaface", "loss_kwargs": {"s": 16.0, "m": 0.4}}
    )
    run = train(cfg, resume=False)
    head = torch.load(run / "checkpoint.pt", weights_only=False)["head"]
    assert head["margin.norm_mean"].item() != 20.0  # moved from its initial value by three batches
    train(apply_overrides(cfg, {"steps": 4}), resume=True)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 4


def test_holdout_keeps_every_identity_in_training_and_reports_accuracy(tiny_tree: Path, tmp_path: Path):
    from training.train import holdout_split

    labels = np.array([0] * 10 + [1] * 3 + [2] * 6)
    train_idx, held = holdout_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(train_idx, held)) == 0 and len(train_idx) + len(held) == len(labels)
    assert set(labels[train_idx]) == {0, 1, 2} and set(labels[held]) == {0, 2}  # identity 1 has < 5 images
    # Three people, each a fixed random image under light noise: a few dozen steps separate them,
    # so every held-out image (one per person) is classified right.
    cfg = apply_overrides(tiny_config(tiny_tree, tmp_path, steps=40), {"holdout": 0.25})
    run = train(cfg, resume=False)
    assert json.loads((run / "holdout.json").read_text()) == {"images": 3, "accuracy": 1.0}


def test_resume_without_checkpoint_is_a_clear_error(tiny_tree: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="drop --resume"):
        train(tiny_config(tiny_tree, tmp_path, steps=2), resume=True)


def test_resume_refuses_changes_to_what_the_run_learns_instead_of_ignoring_them(tiny_tree: Path, tmp_path: Path):
    train(tiny_config(tiny_tree, tmp_path, steps=2), resume=False)
    changed = apply_overrides(tiny_config(tiny_tree, tmp_path, steps=2), {"lr": 0.5, "augment.flip": 0.0})
    with pytest.raises(ValueError, match=r"\['augment.flip', 'lr'\]"):
        train(changed, resume=True)
    run = train(apply_overrides(tiny_config(tiny_tree, tmp_path, steps=3), {"threads": 2}), resume=True)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["threads"] == 2 and saved["lr"] == TrainConfig().lr


def test_overrides_are_typed_and_unknown_keys_refused():
    cfg = apply_overrides(TrainConfig(), {"lr": "0.05", "augment.flip": "0", "loss_kwargs": {"s": 16.0, "m": 0.3}})
    assert cfg.lr == 0.05 and cfg.augment.flip == 0.0 and cfg.loss_kwargs["m"] == 0.3
    with pytest.raises(KeyError, match="valid keys"):
        apply_overrides(TrainConfig(), {"learning_rate": "1"})
    with pytest.raises(ValueError, match="not a int"):
        apply_overrides(TrainConfig(), {"steps": "many"})


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.01)
    assert lr_at(9, cfg) == pytest.approx(0.1)
    assert lr_at(55, cfg) == pytest.approx(0.05)
    assert lr_at(100, cfg) == pytest.approx(0.0, abs=1e-12)


def test_balanced_weights_interpolate_between_images_and_identities():
    labels = np.array([0, 0, 0, 0, 1])
    assert np.allclose(balanced_weights(labels, 0.0), 0.2)
    per_identity = balanced_weights(labels, 1.0)
    assert per_identity[:4].sum() == pytest.approx(0.5) and per_identity[4] == pytest.approx(0.5)


def test_augment_keeps_shape_and_range_and_identity_when_disabled():
    x = normalise(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    gen = torch.Generator().manual_seed(0)
    out = augment(x.clone(), AugmentConfig(), gen)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    off = AugmentConfig(
        flip=0, max_rotate_deg=0, scale=(1.0, 1.0), max_shift=0, brightness=0, contrast=0, grayscale=0, blur=0
    )
    assert torch.allclose(augment(x.clone(), off, gen), x, atol=1e-5)


def test_occlusion_paints_flat_rectangles_and_dark_bands_over_the_eye_line():
    from training.data import occlude

    x = torch.full((64, 3, 64, 64), 0.5)
    gen = torch.Generator().manual_seed(0)
    blocks = occlude(x.clone(), AugmentConfig(occlusion=1.0), gen)
    changed = (blocks != 0.5).any(1)  # (n, h, w)
    area = changed.flatten(1).float().mean(1)
    assert (area > 0.005).all() and (area < 0.17).all()  # 10-40% of each side
    glasses = occlude(x.clone(), AugmentConfig(sunglasses=1.0), gen)
    dark = (glasses < -0.4).all(1)
    rows = dark.any(2).float().mean(0)  # how often each row is covered
    assert rows[int(51.6 / 112 * 64)] == 1.0 and rows[:20].sum() == 0 and rows[40:].sum() == 0
    assert torch.equal(occlude(x.clone(), AugmentConfig(), gen), x)


def test_triplet_training_runs_resumes_and_exports(tiny_tree: Path, tmp_path: Path):
    cfg = apply_overrides(
        tiny_config(tiny_tree, tmp_path, steps=3),
        {"loss": "triplet", "loss_kwargs": {"margin": 0.2, "mining": "semihard", "k": 4}, "holdout": 0.25},
    )
    run = train(cfg, resume=False)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 3
    assert not (run / "holdout.json").exists()  # no class centres: no closed-set accuracy to report
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert Embedder(export(run, tmp_path / "w" / "t.pt", flip_tta=False)).embed([]).shape == (0, 16)
    with pytest.raises(ValueError, match="no class centres"):
        export(run, tmp_path / "w" / "t.pt", flip_tta=False, cohort_top_k=10)


def test_weight_average_is_a_running_mean_then_an_ema():
    from training.averaging import WeightAverage

    layer = torch.nn.BatchNorm1d(2)
    avg = WeightAverage({"m": layer}, decay=0.5)
    values = [1.0, 3.0, 5.0, 9.0]
    for v in values:
        with torch.no_grad():
            layer.weight.fill_(v)
        layer.num_batches_tracked.fill_(int(v))
        avg.update({"m": layer})
    # updates 1-2: running mean (1, then 2); 3-4: EMA with weight 0.5 (3.5, then 6.25)
    assert avg.state["m"]["weight"].tolist() == [6.25, 6.25]
    assert avg.state["m"]["num_batches_tracked"].item() == 9  # integer buffers are copied
    with pytest.raises(ValueError, match="decay"):
        WeightAverage({"m": layer}, decay=1.0)


def test_weight_averaged_training_exports_the_average_and_resumes_exactly(tiny_tree: Path, tmp_path: Path, monkeypatch):
    import training.train as train_module

    run_a = train(apply_overrides(tiny_config(tiny_tree, tmp_path / "a", steps=4), {"ema_decay": 0.5}), resume=False)

    # The same run killed right after its step-2 checkpoint, then resumed.
    class Killed(Exception):
        pass

    save = train_module.save_checkpoint

    def save_then_die(path, step, *args):
        save(path, step, *args)
        if step == 2:
            raise Killed

    cfg_b = apply_overrides(tiny_config(tiny_tree, tmp_path / "b", steps=4), {"ema_decay": 0.5})
    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(cfg_b, resume=False)
    monkeypatch.setattr(train_module, "save_checkpoint", save)
    run_b = train(cfg_b, resume=True)

    a = torch.load(run_a / "checkpoint.pt", weights_only=False)
    b = torch.load(run_b / "checkpoint.pt", weights_only=False)
    assert a["live"]["updates"] == b["live"]["updates"] == 4
    for key in a["backbone"]:
        assert torch.allclose(a["backbone"][key].float(), b["backbone"][key].float(), atol=1e-6), key
        assert torch.allclose(a["live"]["backbone"][key].float(), b["live"]["backbone"][key].float(), atol=1e-6), key
    # The average differs from the live weights, and the export is the average.
    name = "stem.0.weight"
    assert not torch.allclose(a["backbone"][name], a["live"]["backbone"][name])
    weights = torch.load(export(run_a, tmp_path / "w.pt", flip_tta=False), weights_only=True)
    assert torch.equal(weights[name], a["backbone"][name].half())


def test_extra_identities_drop_possible_lfw_people_and_keep_one_of_each_duplicate_group():
    from training.extra_identities import select

    e = np.eye(6, dtype=np.float32)
    faces = np.stack([e[0], e[1], e[1] + 0.4 * e[2], e[1] + 0.9 * e[2], e[4]])  # cos(1, 3) = 0.74 only
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    lfw = e[[4, 5]]  # face 4 is (possibly) someone in LFW
    keep = select(faces, lfw, max_lfw_cosine=0.7, duplicate_cosine=0.9)
    assert keep.tolist() == [0, 1]  # 1, 2 and 3 are one person (joined transitively); 4 is dropped


def test_a_signal_stops_training_after_its_step_with_a_checkpoint_and_resuming_equals_never_stopping(
    tmp_path: Path, monkeypatch
):
    import signal

    import training.train as train_module

    tree = tiny_identity_tree(tmp_path / "train", people=4, images=10)  # 40 images: an epoch is 5 steps
    run_a = train(load_config(None, tiny_training_overrides(tree, tmp_path / "a", steps=6)), resume=False)
    cfg_b = load_config(None, tiny_training_overrides(tree, tmp_path / "b", steps=6))
    with sigterm_in_step(monkeypatch, train_module, 1), pytest.raises(SystemExit) as stopped:
        train(cfg_b, resume=False)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert torch.load(cfg_b.run_dir() / "checkpoint.pt", weights_only=False)["step"] == 2  # not an epoch's end
    run_b = train(cfg_b, resume=True)

    a = torch.load(run_a / "checkpoint.pt", weights_only=False)
    b = torch.load(run_b / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for key in a["backbone"]:
        assert torch.allclose(a["backbone"][key].float(), b["backbone"][key].float(), atol=1e-6), key


def test_held_out_people_are_measured_during_training_into_the_log(tiny_tree: Path, tmp_path: Path):
    heldout = tiny_identity_tree(tmp_path / "heldout", people=4, images=3)
    cfg = apply_overrides(tiny_config(tiny_tree, tmp_path, steps=2), {"eval_every": 2, "heldout_dir": str(heldout)})
    run = train(cfg, resume=False)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    figures = [r["heldout"] for r in records if "heldout" in r]
    assert len(figures) == 1
    assert set(figures[0]) == {
        *(f"tpr@{f:g}" for f in (1e-1, 1e-2, 1e-3, 1e-4)),
        *(f"{kind}@{f:g}" for kind in ("dir", "dir_all_probes") for f in (1e-1, 1e-2)),
    }
    assert all(0.0 <= v <= 1.0 for v in figures[0].values())
