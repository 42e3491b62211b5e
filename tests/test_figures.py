"""Inference and figure tools: shapes, interpolation endpoints, embed/generate commands."""
import os

import jax
import numpy as np
import pytest

from ae_jax import checkpoint, data, figures, inference, train
from tests.conftest import assert_user_error, run_cli, tiny


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ae"))
  train.train_and_evaluate(tiny("mlp"), workdir)
  config, model, variables, _ = checkpoint.load_for_inference(workdir)
  return workdir, config, model, variables, data.load("mnist_5k")


def test_batched_encode_matches_one_batch_and_pads(run):
  _, config, model, variables, ds = run
  x = ds.images[:700]
  z = inference.encode(model, variables, x, batch_size=256)
  assert z.shape == (700, 8) and z.dtype == np.float32
  whole = np.asarray(model.apply(variables, data.as_unit(x), method="encode"))
  np.testing.assert_allclose(z, whole, rtol=1e-5, atol=1e-5)


def test_interpolation_endpoints_are_the_reconstructions(run):
  _, config, model, variables, ds = run
  frames = figures.interpolate(model, variables, ds.images[0], ds.images[1], 10)
  assert frames.shape == (10, 28, 28, 1)
  recon = inference.reconstruct(model, variables, ds.images[:2])
  np.testing.assert_allclose(frames[0], recon[0], atol=1e-5)
  np.testing.assert_allclose(frames[-1], recon[1], atol=1e-5)
  assert np.abs(frames[5] - frames[0]).max() > 1e-3  # it moves in between


def test_generated_rows_per_class_and_denoise_shapes(run):
  _, config, model, variables, ds = run
  rows, names = figures.generate(model, variables, ds, jax.random.PRNGKey(0))
  assert names == [str(i) for i in range(10)] and all(r.shape == (5, 28, 28, 1) for r in rows)
  noisy, clean = figures.denoise(model, variables, ds.images[:3], 0.3,
                                 jax.random.PRNGKey(0))
  assert noisy.shape == clean.shape == (3, 28, 28, 1)
  assert (noisy - data.as_unit(ds.images[:3])).std() == pytest.approx(0.3, rel=0.1)


@pytest.mark.slow
def test_embed_command_is_deterministic(run, tmp_path):
  workdir = run[0]
  for name in ("a", "b"):
    proc = run_cli("ae_jax.embed", f"--workdir={workdir}", f"--output={tmp_path / name}.npy")
    assert proc.returncode == 0, proc.stderr[-2000:]
  a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
  assert a.shape == (5000, 8)
  np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_generate_command_writes_plots_and_rejects_bad_input(run, tmp_path):
  workdir = run[0]
  proc = run_cli("ae_jax.generate", f"--workdir={workdir}",
                 "--plots=generated,interpolation,denoise,reconstructions")
  assert proc.returncode == 0, proc.stderr[-2000:]
  for name in ("generated", "interpolation", "denoise", "reconstructions"):
    assert os.path.getsize(os.path.join(workdir, "plots", f"{name}.png")) > 3000
  assert_user_error(run_cli("ae_jax.generate", f"--workdir={workdir}", "--plots=interpolation",
                                    "--pair=0,99999"), "out of range")
  np.save(tmp_path / "rgb.npy", np.zeros((4, 32, 32, 3), np.uint8))
  assert_user_error(run_cli("ae_jax.embed", f"--workdir={workdir}", f"--dataset=npy:{tmp_path / 'rgb.npy'}",
                            f"--output={tmp_path / 'z.npy'}"), "expects")
