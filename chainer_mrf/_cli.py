"""What every command-line entry point shares: user mistakes and system errors become one line
and exit code 2; signals that end a run become one line and exit code 128 + the signal's number.
"""
import argparse
import contextlib
import os
import signal
import sys

#: Errors a user or the system can cause (a missing or corrupt file, a bad option, a full or
#: read-only disk): reported as one line, not traced.
USER_ERRORS = (ValueError, OSError)

#: The signals that end a run as Ctrl-C does: a scheduler's time limit or ``timeout`` sends
#: SIGTERM, a closed terminal or ssh session SIGHUP.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal of :data:`SIGNALS` arrived; raised where the program was, as Ctrl-C is.

    Attributes:
        signum (int): the signal's number.
    """

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame):
    raise Interrupted(signum)


#: Signals whose :class:`Interrupted` Python dropped: a handler runs wherever the main thread
#: is, and an exception raised inside a weakref callback or a ``__del__`` (the garbage
#: collector runs them at any moment, imports included) is reported as "Exception ignored"
#: and lost, so the run would go on. :func:`raise_pending` raises it again.
_lost = []


def _unraisable(unraisable, previous=sys.unraisablehook):
    if isinstance(unraisable.exc_value, Interrupted):
        _lost.append(unraisable.exc_value.signum)
    else:
        previous(unraisable)


def raise_pending():
    """Raises, once, the :class:`Interrupted` of a signal whose exception Python dropped (see
    :data:`_lost`); a run calls it at each step."""
    if _lost:
        signum = _lost[-1]
        _lost.clear()
        raise Interrupted(signum)


def handle_signals():
    """Makes each signal of :data:`SIGNALS` raise :class:`Interrupted` in the main thread,
    except one the parent set to be ignored: under ``nohup`` a hang-up must not end the run.
    An :class:`Interrupted` that Python drops is kept for :func:`raise_pending`."""
    sys.unraisablehook = _unraisable
    for signum in SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise)


@contextlib.contextmanager
def signals_ignored():
    """Ignores :data:`SIGNALS` inside the block (a last image being saved after one)."""
    previous = [signal.signal(signum, signal.SIG_IGN) for signum in SIGNALS]
    try:
        yield
    finally:
        for signum, handler in zip(SIGNALS, previous):
            signal.signal(signum, handler)


def exit_code(interrupt):
    """128 + the signal's number, as a shell reports a process ended by it (130 for Ctrl-C)."""
    return 128 + getattr(interrupt, 'signum', signal.SIGINT)


def describe(error):
    """One line for a user error: an ``OSError`` as ``PATH: the system's reason``."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return '%s: %s' % (error.filename, error.strerror)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return ' '.join(str(error).split())


def say(*args, file=None):
    """``print`` that outlives its reader: a closed pipe or terminal (``| head``, a hang-up)
    must not end a run whose products are files, so output to it is dropped from then on.

    Args:
        file (file or None): ``sys.stdout`` (``None``) or ``sys.stderr``. Default: ``None``.
    """
    name = 'stdout' if file is None or file is sys.stdout else 'stderr'
    stream = getattr(sys, name)
    try:
        # One write: lines of several ranks, or of an unbuffered stream, are not cut in two.
        stream.write(' '.join(map(str, args)) + '\n')
        stream.flush()
    except (OSError, ValueError):  # a broken pipe, a lost terminal, a closed file
        with contextlib.suppress(OSError, ValueError):
            stream.close()  # or Python's exit would flush it again, and say so
        setattr(sys, name, open(os.devnull, 'w'))


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are raised as ``ValueError``, so :func:`run` reports them as
    one ``error:`` line and exit code 2, like every other user mistake."""

    def error(self, message):
        raise ValueError(message)


def run(main, argv=None):
    """Calls ``main(argv)`` with :func:`handle_signals` in force and turns a user or system
    error into ``error: ...`` on stderr and exit code 2.

    A signal of :data:`SIGNALS` that ``main`` does not handle exits with code 128 + its number
    (130 for Ctrl-C) and one line, no traceback; running out of memory is one line and exit
    code 2. ``main``'s return value is the exit code.
    """
    handle_signals()
    try:
        return main(argv)
    except USER_ERRORS as e:
        say('error: %s' % describe(e), file=sys.stderr)
        return 2
    except MemoryError:
        say('error: out of memory: try a smaller size, fewer style copies or layers, or '
            'bank_dtype float16', file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        say('interrupted', file=sys.stderr)
        return exit_code(e)
