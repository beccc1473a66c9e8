#!/usr/bin/env python3
"""CNNMRF style transfer; options mirror dsanno's run_mrf.py. See --help."""
import sys

from chainer_mrf import _cli, cli

sys.exit(_cli.run(cli.main))
