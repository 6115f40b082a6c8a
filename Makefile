# synctrail — every set-up step lives here, so a fresh machine needs only `make demo` and `make test`.
CARGO ?= cargo
HOME_DIR ?= .synctrail

.PHONY: demo test bench build check lint fmt clean

## The whole pipeline on the embedded backend: 20,000 messy events, faults injected, convergence checked.
demo:
	$(CARGO) run --locked --release -p synctrail-cli -- --home $(HOME_DIR) demo

## Every test: unit tests, the conformance suite on both backends (AWS through a private moto server that
## scripts/with-moto.sh installs, starts on a free loopback port and stops), the protocol rules, bad input, the
## AWS pipeline and the seeded simulation.
test:
	scripts/with-moto.sh $(CARGO) test --locked --workspace

## The benchmark on the embedded backend: events/s, latency percentiles, CPU time per event.
bench:
	$(CARGO) run --locked --release -p synctrail-cli -- --home $(HOME_DIR) bench

## The processor binary (release).
build:
	$(CARGO) build --locked --release -p synctrail-processor

check:
	$(CARGO) check --locked --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets --no-deps -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf $(HOME_DIR)
