"""Lets Chainer 7.8.1 (the last release) run on NumPy 1.26 and 2.x, Python 3.11 and 3.12.

Import this module before ``chainer``; ``chainer_mrf/__init__.py`` does. It restores what
Chainer still uses and NumPy or Python removed:

- ``numpy.sctypes`` (removed in NumPy 2.0), read by ``chainer.functions.as_strided`` at import;
- ``numpy.float`` (removed in NumPy 1.24), used by ``F.resize_images``;
- ``chainer._environment_check``, which imports ``numpy.distutils`` (gone on Python 3.12) and
  ``pkg_resources`` (gone from recent setuptools) only to print advice: a no-op stands in for it.
"""
import sys
import types

import numpy

if not hasattr(numpy, 'sctypes'):
    numpy.sctypes = {
        'int': [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
        'uint': [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
        'float': [numpy.float16, numpy.float32, numpy.float64, numpy.longdouble],
        'complex': [numpy.complex64, numpy.complex128, numpy.clongdouble],
        'others': [bool, object, bytes, str, numpy.void],
    }

if 'float' not in vars(numpy):
    numpy.float = float

if 'chainer' not in sys.modules:
    _check = types.ModuleType('chainer._environment_check')
    _check.check = lambda: None
    sys.modules.setdefault('chainer._environment_check', _check)
