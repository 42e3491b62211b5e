"""Sweep points as jobs through submitit: parallel local processes or a Slurm job array.

Each point runs `python -m ae_jax.main --config=... --workdir=ROOT/<point> --config.K=V ...`
as its own job (`submitit.helpers.CommandFunction`), so a point that dies (a diverged run,
a killed process, a full disk) fails alone; its log is under ROOT/jobs/.

    executor = launch.executor("local", "runs/beta/jobs")
    failed = launch.run(executor, {"seed=0": ["python", "-m", "ae_jax.main", ...]},
                        max_parallel=2, on_finish=lambda name, failed: ...)

`executor("slurm", ..., partition=..., nodes=2, gpus_per_node=8, time_min=60)` submits one
array of jobs (at most `max_parallel` running at once); a point on more than one node runs
`--multihost` (JAX reads its cluster from Slurm's variables).
"""
import time

import submitit

POLL_S = 1.0  # seconds between looks at the running jobs


def executor(kind, folder, *, partition=None, nodes=1, gpus_per_node=0, time_min=60,
             max_parallel=1):
  """A submitit executor for `kind` ('local' or 'slurm') writing job files under `folder`."""
  if kind == "local":
    ex = submitit.LocalExecutor(folder)
    ex.update_parameters(timeout_min=time_min)
    return ex
  ex = submitit.AutoExecutor(folder, cluster="slurm")
  optional = {"slurm_partition": partition, "gpus_per_node": gpus_per_node}
  ex.update_parameters(timeout_min=time_min, nodes=nodes, tasks_per_node=1,
                       slurm_array_parallelism=max_parallel, name="ae_jax",
                       **{k: v for k, v in optional.items() if v})
  return ex


def _error(job):
  """None for a job that succeeded, else its last `error:` line (or its failure's first line)."""
  try:
    job.result()
  except Exception as e:  # pylint: disable=broad-except  (submitit raises FailedJobError and others)
    said = [l.strip() for l in (job.stderr() or "").splitlines() if l.startswith("error:")]
    lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    return (said[-1:] or lines[:1] or [type(e).__name__])[0][:300]
  return None


def run(ex, commands, *, max_parallel, on_finish):
  """Runs each {name: argv} as a job, at most `max_parallel` at once (one Slurm array);
  calls `on_finish(name, failed)` as each ends, `failed` the {name: error} of the jobs failed
  so far (this one's error there if it failed); returns it."""
  pending, running, failed = list(commands.items()), {}, {}
  if isinstance(ex, submitit.AutoExecutor):  # the scheduler throttles the array itself
    with ex.batch():
      for name, argv in pending:
        running[name] = ex.submit(submitit.helpers.CommandFunction(argv))
    pending = []
  while pending or running:
    while pending and len(running) < max_parallel:
      name, argv = pending.pop(0)
      running[name] = ex.submit(submitit.helpers.CommandFunction(argv))
      print(f"submitted {name} (job {running[name].job_id})", flush=True)
    for name, job in list(running.items()):
      if job.done():
        del running[name]
        error = _error(job)
        if error is not None:
          failed[name] = error
        on_finish(name, failed)
    time.sleep(POLL_S if running or pending else 0)
  return failed
