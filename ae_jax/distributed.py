"""Many hosts on JAX's multi-controller runtime: the flags, the start, and who writes files.

Every process runs the same command on the same workdir. `--multihost` starts JAX's
distributed runtime with its own cluster detection (Slurm, Open MPI, Cloud TPU,
Kubernetes); a manual launch adds the coordinator and this process's place:

    python -m ae_jax.main --config=configs/rotation.py --workdir=/shared/run --multihost \\
        --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0   # and =1 on the other

Process 0 alone writes metrics, config.json, events, plots, manifests and the workdir lock
(`is_primary()`); orbax saves checkpoints from every process together. A process that
dies makes the others fail within `--heartbeat_timeout_s` instead of hanging. `ae_jax.embed`
and `ae_jax.cluster` take the same flags: every process encodes its share of the images
(`inference.embed_shared`), process 0 writes (and clusters).
"""
from absl import flags


def define_flags():
  """The multi-host flags every command that runs a model takes."""
  flags.DEFINE_bool("multihost", False, "Start JAX's distributed runtime (many hosts).")
  flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (manual launch).")
  flags.DEFINE_integer("num_processes", None, "Processes in the job (manual launch).")
  flags.DEFINE_integer("process_id", None, "This process's index, 0..N-1 (manual launch).")
  flags.DEFINE_integer("heartbeat_timeout_s", 30, "Seconds before a silent process fails the job.")


def initialize():
  """Starts the distributed runtime when `--multihost` is given (before any JAX computation)."""
  import jax  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  manual = [f.coordinator_address, f.num_processes, f.process_id]
  if any(v is not None for v in manual) and not f.multihost:
    from ae_jax import errors  # pylint: disable=g-import-not-at-top
    raise errors.UserError("--coordinator_address/--num_processes/--process_id need --multihost")
  if f.multihost:
    jax.distributed.initialize(coordinator_address=f.coordinator_address,
                               num_processes=f.num_processes, process_id=f.process_id,
                               heartbeat_timeout_seconds=f.heartbeat_timeout_s,
                               # process 0 listens on the address given, not on every interface
                               coordinator_bind_address=f.coordinator_address)


def barrier(name):
  """Waits until every process reaches this point (after process 0 changed shared files)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def is_primary():
  """Whether this process writes the run's files (process 0 of the job)."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0
