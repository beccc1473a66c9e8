#!/usr/bin/env python3
"""Regenerates the paper's figures with chainer-mrf; see --help.

The figure set lives in ``paper/`` beside this folder, outside the library: this script runs
from a source checkout (from any current directory), not from an installed copy.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isfile(os.path.join(ROOT, 'paper', 'figures.py')):
    print('error: reproduce_figures.py runs from a source checkout of chainer-mrf: it needs '
          'paper/figures.py in %s' % ROOT, file=sys.stderr)
    sys.exit(2)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from chainer_mrf import _cli  # noqa: E402
from paper import figures  # noqa: E402

sys.exit(_cli.run(figures.main))
