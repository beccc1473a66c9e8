#!/usr/bin/env python3
"""Regenerates the paper's figures with chainer-mrf; see --help."""
import sys

from chainer_mrf import _cli, figures

sys.exit(_cli.run(figures.main))
