#!/usr/bin/env python3
"""Converts a VGG16/VGG19 .caffemodel to a chainer-mrf weights file; see --help."""
import sys

from chainer_mrf import _cli, caffe

sys.exit(_cli.run(caffe.main))
