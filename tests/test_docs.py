"""The documentation that is generated from the code is current."""
import os

from chainer_mrf import cli

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs')


def test_usage_holds_the_current_cli_reference():
    with open(os.path.join(DOCS, 'usage.md'), encoding='utf-8') as f:
        text = f.read()
    start = text.index('tests/test_docs.py checks it -->\n') + len(
        'tests/test_docs.py checks it -->\n')
    end = text.index('<!-- end of generated table -->')
    assert text[start:end] == cli.reference(), \
        'docs/usage.md is stale: paste the output of "python -m chainer_mrf.cli" into it'
