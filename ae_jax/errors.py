"""User-facing errors: one `error:` line on stderr and exit code 2 (3: diverged, 4: save failed).

Everything that validates input raises `UserError`; training that hits a non-finite
loss raises `NonFiniteLoss` (its last good checkpoint kept). The command-line entry
points wrap their work in `cli_main`, which turns either into one line:

    from ae_jax import errors
    raise errors.UserError("dataset file not found: x.npy")   # -> error: dataset file not found: x.npy
"""
import errno
import functools
import sys


class UserError(Exception):
  """Bad input from the user (file, array, config, checkpoint): exit code 2."""

  exit_code = 2


class NonFiniteLoss(UserError):
  """Training diverged; the last good checkpoint is kept."""

  exit_code = 3


class SaveFailed(UserError):
  """A checkpoint could not be written (a full disk); the earlier ones are kept."""

  exit_code = 4


def fail(message: str, code: int = 2):
  """Prints `error: message` on stderr and exits with `code`."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def cli_main(fn):
  """Decorates an absl `main(argv)` so a `UserError` becomes one `error:` line."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except UserError as e:
      fail(str(e), e.exit_code)
    except OSError as e:
      if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        raise
      fail(f"cannot write {e.filename}: {e.strerror}", SaveFailed.exit_code)

  return wrapper
