"""Clustering scores against known labels: Hungarian-matched accuracy, NMI and ARI.

    import numpy as np
    from ae_jax.clustering import metrics
    y = np.array([0, 0, 1, 1, 2])
    metrics.scores(y, np.array([2, 2, 0, 0, 1]))  # {'acc': 1.0, 'nmi': 1.0, 'ari': 1.0}
    metrics.cluster_summary(y, np.array([2, 2, 0, 0, 0]))
    # [{'cluster': 0, 'size': 3, 'majority': 1, 'purity': 0.667}, {'cluster': 2, ...}]

`accuracy` matches clusters to classes one-to-one (scipy's `linear_sum_assignment` on
the contingency table, rectangular when the counts differ); for two clusters it is
max(acc, 1 - acc) of the raw agreement.
"""
import numpy as np
import scipy.optimize
from sklearn import metrics as skm


def contingency(labels, clusters):
  """(cluster ids, class ids, counts table): rows are clusters, columns are classes."""
  ids, c = np.unique(np.asarray(clusters), return_inverse=True)
  classes, y = np.unique(np.asarray(labels), return_inverse=True)
  table = np.zeros((len(ids), len(classes)), np.int64)
  np.add.at(table, (c.ravel(), y.ravel()), 1)
  return ids, classes, table


def accuracy(labels, clusters):
  """Fraction of points whose cluster maps to their class under the best one-to-one matching."""
  table = contingency(labels, clusters)[2]
  rows, cols = scipy.optimize.linear_sum_assignment(-table)
  return float(table[rows, cols].sum() / table.sum())


def cluster_summary(labels, clusters):
  """Per cluster (in cluster-id order): size, majority class and its share (purity)."""
  ids, classes, table = contingency(labels, clusters)
  return [{"cluster": i.item(), "size": int(row.sum()), "majority": classes[row.argmax()].item(),
           "purity": float(row.max() / row.sum())} for i, row in zip(ids, table)]


def scores(labels, clusters):
  """{'acc', 'nmi', 'ari'} of the clusters against the true labels."""
  labels, clusters = np.asarray(labels), np.asarray(clusters)
  return {
      "acc": accuracy(labels, clusters),
      "nmi": float(skm.normalized_mutual_info_score(labels, clusters)),
      "ari": float(skm.adjusted_rand_score(labels, clusters)),
  }
