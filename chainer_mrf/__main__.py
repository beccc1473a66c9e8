"""The ``chainer-mrf`` command: ``python -m chainer_mrf``, the installed ``chainer-mrf`` and, in a
checkout, ``scripts/generate.py`` (:func:`command`)."""
import sys

from chainer_mrf import _cli


def command(prog):
    """Runs the synthesis command named ``prog`` in its messages; returns the exit code.

    The signals are handled (:func:`chainer_mrf._cli.run`) before Chainer is imported, so an
    interrupt while it loads is one line too.
    """
    def main(argv):
        from chainer_mrf import cli
        _cli.raise_pending()  # a signal whose exception was dropped while Chainer loaded
        return cli.main(argv, prog=prog)
    return _cli.run(main)


def console():
    """The ``chainer-mrf`` console script."""
    sys.exit(command('chainer-mrf'))


if __name__ == '__main__':  # importing this module (the console script, a test) runs nothing
    console()
