"""Batches in one process: ``generate.py -c a -c b`` or ``-c FOLDER`` writes each image to
``OUT/<its stem>/``; one bad image fails alone and the summary and exit status say so.
(Batches spread over MPI ranks are in test_mpi.py.)"""
import json
import os
import shutil

from helpers import assert_one_error, generate

BATCH = ['-w', '64', '--resolution_num', '1', '--iter', '2']


def _batch_folder(tmp_path, cli_images, names):
    folder = tmp_path / 'contents'
    folder.mkdir()
    for name in names:
        shutil.copy(cli_images[0], folder / name)
    return folder


def _summary(done):
    """The batch's summary: its count line and one line per image, from the end of stdout."""
    lines = done.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith('batch: '))
    return lines[start], lines[start + 1:]


def test_each_image_to_its_own_folder(tmp_path, cli_images):
    folder = _batch_folder(tmp_path, cli_images, ['a.png', 'b.png'])
    out = tmp_path / 'out'
    done = generate('-c', folder / 'a.png', '-c', folder / 'b.png', '-c', cli_images[0],
                    '-s', cli_images[1], '-o', out, *BATCH)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ['a', 'b', 'content']
    for stem, source in (('a', folder / 'a.png'), ('b', folder / 'b.png'),
                         ('content', cli_images[0])):
        assert {'out.png', 'trace.jsonl', 'settings.json'} <= set(os.listdir(out / stem))
        with open(out / stem / 'settings.json') as f:
            assert json.load(f)['inputs']['content'] == str(source)
    count, lines = _summary(done)
    assert count == 'batch: 3 images, 3 saved, 0 failed'
    assert len(lines) == 3 and all(': saved ' in line for line in lines)
    # Progress lines name their image.
    assert any(line.startswith('[a] level 1/1') for line in done.stdout.splitlines())


def test_a_bad_image_fails_alone(tmp_path, cli_images):
    folder = _batch_folder(tmp_path, cli_images, ['a.png', 'c.png'])
    (folder / 'b.png').write_bytes(b'not a png')
    (folder / 'notes.txt').write_text('not an image: a folder batch leaves it out')
    out = tmp_path / 'out'
    done = generate('-c', folder, '-s', cli_images[1], '-o', out, *BATCH)
    assert done.returncode == 2, done.stderr
    assert 'Traceback' not in done.stderr
    assert sorted(os.listdir(out)) == ['a', 'c']
    count, lines = _summary(done)
    assert count == 'batch: 3 images, 2 saved, 1 failed'
    failed = [line for line in lines if ': failed: ' in line]
    assert len(failed) == 1 and 'b.png' in failed[0] and 'cannot read image' in failed[0]


def test_refused_batches(tmp_path, cli_images):
    folder = _batch_folder(tmp_path, cli_images, ['a.png'])
    other = tmp_path / 'other'
    other.mkdir()
    shutil.copy(cli_images[0], other / 'a.jpg')
    out = tmp_path / 'out'
    assert_one_error(generate('-c', folder, '-c', other / 'a.jpg', '-s', cli_images[1], '-o',
                              out, *BATCH), 'two content images would be written to')
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert_one_error(generate('-c', empty, '-s', cli_images[1], '-o', out, *BATCH),
                     'holds no image')
    assert_one_error(generate('-c', folder, '-s', cli_images[1], '--content_map',
                              cli_images[0], '--style_map', cli_images[1], '-o', out, *BATCH),
                     'takes no --content_map')
    assert not out.exists()
