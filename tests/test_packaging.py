"""The package as a whole: no import cycle, the commands it installs, what it ships and cites."""
import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT

PACKAGE = 'chainer_mrf'


# --- the import graph -------------------------------------------------------------------------

def module_files(root, package):
    """``{module name: path}`` of every ``.py`` file of ``package`` (a folder of ``root``)."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(root, package)):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, '.')
                modules[dotted.removesuffix('.__init__')] = path
    return modules


def imports_of(module, path, modules):
    """``{imported package module: line}`` of one module: every ``import`` statement, at module
    level or inside a function, absolute or relative.

    ``from p import x`` imports the module ``p.x`` where there is one, else the name ``x`` from
    ``p``. The package's own ``__init__`` runs before any of its modules whatever they import,
    so it counts only where a module takes a name from it (``import chainer_mrf``,
    ``from chainer_mrf import synthesize``). Dynamic imports (``importlib``) are not seen.
    """
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith('__init__.py')
    found = {}

    def add(target, line):
        if target in modules and target != module:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                parts = module.split('.') if is_package else module.split('.')[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = '.'.join(parts + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                if base + '.' + alias.name in modules:
                    add(base + '.' + alias.name, node.lineno)
                else:
                    add(base, node.lineno)
    return found


def import_cycle(root, package):
    """The first import cycle among the modules of ``package``, as a list of
    ``(module, path, line of the import of the next one)`` that ends where it starts; or
    ``None``."""
    modules = module_files(root, package)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    done, stack = set(), []

    def visit(name):
        if name in stack:
            return stack[stack.index(name):] + [name]
        if name in done:
            return None
        stack.append(name)
        for target in sorted(graph[name]):
            cycle = visit(target)
            if cycle:
                return cycle
        stack.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        if cycle:
            return [(a, modules[a], graph[a][b]) for a, b in zip(cycle, cycle[1:])]
    return None


def describe(cycle):
    return ' -> '.join('%s (%s:%d)' % (name, os.path.relpath(path, ROOT), line)
                       for name, path, line in cycle) + ' -> ' + cycle[0][0]


def test_no_module_imports_itself_through_others():
    cycle = import_cycle(ROOT, PACKAGE)
    assert cycle is None, 'import cycle: ' + describe(cycle)


def test_the_cycle_finder_sees_every_kind_of_import(tmp_path):
    # A function-level relative import closing a cycle with a module-level absolute one.
    package = tmp_path / 'pkg'
    (package / 'sub').mkdir(parents=True)
    (package / '__init__.py').write_text('')
    (package / 'sub' / '__init__.py').write_text('')
    (package / 'a.py').write_text('import os\nfrom pkg.sub.b import thing\n')
    (package / 'sub' / 'b.py').write_text('def thing():\n    from .. import a\n')
    (package / 'c.py').write_text('import pkg.sub.b\nfrom . import a\n')
    cycle = import_cycle(str(tmp_path), 'pkg')
    assert [(name, line) for name, _, line in cycle] == [('pkg.a', 2), ('pkg.sub.b', 2)]
    (package / 'sub' / 'b.py').write_text('def thing():\n    from ..c import x\n')
    cycle = import_cycle(str(tmp_path), 'pkg')
    assert [(name, line) for name, _, line in cycle] == [('pkg.a', 2), ('pkg.sub.b', 2),
                                                         ('pkg.c', 2)]
    (package / 'c.py').write_text('import pkg\n')  # the package's __init__ imports nothing
    assert import_cycle(str(tmp_path), 'pkg') is None


# --- the commands -----------------------------------------------------------------------------

def test_python_m_chainer_mrf_is_the_chainer_mrf_command():
    done = subprocess.run([sys.executable, '-m', PACKAGE, '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('usage: ')


def _installed_script(name):
    """The console script ``name`` of this environment; skips where the package is not
    installed here (a bare checkout on ``PYTHONPATH``, as on the GPU machine)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip('not in a virtual environment: the console scripts are checked in one')
    try:
        importlib.metadata.distribution('chainer-mrf')
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('chainer-mrf is not installed in %s' % sys.prefix)
    path = os.path.join(os.path.dirname(sys.executable), name)
    assert os.path.isfile(path), (
        '%s is missing: setup.py declares it; reinstall with "%s -m pip install '
        '--no-build-isolation --no-deps -e ." (make does it when setup.py changes)'
        % (path, sys.executable))
    return path


@pytest.mark.parametrize('name', ['chainer-mrf', 'chainer-mrf-weights'])
def test_console_scripts_run(name):
    done = subprocess.run([_installed_script(name), '--help'], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('usage: %s ' % name)


def test_setup_declares_the_console_scripts():
    with open(os.path.join(ROOT, 'setup.py'), encoding='utf-8') as f:
        text = f.read()
    for entry in ("'chainer-mrf = chainer_mrf.__main__:console'",
                  "'chainer-mrf-weights = chainer_mrf.fetch:console'"):
        assert entry in text


# --- licence, citation, sdist -----------------------------------------------------------------

def read(name):
    with open(os.path.join(ROOT, name), encoding='utf-8') as f:
        return f.read()


def test_license_is_mit_as_setup_says():
    text = read('LICENSE')
    assert text.startswith('MIT License\n\nCopyright (c) 2026 the chainer-mrf authors\n')
    assert "license='MIT'" in read('setup.py')


def test_citation_credits_the_paper_the_implementations_and_vgg():
    text = read('CITATION.cff')
    try:  # parse it where PyYAML is at hand; the checks below are plain text either way
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        data = yaml.safe_load(text)
        paper = data['preferred-citation']
        assert (paper['year'], paper['start'], paper['end']) == (2016, 2479, 2486)
        assert {ref['title'] for ref in data['references']} >= {
            'chainer-neural-style', 'CNNMRF',
            'Very Deep Convolutional Networks for Large-Scale Image Recognition'}
    assert text.startswith('# ') and '\ncff-version: 1.2.0\n' in text
    for needed in ('\nmessage: ', '\ntitle: chainer-mrf\n', '\nauthors:\n', '\nlicense: MIT\n',
                   '\npreferred-citation:\n', '\nreferences:\n',
                   # the method paper
                   'title: Combining Markov Random Fields and Convolutional Neural Networks for '
                   'Image Synthesis\n', 'family-names: Li\n      given-names: Chuan\n',
                   'family-names: Wand\n      given-names: Michael\n', 'year: 2016\n',
                   'start: 2479\n', 'end: 2486\n', 'CVPR', 'doi: 10.1109/CVPR.2016.272\n',
                   # the implementations
                   'repository-code: https://github.com/dsanno/chainer-neural-style\n',
                   'repository-code: https://github.com/chuanli11/CNNMRF\n',
                   # VGG
                   'title: Very Deep Convolutional Networks for Large-Scale Image Recognition\n',
                   'family-names: Simonyan\n', 'family-names: Zisserman\n', 'ICLR', 'year: 2015\n'):
        assert needed in text, needed
    # dsanno's code is MIT: its reference says so.
    dsanno = text[text.index('title: chainer-neural-style'):]
    assert 'license: MIT\n' in dsanno[:dsanno.index('  - type:')]


def test_sdist_holds_license_and_citation(tmp_path):
    # Built from a copy, so that the shared checkout gets no build files.
    source = tmp_path / 'src'
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        '.git', '.venv*', 'models', 'out', 'build', 'dist', '*.egg-info', '.pytest_cache',
        '__pycache__', '.device', 'docs'))
    done = subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp_path)],
                          cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import tarfile

    sdist, = tmp_path.glob('*.tar.gz')  # chainer-mrf or chainer_mrf, by setuptools version
    with tarfile.open(sdist) as tar:
        names = {name.split('/', 1)[1] for name in tar.getnames() if '/' in name}
    assert {'LICENSE', 'CITATION.cff', 'setup.py', 'README.md', 'chainer_mrf/fetch.py',
            'chainer_mrf/__main__.py'} <= names


# --- documentation ----------------------------------------------------------------------------

def test_docstrings_cite_places_of_docs_algorithm_that_exist():
    # A place is a heading or a paragraph's bold label ("**MRF term.**").
    text = read('docs/algorithm.md')
    places = {line.lstrip('#').strip() for line in text.splitlines() if line.startswith('#')}
    places |= set(re.findall(r'\*\*([^*]+?)\.?\*\*', text))
    cited = 0
    for name, path in sorted(module_files(ROOT, PACKAGE).items()):
        with open(path, encoding='utf-8') as f:
            text = ' '.join(f.read().split())  # a citation may wrap
        assert 'ALGORITHM.md' not in text, \
            '%s cites ALGORITHM.md, outside the project: cite docs/algorithm.md' % path
        # A place is cited by its name in quotes, before the citation's ")".
        for match in re.finditer(r'docs/algorithm\.md([^)]*)\)', text):
            for place in re.findall(r'"([^"]+)"', match.group(1)):
                assert place in places, '%s cites a place docs/algorithm.md lacks: %r' \
                    % (path, place)
                cited += 1
    assert cited >= 7  # the check above did run
