#!/usr/bin/env python3
"""CNNMRF style transfer; options mirror dsanno's run_mrf.py. See --help."""
import signal
import sys

# NumPy loads before chainer_mrf's handlers are in place: until then a scheduler's SIGTERM or a
# hang-up ends the start-up as Ctrl-C does, with one line (unless ignored, as under nohup).
for _signum in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(_signum) is not signal.SIG_IGN:
        signal.signal(_signum, signal.default_int_handler)
try:
    from chainer_mrf.__main__ import command
except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    sys.exit(130)

sys.exit(command('generate.py'))
