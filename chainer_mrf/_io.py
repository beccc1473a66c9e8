"""Safe file access: an output file is either complete or untouched, never half-written; an input
file is read only if it is a regular file (never a FIFO waited on, or a device read for ever)."""
import contextlib
import errno
import hashlib
import os
import stat
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


def open_regular(path):
    """Opens a file to read, as a binary file object, if it is a regular file.

    The file is opened without waiting (``O_NONBLOCK``), so that a FIFO is refused rather than
    waited on for ever, and then checked (``fstat``), so that the file checked is the file read.

    Args:
        path (str or os.PathLike): the file.

    Returns:
        file: the open file, ``'rb'``; the caller closes it.

    Raises:
        FileNotFoundError: nothing is at ``path``.
        OSError: ``strerror`` says why in lower case: ``'broken symbolic link'``, ``'it is a
            folder'``, ``'not a regular file'`` (a FIFO, a device), or the system's reason
            (``'permission denied'``, ``'too many levels of symbolic links'``, ``'not a
            directory'``, ``'file name too long'``, ...).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0))
    except FileNotFoundError:
        if not os.path.islink(path):
            raise
        raise OSError(None, 'broken symbolic link', path) from None
    except OSError as e:
        raise OSError(e.errno, e.strerror[:1].lower() + e.strerror[1:], path) from None
    except ValueError as e:  # a NUL character in the path
        raise OSError(None, str(e), path) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, 'it is a folder', path)
        if not stat.S_ISREG(mode):
            raise OSError(None, 'not a regular file', path)
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


def file_digest(path, algorithm):
    """The hex digest of a file by hashlib's ``algorithm`` (``'sha256'``, ``'sha1'``), read a
    block at a time, so that a 528 MB caffemodel is hashed in little memory."""
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, algorithm).hexdigest()
