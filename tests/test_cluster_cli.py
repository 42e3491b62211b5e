"""End to end: `python -m ae_jax.cluster` over given embeddings and over a trained AE."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

from tests.conftest import assert_user_error, run_cli, tree_hash

FAST = ["--config=configs/cluster.py", "--config.tsne.early_exaggeration_iter=50",
        "--config.tsne.n_iter=50", "--config.tsne.n_jobs=1", "--config.kmeans.n_init=3",
        "--config.kpca.n_components=10"]


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
  d = tmp_path_factory.mktemp("arrays")
  rng = np.random.default_rng(0)
  y = np.arange(150) % 3
  x = (rng.normal(size=(150, 6)) + 8 * np.eye(6)[y]).astype(np.float32)
  files = {"x": x, "y": y, "x1d": x[:, 0], "y_short": y[:100]}
  for name, arr in files.items():
    np.save(d / f"{name}.npy", arr)
  return {name: str(d / f"{name}.npy") for name in files}


@pytest.fixture(scope="module")
def clustered(arrays, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("cluster"))
  proc = run_cli("ae_jax.cluster", f"--workdir={workdir}", *FAST, "--config.num_clusters=3",
                 f"--config.embeddings={arrays['x']}", f"--config.labels={arrays['y']}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_embeddings_run_writes_labels_metrics_and_plot(clustered):
  workdir, proc = clustered
  out = os.path.join(workdir, "cluster")
  rows = list(csv.reader(open(os.path.join(out, "labels.csv"))))
  assert rows[0] == ["id", "label"] and len(rows) == 151
  assert [int(r[0]) for r in rows[1:]] == list(range(150))
  assert {int(r[1]) for r in rows[1:]} == {0, 1, 2}
  m = json.load(open(os.path.join(out, "metrics.json")))
  assert {"acc", "nmi", "ari", "seconds", "n", "methods"} <= set(m)
  assert m["n"] == 150 and m["acc"] == 1.0
  assert {"kpca", "tsne", "kmeans", "total"} <= set(m["seconds"])
  assert m["methods"]["kpca"] == "exact" and m["methods"]["tsne"].startswith("openTSNE")
  assert os.path.getsize(os.path.join(out, "embedding.png")) > 5000
  assert "acc=1.0000" in proc.stdout
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_tsne_subsample_still_labels_every_point(arrays, tmp_path):
  proc = run_cli("ae_jax.cluster", f"--workdir={tmp_path}", *FAST, "--config.num_clusters=3",
                 f"--config.embeddings={arrays['x']}", f"--config.labels={arrays['y']}",
                 "--config.tsne.max_n=60")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = list(csv.reader(open(tmp_path / "cluster" / "labels.csv")))
  assert [int(r[0]) for r in rows[1:]] == list(range(150))
  m = json.load(open(tmp_path / "cluster" / "metrics.json"))
  assert (m["n"], m["tsne"]["fitted"], m["tsne"]["placed"], m["acc"]) == (150, 60, 90, 1.0)


@pytest.mark.parametrize("args,fragment", [
    (["--config.embeddings={x1d}"], "N×D"),
    (["--config.embeddings={x}", "--config.labels={y_short}"], "labels must be a vector of 150"),
    (["--config.embeddings={x}", "--config.num_clusters=151"], "num_clusters"),
    (["--config.embeddings={x}", "--config.labels=missing.npy"], "labels file not found"),
    (["--config.embeddings=missing.npy"], "embeddings file not found"),
    (["--config.embeddings={x}", "--config.tsne.nope=1"], "unknown config key"),
])
def test_bad_input_fails_and_leaves_the_workdir_unchanged(clustered, arrays, args, fragment):
  workdir, _ = clustered
  before = tree_hash(workdir)
  proc = run_cli("ae_jax.cluster", f"--workdir={workdir}", *FAST,
                 *[a.format(**arrays) for a in args])
  assert_user_error(proc, fragment)
  assert tree_hash(workdir) == before


def test_workdir_without_a_trained_run_is_an_error(tmp_path):
  proc = run_cli("ae_jax.cluster", f"--workdir={tmp_path}", *FAST)
  assert_user_error(proc, "no trained run")
  assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_trained_autoencoder_with_checkpoint_curve(cli_mlp_run, tmp_path):
  workdir = shutil.copytree(cli_mlp_run[0], str(tmp_path / "run"))  # 2 epochs of 35 steps
  proc = run_cli("ae_jax.cluster", f"--workdir={workdir}", *FAST, "--config.max_points=600",
                 "--config.all_checkpoints=True")
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = os.path.join(workdir, "cluster")
  m = json.load(open(os.path.join(out, "metrics.json")))
  assert m["n"] == 600 and m["dim"] == 8 and 0.1 < m["acc"] <= 1.0
  assert m["source"]["dataset"] == "mnist_5k" and m["source"]["checkpoint_step"] == 70
  assert "encode" in m["seconds"]
  rows = list(csv.reader(open(os.path.join(out, "labels.csv"))))
  assert len(rows) == 601 and all(0 <= int(r[0]) < 5000 for r in rows[1:])
  curve = json.load(open(os.path.join(out, "checkpoint_curve.json")))
  assert [r["step"] for r in curve] == [35, 70]
  assert curve[1]["train_mse"] < curve[0]["train_mse"] and all("val_acc" in r for r in curve)
  assert os.path.getsize(os.path.join(out, "checkpoint_curve.png")) > 5000


def test_a_finished_runs_rerun_can_switch_what_is_clustered(tmp_path):
  """arch.embedding only changes the readout: rerunning a finished residual AE with
  `features` trains nothing, and `ae_jax.cluster` then reads its 7×7×32 maps instead of z."""
  import configs  # pylint: disable=g-import-not-at-top
  from ae_jax import cluster, train  # pylint: disable=g-import-not-at-top
  from tests.conftest import saved_state, tiny  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).integers(0, 256, (128, 28, 28), dtype=np.uint8)
  np.save(tmp_path / "x.npy", x)
  small = {"dataset": f"npy:{tmp_path / 'x.npy'}", "batch_size": 32,
           "arch.widths": (8, 32), "arch.latent_dim": 16}
  workdir = str(tmp_path / "run")
  cfg = configs.load("cluster", num_clusters=2)
  dims = []
  for embedding in ("latent", "features"):
    train.train_and_evaluate(tiny("rotation", **small, **{"arch.embedding": embedding}), workdir)
    dims.append(cluster.load_inputs(cfg, workdir)[0].shape)
  assert dims == [(128, 16), (128, 7 * 7 * 32)]
  assert int(saved_state(workdir)[0].step) == 3  # one epoch (115 // 32 steps): nothing retrained
