"""The array-level clustering library: scores, kernel PCA (exact and Nyström), kNN, pipeline."""
import re

import numpy as np
import pytest
from sklearn.decomposition import KernelPCA
from sklearn.neighbors import NearestNeighbors

from ae_jax import errors
from ae_jax.clustering import kpca, metrics, pipeline, plot, tsne
import configs


def tiny_cfg(num_clusters, **overrides):
  base = {"num_clusters": num_clusters, "tsne.early_exaggeration_iter": 50, "tsne.n_iter": 50,
          "tsne.n_jobs": 1, "kpca.n_components": 10, "kmeans.n_init": 3}
  return configs.load("cluster", **{**base, **overrides})


def blobs(n=240, k=4, d=8, sep=10.0, seed=0):
  rng = np.random.default_rng(seed)
  y = np.arange(n) % k
  return (rng.normal(size=(n, d)) + sep * np.eye(d)[y]).astype(np.float32), y


def subspace_cos(a, b):
  """Cosines of the principal angles between the column spaces of a and b (1 = same)."""
  return np.linalg.svd(np.linalg.qr(a)[0].T @ np.linalg.qr(b)[0], compute_uv=False)


def test_scores_are_perfect_on_permuted_labels():
  y = np.random.default_rng(0).integers(0, 5, 300)
  perm = np.array([3, 0, 4, 1, 2])
  assert metrics.scores(y, perm[y] + 10) == {"acc": 1.0, "nmi": 1.0, "ari": 1.0}


def test_two_cluster_accuracy_is_max_of_agreement_and_its_complement():
  rng = np.random.default_rng(1)
  for _ in range(5):
    y, c = rng.integers(0, 2, 101), rng.integers(0, 2, 101)
    agree = float(np.mean(y == c))
    assert metrics.accuracy(y, c) == pytest.approx(max(agree, 1 - agree))


def test_accuracy_with_more_clusters_than_classes():
  y = np.array([0, 0, 0, 1, 1, 1])
  assert metrics.accuracy(y, np.array([0, 0, 2, 1, 1, 1])) == pytest.approx(5 / 6)


def test_cluster_summary_names_each_clusters_majority():
  summary = metrics.cluster_summary(np.array([4, 4, 9, 9, 9]), np.array([1, 1, 1, 0, 0]))
  assert summary == [{"cluster": 0, "size": 2, "majority": 9, "purity": 1.0},
                     {"cluster": 1, "size": 3, "majority": 4, "purity": pytest.approx(2 / 3)}]


def test_median_gamma_follows_the_data_scale():
  x, _ = blobs()
  assert kpca.median_gamma(3 * x) == pytest.approx(kpca.median_gamma(x) / 9, rel=1e-4)


def test_exact_kernel_pca_matches_scikit_learn():
  x, _ = blobs(n=200)
  z, info = kpca.fit_transform(x, n_components=6, gamma=0.01)
  ref = KernelPCA(6, kernel="rbf", gamma=0.01).fit_transform(x.astype(np.float64))
  assert info["method"] == "exact"
  np.testing.assert_allclose(np.abs(z), np.abs(ref), atol=1e-3 * np.abs(ref).max())


def test_randomized_eigensolver_finds_the_dense_subspace():
  x, _ = blobs(n=400)
  zd, _ = kpca.fit_transform(x, 8, eigen_solver="dense")
  zr, info = kpca.fit_transform(x, 8, eigen_solver="randomized")
  assert info["eigen_solver"] == "randomized"
  assert subspace_cos(zd, zr).min() > 0.999


@pytest.mark.parametrize("landmarks,min_cos", [(300, 0.9999), (150, 0.98)])
def test_nystroem_agrees_with_exact_kernel_pca(landmarks, min_cos):
  x = np.random.default_rng(2).normal(size=(300, 5)).astype(np.float32)
  exact, info_e = kpca.fit_transform(x, 8)
  approx, info_n = kpca.fit_transform(x, 8, exact_max_n=100, landmarks=landmarks)
  assert (info_e["method"], info_n["method"]) == ("exact", "nystroem")
  assert info_n["landmarks"] == landmarks
  assert subspace_cos(exact, approx).min() > min_cos
  k_exact, k_approx = exact @ exact.T, approx @ approx.T
  assert np.abs(k_exact - k_approx).max() < 0.05 * np.abs(k_exact).max()


def test_exact_knn_matches_scikit_learn():
  x = np.random.default_rng(3).normal(size=(500, 6)).astype(np.float32)
  idx, dist = tsne.knn(x, 7, block=128, n_jobs=2)
  ref_d, ref_i = NearestNeighbors(n_neighbors=8).fit(x).kneighbors(x)
  np.testing.assert_array_equal(idx, ref_i[:, 1:])
  np.testing.assert_allclose(dist, ref_d[:, 1:], rtol=1e-3, atol=1e-3)


def test_knn_against_a_reference_set_matches_scikit_learn():
  rng = np.random.default_rng(4)
  ref, query = rng.normal(size=(300, 5)).astype(np.float32), rng.normal(size=(700, 5)).astype(np.float32)
  idx, dist = tsne.knn(query, 6, block=100, n_jobs=2, ref=ref)
  ref_d, ref_i = NearestNeighbors(n_neighbors=6).fit(ref).kneighbors(query)
  np.testing.assert_array_equal(idx, ref_i)
  np.testing.assert_allclose(dist, ref_d, rtol=1e-3, atol=1e-3)


def test_place_puts_a_point_at_the_median_of_its_neighbours_positions():
  ref_z = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]], np.float32)
  ref_xy = np.array([[0, 0], [1, 5], [2, 1], [50, 50], [60, 40]], np.float32)
  xy = tsne.place(np.array([[1.1], [10.4]], np.float32), ref_z, ref_xy, k=3)
  np.testing.assert_array_equal(xy, [[1, 1], [50, 40]])  # medians of 0,1,2 and 10,11,2


def test_tsne_on_a_subsample_places_the_rest_and_clusters_every_point():
  x, y = blobs(n=600)
  clusters, m, xy = pipeline.run_pipeline(x, tiny_cfg(4, **{"tsne.max_n": 200}), labels=y)
  assert (m["tsne"]["fitted"], m["tsne"]["placed"]) == (200, 400)
  assert "place" in m["tsne"]["seconds"]
  assert clusters.shape == (600,) and xy.shape == (600, 2) and np.isfinite(xy).all()
  assert m["acc"] == 1.0  # placed points land in their own blob's island
  _, m_all, _ = pipeline.run_pipeline(x, tiny_cfg(4, **{"tsne.max_n": 0}), labels=y)
  assert (m_all["tsne"]["fitted"], "placed" in m_all["tsne"]) == (600, False)


@pytest.mark.parametrize("exact_max_n", [6000, 100])
def test_well_separated_blobs_cluster_perfectly(exact_max_n):
  x, y = blobs()
  cfg = tiny_cfg(4, **{"kpca.exact_max_n": exact_max_n, "kpca.landmarks": 100})
  clusters, m, xy = pipeline.run_pipeline(x, cfg, labels=y)
  assert (m["acc"], m["nmi"], m["ari"]) == (1.0, 1.0, 1.0)
  assert clusters.shape == (240,) and xy.shape == (240, 2) and m["n"] == 240
  assert m["methods"]["kpca"] == ("exact" if exact_max_n > 240 else "nystroem")
  assert m["methods"]["tsne"] == "openTSNE-bh"
  assert set(m["seconds"]) >= {"kpca", "tsne", "kmeans", "total"}


def test_pipeline_without_labels_or_kernel_pca():
  x, _ = blobs(n=60, k=2)
  clusters, m, _ = pipeline.run_pipeline(x, tiny_cfg(2, **{"kpca.n_components": 0}))
  assert "acc" not in m and m["methods"]["kpca"] == "none"
  assert sorted(set(clusters.tolist())) == [0, 1]


def test_one_dimensional_embeddings_without_kernel_pca_cluster():
  y = np.repeat([0, 1, 2], 40)
  x = (10.0 * y + np.random.default_rng(0).normal(size=120))[:, None]  # three separated bumps
  clusters, m, xy = pipeline.run_pipeline(x, tiny_cfg(3, **{"kpca.n_components": 0}), labels=y)
  assert xy.shape == (120, 2) and m["dim"] == 1 and m["acc"] == 1.0


@pytest.mark.parametrize("x,labels,k,fragment", [
    (np.zeros(10), None, 2, "N×D"),
    (np.zeros((10, 2)), np.zeros(9, int), 2, "labels must be a vector of 10"),
    (np.zeros((10, 2)), None, 11, "num_clusters must be in [1, 10]"),
    (np.full((10, 2), np.nan), None, 2, "NaN"),
    (np.zeros((10, 2)), np.full(10, 0.5), 2, "integers"),
    (np.ones((10, 3)), None, 2, "all 10 embeddings are the same vector"),
])
def test_bad_input_is_a_user_error(x, labels, k, fragment):
  with pytest.raises(errors.UserError, match=re.escape(fragment)):
    pipeline.run_pipeline(x, tiny_cfg(k), labels=labels)


def test_plots_are_written(tmp_path):
  xy = np.random.default_rng(4).normal(size=(50, 2))
  plot.embedding(tmp_path / "e.png", xy, (xy[:, 0] > 0).astype(int), labels=np.arange(50) % 3)
  plot.curve(tmp_path / "c.png", [{"step": 1, "train_mse": 0.1, "val_acc": 0.5},
                                  {"step": 2, "train_mse": 0.05, "val_acc": 0.6}])
  assert (tmp_path / "e.png").stat().st_size > 5000 and (tmp_path / "c.png").stat().st_size > 5000
