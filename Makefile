# fhirgate — the two commands a fresh machine needs: `make run` and `make test`.
GO       ?= go
BIN      := bin/fhirgate
PKGS     := ./...
EXAMPLES ?= $(HOME)/.cache/fhirgate

.PHONY: build run test test-short bench examples vet clean

build:
	$(GO) build -o $(BIN) ./cmd/fhirgate

# Starts the server on the embedded store (SQLite, ./data/fhirgate.db) with the built-in authorization server.
run: build
	@echo "fhirgate: FHIR base http://localhost:8080/fhir — built-in authorization server at http://localhost:8080/auth."
	@echo "  token:  $(BIN) token --scope 'system/*.cruds'"
	@echo "  use:    curl -H \"Authorization: Bearer \$$($(BIN) token --scope 'system/*.cruds')\" http://localhost:8080/fhir/Patient"
	./$(BIN) serve

# Every test, including the official-examples validation (fetched with npm
# into a cache outside the repo) and the crash-recovery tests.
test: examples vet
	FHIRGATE_EXAMPLES_DIR=$(EXAMPLES)/hl7.fhir.r4.examples-4.0.1/package $(GO) test -count=1 -timeout 25m $(PKGS)
	@echo "the end-to-end search, access, release and bundle suites again on the embedded FerretDB (store/mongo):"
	FHIRGATE_TEST_STORE=ferretdb FHIRGATE_EXAMPLES_DIR=$(EXAMPLES)/hl7.fhir.r4.examples-4.0.1/package $(GO) test -count=1 -timeout 15m ./internal/app/

test-short: vet
	$(GO) test -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

examples:
	FHIRGATE_EXAMPLES_CACHE=$(EXAMPLES) bash scripts/fetch-examples.sh

# Go benchmarks, then the load run of the real binary (cmd/fhirbench).
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./fhir/... ./store/... ./smart/... ./policy/... ./audit/...
	$(GO) run ./cmd/fhirbench -bin $(BIN)

clean:
	rm -rf bin data gen-out
