"""``python -m chainer_mrf ...``: the ``chainer-mrf`` command (:func:`chainer_mrf._cli.console`),
also for a checkout that is not installed."""
if __name__ == '__main__':  # importing this module (pydoc, a test) must not run the command
    from chainer_mrf import _cli

    _cli.console()
