"""Clustering scores against known labels: Hungarian-matched accuracy, NMI and ARI.

    import numpy as np
    from ae_jax.clustering import metrics
    y = np.array([0, 0, 1, 1, 2])
    metrics.scores(y, np.array([2, 2, 0, 0, 1]))  # {'acc': 1.0, 'nmi': 1.0, 'ari': 1.0}

`accuracy` matches clusters to classes one-to-one (scipy's `linear_sum_assignment` on
the contingency table, rectangular when the counts differ); for two clusters it is
max(acc, 1 - acc) of the raw agreement.
"""
import numpy as np
import scipy.optimize
from sklearn import metrics as skm


def contingency(labels, clusters):
  """Counts table: rows are clusters, columns are classes (both relabelled 0..)."""
  _, y = np.unique(np.asarray(labels), return_inverse=True)
  _, c = np.unique(np.asarray(clusters), return_inverse=True)
  table = np.zeros((c.max() + 1, y.max() + 1), np.int64)
  np.add.at(table, (c, y), 1)
  return table


def accuracy(labels, clusters):
  """Fraction of points whose cluster maps to their class under the best one-to-one matching."""
  table = contingency(labels, clusters)
  rows, cols = scipy.optimize.linear_sum_assignment(-table)
  return float(table[rows, cols].sum() / table.sum())


def scores(labels, clusters):
  labels, clusters = np.asarray(labels), np.asarray(clusters)
  return {
      "acc": accuracy(labels, clusters),
      "nmi": float(skm.normalized_mutual_info_score(labels, clusters)),
      "ari": float(skm.adjusted_rand_score(labels, clusters)),
  }
