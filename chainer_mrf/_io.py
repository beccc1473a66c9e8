"""Atomic file writing: an output file is either complete or untouched, never half-written."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; renames it onto ``path`` if the block succeeds.

    The temporary file lives in the same folder (so the rename is atomic) and keeps the
    extension of ``path`` (so writers that pick a format from it still work). On any error the
    temporary file is removed and ``path`` is left as it was; an ``OSError`` that names no file
    or the temporary one is raised again naming ``path``.

    Args:
        path (str or os.PathLike): the file to write.

    Examples:
        >>> with atomic_path('out.png') as tmp:  # doctest: +SKIP
        ...     image.save(tmp)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix='.' + base + '.', suffix='.part' + ext, dir=folder)
    except OSError as error:  # it names the temporary file it tried
        raise OSError(error.errno, error.strerror, path) from None
    os.close(fd)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(error, OSError) and error.filename in (None, tmp):
            # A full disk fails a write, which names no file, or the rename of a file the
            # caller never named: name the file being written.
            raise OSError(error.errno, error.strerror or str(error), path) from None
        raise
