"""chainer-mrf: CNNMRF image synthesis (Li & Wand, CVPR 2016) in Chainer."""
from setuptools import find_packages, setup

setup(
    name='chainer-mrf',
    version='0.1.0',
    description='CNNMRF style transfer and texture synthesis (Li & Wand 2016) in Chainer',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['chainer_mrf', 'chainer_mrf.*']),
    # The CUDA kernel source is compiled at run time; the images are the bundled examples.
    package_data={'chainer_mrf': ['kernels/*.cu', 'kernels/*.h', 'data/*.png', 'data/*.jpg',
                                  'data/CREDITS.md']},
    python_requires='>=3.11',
    # Chainer 7.8.1's sdist needs pkg_resources to build: install "setuptools<70" first and
    # pass --no-build-isolation (README, "Install").
    install_requires=['chainer==7.8.1', 'numpy>=1.26', 'scipy', 'pillow'],
    extras_require={
        # CuPy for CUDA 12 or 13 (README, "GPU"): no cuDNN needed. It loads cuBLAS and NVRTC
        # at run time, from a CUDA toolkit or from NVIDIA's wheels: cupy-cuda12x[ctk].
        'gpu': ['cupy-cuda12x>=13'],
        'gpu-cuda13': ['cupy-cuda13x>=14'],
        # Several processes (docs/scaling.md): mpi4py, and an MPI from wheels (mpiexec too).
        'mpi': ['mpi4py>=4', 'mpich'],
        'test': ['pytest', 'protobuf==3.20.3'],
    },
    # reproduce_figures.py is left out: it needs the checkout's paper/ folder beside it.
    scripts=['scripts/generate.py', 'scripts/convert_caffemodel.py'],
    # `python -m chainer_mrf` is chainer-mrf, and `python -m chainer_mrf.fetch`
    # chainer-mrf-weights, for a checkout not installed.
    entry_points={'console_scripts': ['chainer-mrf = chainer_mrf.__main__:console',
                                      'chainer-mrf-weights = chainer_mrf.fetch:console']},
    license='MIT',
    # CITATION.cff goes into the sdist through MANIFEST.in.
    license_files=['LICENSE'],
    classifiers=[
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Topic :: Scientific/Engineering :: Image Processing',
    ],
)
