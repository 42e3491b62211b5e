"""Clustering figures, drawn on matplotlib's Agg canvas directly (no pyplot, no display):

- `embedding`: the 2-D t-SNE map coloured by true label (when known) beside the same
  map coloured by cluster;
- `curve`: per-checkpoint train reconstruction MSE and val clustering accuracy vs step.

    import numpy as np
    from ae_jax.clustering import plot
    xy = np.random.default_rng(0).normal(size=(100, 2))
    plot.embedding('/tmp/embedding.png', xy, clusters=(xy[:, 0] > 0).astype(int))
    plot.curve('/tmp/curve.png', [{'step': 10, 'train_mse': 0.05, 'val_acc': 0.6},
                                  {'step': 20, 'train_mse': 0.03, 'val_acc': 0.7}])
"""
import numpy as np


def _figure(width, height):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(width, height), dpi=110)
  FigureCanvasAgg(fig)
  return fig


def _scatter(ax, xy, values, title):
  names, colour = np.unique(np.asarray(values), return_inverse=True)
  k = len(names)
  cmap = "tab10" if k <= 10 else "tab20" if k <= 20 else "gist_ncar"
  size = float(np.clip(2e4 / max(len(xy), 1), 0.2, 12))
  sc = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=size, cmap=cmap, linewidths=0,
                  vmin=-0.5, vmax=k - 0.5, rasterized=True)
  ax.set_title(title)
  ax.set_xticks([])
  ax.set_yticks([])
  if k <= 20:
    bar = ax.figure.colorbar(sc, ax=ax, ticks=range(k), fraction=0.046, pad=0.02)
    bar.ax.set_yticklabels([str(v) for v in names])


def embedding(path, xy, clusters, labels=None, title="", fmt=None, max_points=200_000):
  """Writes one panel (clusters) or two (true labels | clusters) of the 2-D map; above
  `max_points` points it draws a seeded subsample of that many."""
  xy = np.asarray(xy)
  if len(xy) > max_points:
    keep = np.sort(np.random.default_rng(0).choice(len(xy), max_points, replace=False))
    xy, clusters = xy[keep], np.asarray(clusters)[keep]
    labels = None if labels is None else np.asarray(labels)[keep]
  panels = [] if labels is None else [(labels, "true label")]
  panels.append((clusters, "cluster"))
  fig = _figure(6.0 * len(panels), 5.4)
  for i, (values, name) in enumerate(panels):
    _scatter(fig.add_subplot(1, len(panels), i + 1), xy, values, f"t-SNE, coloured by {name}")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, format=fmt)


def curve(path, rows, fmt=None):
  """Train MSE (left axis) and val clustering accuracy (right axis) against checkpoint step."""
  steps = [r["step"] for r in rows]
  fig = _figure(7.0, 4.5)
  ax = fig.add_subplot(1, 1, 1)
  ax.plot(steps, [r["train_mse"] for r in rows], "o-", color="tab:blue", label="train MSE")
  ax.set_xlabel("checkpoint step")
  ax.set_ylabel("train reconstruction MSE", color="tab:blue")
  acc = [r.get("val_acc", np.nan) for r in rows]
  right = ax.twinx()
  right.plot(steps, acc, "s-", color="tab:red", label="val clustering accuracy")
  right.set_ylabel("val clustering accuracy", color="tab:red")
  ax.set_title("Reconstruction vs clustering over training")
  fig.tight_layout()
  fig.savefig(path, format=fmt)
