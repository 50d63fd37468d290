"""``python -m eventstore`` and the ``eventstore`` console script: the command line.

The entry point is here, not in ``eventstore.cli``, so that Ctrl-C while the command line's modules load (click,
rich and every command: most of a second) ends it like Ctrl-C during a command, without a traceback.
"""

import sys


def main() -> None:
    """The console script's entry point: load the command line, then run it."""
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        raise SystemExit(130) from None  # eventstore.cli.INTERRUPTED (128 + SIGINT), which is not loaded yet
    run()


if __name__ == "__main__":
    main()
