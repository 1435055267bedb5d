"""One exception type for every problem a user can fix, and the one line for a fault of the machine.

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


#: errno -> what to do, for the faults of the machine a user can fix (see :func:`machine_fault`)
FAULTS = {
    "ENOSPC": "the disk is full: free space (or write to another disk) and run again",
    "EDQUOT": "the disk quota is used up: free space (or write to another disk) and run again",
    "EFBIG": "the file is larger than the file system (or the process's file size limit) allows: write to another disk",
    "EROFS": "the file system is read-only: write to a writable folder (--out, or MEDAUG_CACHE for the cache)",
    "EACCES": "medaug may not use it: fix its permissions, or choose a folder you may write to",
    "EPERM": "medaug may not use it: fix its permissions, or choose a folder you may write to",
    "ENOTDIR": "a part of the path is a file, not a folder: choose another path",
    "EISDIR": "it is a folder, not a file: give a file path",
    "EEXIST": "a file is in the way of a folder medaug needs: move it, or choose another path",
    "ENAMETOOLONG": "the name is too long for the file system: choose a shorter name",
    "ELOOP": "the path has a symlink loop: choose another path",
    "EMLINK": "the folder holds too many entries for the file system: choose another folder",
}


def machine_fault(exc: OSError) -> str | None:
    """One line for an OSError the user can fix (a full or read-only disk, permissions, a file in the way, a long
    name): the path, what happened and the fix; None for any other OSError (a bug)."""
    import errno

    name = errno.errorcode.get(exc.errno or -1, "")
    if name not in FAULTS:
        return None
    where = f"{exc.filename}" if exc.filename is not None else "a file medaug writes"
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    return f"{where}: {exc.strerror or name} ({name}); {FAULTS[name]}"
