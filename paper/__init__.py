"""The figure set of Li & Wand 2016 (and dsanno's comparison), regenerated with chainer-mrf.

Not part of the library and not installed with it; see ``paper/README.md``.
"""
