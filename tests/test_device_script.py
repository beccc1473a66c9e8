"""benchmarks/device.sh, the prepared run for a lent GPU, dry-run on the CPU in its short mode:
it must finish, write few files (the device tool brings back at most 8 from $OUT) and end with
the test summary and the benchmark table (only the last 12,000 characters of output come
back)."""
import os
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT


def test_dry_run_writes_few_files_and_ends_with_the_summary(tmp_path, vgg16_path):
    if shutil.which('bash') is None:
        pytest.skip('bash is absent: install bash')
    out = tmp_path / 'out'
    env = dict(os.environ, DEVICE='-1', QUICK='1', OUT=str(out), PYTHON=sys.executable,
               OPENBLAS_NUM_THREADS='1')
    done = subprocess.run(['bash', os.path.join(ROOT, 'benchmarks', 'device.sh')], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(str(p.relative_to(out)) for p in out.rglob('*') if p.is_file())
    assert files == ['cnnmrf/out.png', 'cnnmrf/settings.json', 'cnnmrf/trace.jsonl',
                     'device.log']  # no snapshots
    tail = done.stdout[-12000:]
    summary = tail[tail.rindex('== summary'):]
    assert ' skipped' in summary or ' passed' in summary
    assert 'phase' in summary and 'step ' in summary and 'efficiency' in summary
    assert 'cnnmrf whole run' in summary
    assert summary.rstrip().endswith('4 files under %s' % out)


def test_missing_weights_fail_the_preflight(tmp_path):
    """Without models/vgg16.npz the script stops before anything runs (exit 1)."""
    root = tmp_path / 'checkout'
    (root / 'benchmarks').mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, 'benchmarks', 'device.sh'), root / 'benchmarks')
    env = dict(os.environ, DEVICE='-1', OUT=str(tmp_path / 'out'), PYTHON=sys.executable,
               PYTHONPATH=ROOT)
    done = subprocess.run(['bash', 'benchmarks/device.sh'], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and 'models/vgg16.npz is absent' in done.stdout


def test_an_unusable_gpu_fails_the_preflight(tmp_path, vgg16_path):
    """DEVICE=99, a GPU no machine here has: exit 1 after the preflight line, before any
    test."""
    env = dict(os.environ, DEVICE='99', OUT=str(tmp_path / 'out'), PYTHON=sys.executable)
    done = subprocess.run(['bash', os.path.join(ROOT, 'benchmarks', 'device.sh')], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout
    assert 'preflight: CuPy' in done.stdout and 'GPU 99: ' in done.stdout
    assert '== tests' not in done.stdout
