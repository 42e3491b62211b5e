"""The one plotting module: loss curves and image grids (matplotlib, Agg backend).

    visualize.loss_curve(report.read_metrics(workdir), 'plots/loss_curve.png')
    visualize.image_rows([originals, recons], ['original', 'reconstruction'], 'plots/reconstructions.png')
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position


def _save(fig, path):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def loss_curve(metrics, path):
  """Train loss (per log line), eval loss (per epoch) and the learning rate, against step."""
  fig, ax = plt.subplots(figsize=(7, 4))
  for key, style in (("train_loss", "-"), ("eval_loss", "o-")):
    pts = [(m["step"], m[key]) for m in metrics if key in m]
    if pts:
      ax.plot(*zip(*pts), style, label=key, markersize=3)
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_yscale("log")
  lrs = [(m["step"], m["learning_rate"]) for m in metrics if "learning_rate" in m]
  if lrs:
    ax2 = ax.twinx()
    ax2.plot(*zip(*lrs), "k:", label="learning_rate")
    ax2.set_yscale("log")
    ax2.set_ylabel("learning rate (dotted)")
  if ax.lines:
    ax.legend(loc="upper right")
  ax.set_title("loss curve")
  return _save(fig, path)


def image_rows(rows, row_names, path, col_names=None, title=None):
  """A grid: one row per N×H×W×C array in [0,1]; row names on the left."""
  n_rows, n_cols = len(rows), max(len(r) for r in rows)
  fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols + 1, 1.4 * n_rows), squeeze=False)
  for i, row in enumerate(rows):
    for j in range(n_cols):
      ax = axes[i, j]
      ax.set_xticks([])
      ax.set_yticks([])
      for s in ax.spines.values():
        s.set_visible(False)
      if j < len(row):
        img = np.clip(np.asarray(row[j], np.float32), 0, 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
      if j == 0:
        ax.set_ylabel(row_names[i], rotation=0, ha="right", va="center", fontsize=9)
      if col_names and i == 0 and j < len(col_names):
        ax.set_title(str(col_names[j]), fontsize=8)
  if title:
    fig.suptitle(title)
  return _save(fig, path)
