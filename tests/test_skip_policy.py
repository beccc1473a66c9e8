"""The skip policy of tests/conftest.py: where CHAINER_MRF_NO_SKIP=1 (CI), only GPU tests skip."""
import os
import subprocess
import sys

import pytest

from helpers import ROOT

CASES = '''
import pytest

def test_needs_a_compiler():
    pytest.skip('cc is absent: install cc')

@pytest.fixture
def data():
    pytest.skip('data folder is absent: put it beside the clone')

def test_needs_data(data):
    pass

@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip('CuPy with a CUDA device is absent')
'''


@pytest.mark.parametrize('strict', [False, True])
def test_only_gpu_tests_may_skip_in_ci(tmp_path, strict):
    (tmp_path / 'test_cases.py').write_text(CASES)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'tests'))
    env.pop('CHAINER_MRF_NO_SKIP', None)
    if strict:
        env['CHAINER_MRF_NO_SKIP'] = '1'
    done = subprocess.run(
        [sys.executable, '-m', 'pytest', '-p', 'conftest', '-p', 'no:cacheprovider', '-rs',
         '-c', os.path.join(ROOT, 'pytest.ini'), '--rootdir', str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    summary = done.stdout.strip().splitlines()[-1]
    if strict:
        # A skip in a fixture becomes an error at setup, one in the test a failure; both keep
        # the reason, which says what to install.
        assert done.returncode == 1 and '1 failed, 1 skipped, 1 error' in summary, done.stdout
        assert done.stdout.count('only GPU tests may skip here') == 2, done.stdout
        assert 'install cc' in done.stdout and 'put it beside the clone' in done.stdout
    else:
        assert done.returncode == 0 and '3 skipped' in summary, done.stdout
