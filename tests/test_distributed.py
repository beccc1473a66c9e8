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


@pytest.mark.parametrize('ranks', [2, 3])
def test_a_rank_runs_the_network_only_on_the_copies_it_holds(vgg, monkeypatch, ranks):
    """mrf.mrf_terms under a communicator: the network runs on a style copy at the layers
    whose shard holds some of its patches, every copy is run by some rank, and each rank's
    banks are the whole bank's entries [start, stop) to the bit (the stand-ins are not read)."""
    import types

    import numpy

    from chainer_mrf import mrf, presets
    from chainer_mrf.vgg import VGG
    config = presets.get_preset('cnnmrf').replace(arch='vgg16', memory_budget=4 * 48 * 50)
    style = numpy.random.RandomState(0).uniform(-100, 100, (1, 3, 40, 52)).astype(numpy.float32)
    shapes = vgg.shapes((48, 64), config.style_layers)
    passes = []
    run = VGG.__call__
    monkeypatch.setattr(VGG, '__call__', lambda self, x, layers=(), **kw: (
        passes.append(tuple(layers)), run(self, x, layers=layers, **kw))[1])
    whole = mrf.mrf_terms(vgg, [style], shapes, config)
    assert passes == [tuple(config.style_layers)] * 9  # one process: every copy, every layer
    seen = set()
    for rank in range(ranks):
        passes.clear()
        terms = mrf.mrf_terms(vgg, [style], shapes, config,
                              comm=types.SimpleNamespace(rank=rank, size=ranks))
        assert sum(map(len, passes)) < 9 * len(config.style_layers)  # copies x layers
        seen.update(passes)
        for term, one in zip(terms, whole):
            bank = term.bank
            if bank.local is not None:
                numpy.testing.assert_array_equal(
                    bank.local.patches, one.bank.patches[bank.start:bank.start + bank.held])
                numpy.testing.assert_array_equal(
                    bank.local.inverse_norms,
                    one.bank.inverse_norms[bank.start:bank.start + bank.held])
    assert set(config.style_layers) == {name for layers in seen for name in layers}


def test_pieces_of_a_shard():
    assert distributed.pieces([4, 4, 4], 3, 9) == [(3, 4), (0, 4), (0, 1)]
    assert distributed.pieces([4, 4], 0, 8) == [(0, 4), (0, 4)]
    low, high = distributed.pieces([5, 2], 5, 5)[1]  # an empty shard holds nothing
    assert low >= high
