"""One exception type for every problem a user can fix.

The CLI prints ``str(err)`` as one line and exits with code 2; anything else is a bug.
Messages name the file (or option) and the fix.
"""


class MedaugError(Exception):
    """A problem with the user's input: data, config, names or options."""


class RunBusy(MedaugError):
    """Another process is training this run folder now (``medaug.train.run_lock``)."""


def fail(message: str) -> None:
    """Raise :class:`MedaugError` with ``message``."""
    raise MedaugError(message)
