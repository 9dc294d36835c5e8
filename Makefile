# `make run` and `make test` are all a newcomer types: each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench proto clean

run: $(STAMP)
	$(BIN)/amoskys run

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/store_write.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/bus_ingest.py
	$(BIN)/python bench/agent_overhead.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/latency.py

# Regenerate the committed protobuf code after editing a .proto file.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. amoskys/telemetry/telemetry.proto
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. amoskys/bus/bus.proto

# Reinstall whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
