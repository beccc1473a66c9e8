"""What of chainer_mrf.distributed needs no MPI: when a process counts as a rank, and the
plain path of one process. (Runs over ranks are in test_mpi.py.)"""
import importlib.util

import pytest

from chainer_mrf import distributed, synthesis


@pytest.mark.parametrize('name', ['PMI_SIZE', 'OMPI_COMM_WORLD_SIZE', 'PMIX_SIZE',
                                  'SLURM_STEP_NUM_TASKS'])
def test_launched_by_each_launcher(monkeypatch, name):
    for other in distributed._SIZE_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    assert not distributed.launched()
    monkeypatch.setenv(name, '1')  # mpiexec -n 1 is one process
    assert not distributed.launched()
    monkeypatch.setenv(name, 'x')
    assert not distributed.launched()
    monkeypatch.setenv(name, '4')
    assert distributed.launched()


def test_a_slurm_allocation_alone_is_not_a_launch(monkeypatch):
    for other in distributed._SIZE_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv('SLURM_NTASKS', '8')
    assert not distributed.launched()


def test_without_mpi4py_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'mpi4py' else real(name, *a))
    with pytest.raises(ValueError, match=r'needs mpi4py: pip install "chainer-mrf\[mpi\]"'):
        distributed.create_communicator()


def test_one_process_paths():
    assert distributed.size(None) == distributed.local_size(None) == 1
    assert distributed.rank(None) == 0
    assert distributed.split(None, 1) == (0, None)
    with pytest.raises(OSError) as raised:  # no communicator: the error as it is, unmarked
        with distributed.agreement(None):
            raise OSError(2, 'No such file or directory', 'x.png')
    assert not distributed.is_agreed(raised.value)
    assert distributed.is_agreed(distributed.agreed(ValueError('all ranks')))


def test_synthesize_refuses_a_comm_that_is_no_communicator():
    with pytest.raises(TypeError, match='ChainerMN communicator'):
        synthesis.synthesize(None, 'style.png', comm=object())
