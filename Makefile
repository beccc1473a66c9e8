# Set-up and checks for chainer-mrf. `make test` and `make demo` work on a fresh machine with
# nothing but Python: they make a virtual environment, install pinned dependencies, fetch the
# VGG16 weights, then run. A second run reuses all of it.
#
#   make test                      default environment (python3, NumPy 2.4)
#   make demo                      stylise the bundled example (outputs in out/demo)
#   make test DEPS=oldest VENV=.venv-oldest                          Python 3.11, NumPy 1.26
#   make test PYTHON=python3.12 DEPS=newest VENV=.venv312            Python 3.12, NumPy 2.5
# DEPS names a pin file in requirements/.

PYTHON ?= python3
DEPS ?= default
VENV ?= .venv
PY := $(VENV)/bin/python
WEIGHTS := models/vgg16.npz
PYTEST_ARGS ?=

.PHONY: test demo venv weights device-bundle clean

venv: $(VENV)/.installed

# Chainer 7.8.1's sdist imports pkg_resources in setup.py: build it against setuptools<70,
# without build isolation, in the venv itself.
$(VENV)/.installed: requirements/$(DEPS).txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23" "setuptools<70" wheel
	$(PY) -m pip install -q --no-build-isolation -r requirements/$(DEPS).txt
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

weights: $(WEIGHTS)

# The chainer-mrf-weights command, run with the venv's Python (its bin/ need not be on PATH).
$(WEIGHTS): | $(VENV)/.installed
	$(PY) -m chainer_mrf.fetch fetch

# The MPI tests start the venv's mpiexec; here they must run, not skip. Skips are listed at the
# end with their reasons (-rs); CI (CHAINER_MRF_NO_SKIP=1) allows only GPU tests to skip.
test: $(VENV)/.installed $(WEIGHTS)
	CHAINER_MRF_REQUIRE_WEIGHTS=1 CHAINER_MRF_REQUIRE_MPI=1 $(PY) -m pytest tests -rs $(PYTEST_ARGS)

# The main job on the bundled example: dsanno's defaults (256 px wide, 3 levels x 100 steps).
DEMO_OUT ?= out/demo
demo: $(VENV)/.installed $(WEIGHTS)
	$(PY) scripts/generate.py -c chainer_mrf/data/content_chelsea.png \
		-s chainer_mrf/data/style_hubble_deep_field.png -o $(DEMO_OUT) --force

# What benchmarks/device.sh needs on a lent GPU machine beyond its image: Chainer's wheel and
# the paper's portrait pair (never committed: .device/ is ignored).
PAPER_DATA ?= ../shared/data/cnnmrf
device-bundle: $(VENV)/.installed
	mkdir -p .device
	$(PY) -m pip wheel -q --no-build-isolation --no-deps -w .device chainer==7.8.1
	cp $(PAPER_DATA)/content/potrait1.jpg $(PAPER_DATA)/style/picasso.jpg .device/

clean:
	rm -rf .venv .venv-oldest .venv312 build *.egg-info .pytest_cache
