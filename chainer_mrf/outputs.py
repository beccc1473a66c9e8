"""A run's output folder: what ``chainer-mrf`` writes there, and how a folder stays one run's.

A run writes ``out_NNNN.png`` every ``save_iter`` steps, ``out.png`` at the end,
``trace.jsonl`` (a JSON object per step) and ``settings.json`` (what was asked for); these are
*its files* (:data:`RUN_FILES`), and nothing else in the folder is ever touched. While it
runs it holds ``.chainer-mrf.lock``:

- a second run into the same folder refuses to start (one line naming the holder's process);
- the lock is a ``flock`` on that file, which the kernel drops when its process ends however it
  ends, so a lock left by a crash is stale by construction and the next run takes it over;
- an earlier run's files are refused unless ``force``, and with ``force`` they are removed
  when the first step is done, so a run that fails before it (bad weights, no GPU, an image too
  small, too little memory) leaves them as they were;
- a folder this run created is removed again if it fails before writing anything.

Every file is written whole or not at all (:mod:`chainer_mrf._io`, and the trace is cut back to
its last whole line when a write fails), and an ``OSError`` names the path it concerns.
"""
import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re

from chainer_mrf import _io
from chainer_mrf import image as image_lib

RUN_FILES = re.compile(r'out\.png|out_\d{4,}\.png|trace\.jsonl|settings\.json')
"""The names of the files a run writes (a user's ``output.png`` or ``out.jpg`` is not one)."""

LOCK = '.chainer-mrf.lock'
"""The lock file of a running run, in its output folder."""

TRACE = 'trace.jsonl'
SETTINGS = 'settings.json'


class RunFolder:
    """The output folder of one run, locked for it; a context manager that releases it.

    Opening it (before the model loads) creates the folder, checks that it can be written by
    taking the lock, and refuses an earlier run's files unless ``force``.

    Args:
        path (str or os.PathLike): the folder; created, with its parents, if missing.
        force (bool): replace an earlier run's files (:data:`RUN_FILES`) when the first step
            is done. Default: ``False``.

    Raises:
        ValueError: ``path`` is empty or a file; another run holds the folder; it holds an earlier
            run's files and ``force`` is not set.
        OSError: the folder cannot be created or written (read-only, no permission, a file in
            the path); the message names the path and the system's reason.

    Examples:
        >>> with RunFolder('out/a') as folder:  # doctest: +SKIP
        ...     folder.begin({'preset': 'dsanno'})
        ...     folder.record({'iteration': 1, 'tv': 0.5})
        ...     folder.save('out.png', rgb)
    """

    def __init__(self, path, *, force=False):
        self.path = os.fspath(path)
        self.force = force
        self.written = False
        self._trace = None
        self._trace_end = 0
        if not self.path:
            raise ValueError('the output folder is empty: name one (. for this folder)')
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError('output path %s exists and is not a folder' % self.path)
        self._created = _missing_ancestors(self.path)
        os.makedirs(self.path, exist_ok=True)
        try:
            self._lock = _lock(self.path)
        except BaseException:
            self._remove_created()
            raise
        self.earlier = sorted(name for name in os.listdir(self.path) if RUN_FILES.fullmatch(name))
        if self.earlier and not force:
            self.close()
            raise ValueError('%s already holds %s (use --force to replace them)' % (
                self.path, ', '.join(self.earlier[:3]) + (' ...' if len(self.earlier) > 3
                                                          else '')))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def begin(self, settings):
        """Starts the run's files: removes an earlier run's (with ``force``), writes
        ``settings.json`` and opens the trace. Call it once the first step is done.

        Args:
            settings (dict): what the run was asked for, JSON-serialisable.
        """
        for name in self.earlier:
            with _naming(os.path.join(self.path, name)) as path:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        self.earlier = []
        self.written = True
        with _naming(os.path.join(self.path, SETTINGS)) as path, _io.atomic_path(path) as tmp:
            with open(tmp, 'w') as f:
                json.dump(settings, f, indent=1, allow_nan=False)
                f.write('\n')
        with _naming(os.path.join(self.path, TRACE)) as path:
            self._trace = open(path, 'wb', buffering=0)

    def record(self, values):
        """Appends one JSON line to the trace; a failed write is cut back to the last whole
        line, so the trace stays valid JSON lines whatever happens.

        Args:
            values (dict): the step's figures; every number finite (JSON has no NaN).
        """
        line = (json.dumps(values, allow_nan=False) + '\n').encode()
        with _naming(os.path.join(self.path, TRACE)):
            try:
                done = 0
                while done < len(line):
                    done += self._trace.write(line[done:])
            except OSError:
                with contextlib.suppress(OSError):
                    self._trace.truncate(self._trace_end)
                raise
            self._trace_end += len(line)

    def save(self, name, rgb):
        """Writes the image ``rgb`` (RGB ``uint8``) as ``name`` in the folder, atomically."""
        self.written = True
        with _naming(os.path.join(self.path, name)) as path:
            image_lib.save_image(path, rgb)

    def close(self):
        """Closes the trace and releases the lock; removes the folder again if this run
        created it and wrote nothing. Safe to call twice."""
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.path, LOCK))
            os.close(self._lock)
            self._lock = None
            if not self.written:
                self._remove_created()

    def _remove_created(self):
        """Removes the folders this run created, deepest first, as long as they are empty."""
        for folder in self._created:
            try:
                os.rmdir(folder)
            except OSError:
                return


def settings(config, **inputs):
    """The ``settings.json`` of a run: every option of ``config`` (a
    :class:`chainer_mrf.presets.Preset`) and the ``inputs`` given (paths, device)."""
    return {'inputs': inputs, 'options': dataclasses.asdict(config)}


def _missing_ancestors(path):
    """The folders ``os.makedirs(path)`` would create, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _lock(folder):
    """Takes the folder's lock; returns its file descriptor.

    Raises:
        ValueError: another live process holds it.
        OSError: the folder cannot be written.
    """
    path = os.path.join(folder, LOCK)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OSError(e.errno, 'cannot write in this output folder (%s)' % e.strerror,
                          folder) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors='replace').strip() or 'unknown'
            os.close(fd)
            raise ValueError('%s is in use by another run (process %s): wait for it to end, or '
                             'choose another output folder' % (folder, holder)) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            break  # a file system without locks (some network mounts): run unguarded
        # The holder may have ended and removed the file between our open and our lock: then
        # the lock is on a file no one else will find, and a fresh one is needed.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, b'%d\n' % os.getpid())
    return fd


@contextlib.contextmanager
def _naming(path):
    """Yields ``path``; an ``OSError`` inside names it (a failed write may name none, or a
    temporary file)."""
    try:
        yield path
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), path) from None
