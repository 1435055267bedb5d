"""Shared by the tests that drive the command line in-process (pytest puts this folder on sys.path)."""
import signal
import sys


def cli(capsys, *args):
    """Run ``medaug ARGS`` in this process (no interpreter start-up): (exit code, stdout, stderr as one line)."""
    from medaug.cli import main

    old = sys.argv
    sys.argv = ["medaug", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = old
        signal.signal(signal.SIGINT, signal.default_int_handler)
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())
