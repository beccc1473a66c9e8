"""What every command-line entry point shares: user mistakes become one line and exit code 2."""
import argparse
import sys

#: Errors a user can cause (a missing or corrupt file, a bad option): reported, not traced.
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, PermissionError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are raised as ``ValueError``, so :func:`run` reports them as
    one ``error:`` line and exit code 2, like every other user mistake."""

    def error(self, message):
        raise ValueError(message)


def run(main, argv=None):
    """Calls ``main(argv)`` and turns a user error into ``error: ...`` on stderr and exit code 2.

    Ctrl-C exits with code 130 and no traceback; ``main``'s return value is the exit code.
    """
    try:
        return main(argv)
    except USER_ERRORS as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
