# tenantry — `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
REDIS_PORT ?= 6390

.PHONY: help run run-tls run-cluster test test-unit test-e2e lint deps deps-bench bench fuzz soak conn-memory check-config

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: deps ## Start redis-server on 127.0.0.1:$(REDIS_PORT) and tenantry on 127.0.0.1:6379 (config/example.yaml)
	$(CARGO) build --release --bin tenantry
	scripts/run-local.sh $(REDIS_PORT) config/example.yaml

run-tls: deps ## Like run, but TLS on both sides: redis-server TLS-only, tenantry TLS on 127.0.0.1:6379 (mTLS on 6380), test certificates in target/run-tls/ (config/tls.yaml)
	$(CARGO) build --release --bin tenantry
	scripts/run-tls.sh $(REDIS_PORT) config/tls.yaml

run-cluster: deps ## Start a 3-master, 3-replica Redis Cluster on 127.0.0.1:7000-7005 and tenantry on 127.0.0.1:6379 (config/cluster.yaml)
	$(CARGO) build --release --bin tenantry
	scripts/run-cluster.sh config/cluster.yaml

test: deps lint ## Install what the tests need, then run every test
	$(CARGO) test --workspace --all-targets

test-unit: ## Unit and property tests of the pure crates only (no redis-server needed)
	$(CARGO) test -p tenantry-protocol -p tenantry-config

test-e2e: deps ## End-to-end tests against real redis-server processes
	$(CARGO) test -p tenantry-tests

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check-config: ## Validate config/*.yaml with `tenantry check`
	scripts/tls-certs.sh target/run-tls
	for f in config/*.yaml; do $(CARGO) run -q --bin tenantry -- check $$f || exit 1; done

deps: ## Install redis-server, redis-tools, redis-sentinel, twemproxy and chromium (Debian packages), kubernetes-validate and redis-py (PyPI) if absent
	@scripts/install-deps.sh redis-server:redis-server redis-cli:redis-tools redis-sentinel:redis-sentinel nutcracker:nutcracker chromium:chromium
	@python3 -c 'import kubernetes_validate' 2>/dev/null || pip install -q kubernetes-validate==1.37.0
	@python3 -c 'import redis' 2>/dev/null || pip install -q redis==5.2.1

deps-bench: ## Also install redis-benchmark and twemproxy (nutcracker)
	@scripts/install-deps.sh redis-server:redis-server redis-benchmark:redis-tools nutcracker:nutcracker

bench: deps-bench ## Side-by-side load benchmark: tenantry vs Redis directly vs twemproxy
	$(CARGO) build --release --bin tenantry
	python3 benches/side_by_side.py --tenantry target/release/tenantry

fuzz: ## Fuzz each target for FUZZ_SECONDS (default 60), from the seeds in fuzz/corpus; needs cargo-fuzz
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	scripts/fuzz.sh $${FUZZ_SECONDS:-60} request reply roundtrip reply_order

soak: deps-bench ## Mixed traffic with a slow reader and a churner for SOAK_SECONDS (default 300): RSS, fds, latency each second
	$(CARGO) build --release --bin tenantry
	python3 benches/soak.py --tenantry target/release/tenantry --seconds $${SOAK_SECONDS:-300}

conn-memory: deps-bench ## RSS per idle connection, tenantry beside Redis (CONNECTIONS, default 10000)
	$(CARGO) build --release --bin tenantry
	python3 benches/conn_memory.py --tenantry target/release/tenantry --connections $${CONNECTIONS:-10000}
