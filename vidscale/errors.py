"""User-facing errors.

Every error a user can cause or fix is a :class:`VidscaleError` whose message names the file, the
problem and the fix. The CLI maps ``exit_code`` to the process exit status in one place
(0 ok, 1 a job failed while running, 2 bad input or usage, 130 interrupted: resumable). Like PyAV's
errors, they also subclass the builtin family a caller already catches (a missing file is a
``FileNotFoundError``).
"""

from __future__ import annotations


class VidscaleError(Exception):
    """Base class: something went wrong that the user should read about. Exit status 1."""

    exit_code = 1


class InputError(VidscaleError):
    """Bad input or usage, found before any work was done. Exit status 2."""

    exit_code = 2


class MediaNotFoundError(InputError, FileNotFoundError):
    """An input file does not exist."""


class InvalidMediaError(InputError, ValueError):
    """An input file is not a usable video: not media, truncated, no video frames, ..."""


class SettingsError(InputError, ValueError):
    """A preset or option is unknown, of the wrong type or out of range."""


class ModelNotFoundError(InputError, FileNotFoundError):
    """Model weights (or the tokenizer vocabulary) are not where they were looked for."""


class CheckpointError(InputError, ValueError):
    """A checkpoint file exists but is not a (complete) VideoCrafter2 checkpoint."""


class OutputError(VidscaleError, OSError):
    """An output cannot be written (unwritable folder, existing file, full disk)."""

    def __init__(self, message: str, *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class JobError(VidscaleError):
    """A job failed while running (its finished chunks are kept for a resume)."""


class Interrupted(JobError):
    """The run was asked to stop; every finished chunk (and the running chunk's last step
    checkpoint) is saved and the job resumes next time. Exit status 130, as after SIGINT."""

    exit_code = 130
