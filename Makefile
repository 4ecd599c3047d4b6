# Sagashop: the two commands a fresh machine needs are `make run` and `make test`.
# Everything else here is what those two are made of.

GO      ?= go
GOTEST  ?= $(GO) test -race -count=1 -timeout 25m
PKGS    ?= ./...

.PHONY: run test lint unit e2e build infra-up infra-down infra-status infra-reset clean \
	containers containers-compose containers-e2e containers-clean fresh-machine bench bench-relay \
	chaos chaos-smoke chaos-single

## run: start the local infrastructure and all five services in the foreground (Ctrl-C stops everything)
## (everything on 127.0.0.1; SAGASHOP_BIND=0.0.0.0 makes the services listen on every interface), seeded by sagashopctl
run:
	tools/run.sh

## test: start the local infrastructure if needed, then gofmt, go vet and every test (unit, integration, e2e) with -race,
## also those of sagashopctl, of the benchmark's report and of the chaos suite (tools/sagashopctl, tools/bench,
## tools/chaos: modules of their own), then the chaos suite's smoke (make chaos-smoke, about 2 minutes, on a private
## PostgreSQL and Kafka of its own), its 3 poison messages included: a message dead-lettered twice (docs/RELIABILITY.md,
## finding 1) is one letter to every reader of dead letters, the check included.
test: infra-up lint
	$(GOTEST) $(PKGS)
	cd tools/sagashopctl && $(GOTEST) ./...
	cd tools/bench && $(GOTEST) ./...
	cd tools/chaos && $(GOTEST) ./...
	$(MAKE) chaos-smoke

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tools/sagashopctl && $(GO) vet ./...
	cd tools/bench && $(GO) vet ./...
	cd tools/chaos && $(GO) vet ./...

## unit: the tests without the e2e suite (still against the real PostgreSQL and Kafka)
unit: infra-up
	$(GOTEST) $$($(GO) list ./... | grep -v /e2e)

## e2e: only the end-to-end suite (builds the five binaries and drives them over HTTP)
e2e: infra-up
	$(GOTEST) -v ./e2e/

## build: the five service binaries into bin/
build:
	$(GO) build -o bin/ ./services/...

## infra-up / infra-down / infra-status / infra-reset: PostgreSQL, Kafka and Jaeger as local processes on 127.0.0.1
## (data in .local/; SAGASHOP_LOCAL, PG_PORT, KAFKA_PORT override, see tools/infra.sh)
infra-up:
	tools/infra.sh up
infra-down:
	tools/infra.sh down
infra-status:
	tools/infra.sh status
infra-reset:
	tools/infra.sh reset

## containers: without Docker or a registry (podman, images built here from Debian packages, Maven Central and
## the Go proxy): (a) docker compose up --build and the README's curl session (e2e TestSmoke), (b) the e2e suite
## on testcontainers. Several minutes the first time. CONTAINERS_E2E= (empty) skips (b); any other value is the
## test command (b) runs. The steps are scripts in tools/containers/ (engine.sh, images.sh, compose.sh, e2e.sh).
CONTAINERS_E2E ?= $(GOTEST) -v ./e2e/
containers:
	CONTAINERS_E2E_CMD='$(CONTAINERS_E2E)' tools/containers/containers.sh all
## containers-compose / containers-e2e: only (a) / only (b) of make containers
containers-compose:
	tools/containers/containers.sh compose
containers-e2e:
	CONTAINERS_E2E_CMD='$(CONTAINERS_E2E)' tools/containers/containers.sh e2e
## containers-clean: stop podman's API service, remove the images make containers built and .local/containers
containers-clean:
	tools/containers/containers.sh clean

## fresh-machine: the README's two commands, make run (with the curl session) and make test, in a clean Debian 12
## container with only the README's prerequisites, on a clean clone of the committed HEAD. Not part of make test;
## 10 to 20 minutes. FRESH_MACHINE_TIMEOUT (seconds, default 3600) bounds it.
fresh-machine:
	tools/freshmachine/check.sh

## bench: the benchmark, written into docs/BENCHMARKS.md (between its make bench markers) and docs/bench/*.png. For each
## of BENCH_VARIANTS ("shipped sampled": tracing as shipped, 1 % of traces sampled), the system started afresh by
## tools/run.sh and sagashopctl load at each of BENCH_RATES ("50 100 200 500 1000 1500" orders/s) in turn, BENCH_DURATION
## (60s) each with BENCH_DRAIN (180s) for the last orders, up to the first rate past the knee; then bench-relay
## (BENCH_RELAY=0 skips it). Raw reports in .local/bench/<timestamp>/ (BENCH_DIR). Needs 8081-8085 free (no make run).
## Not part of make test; with the defaults 16 minutes here (the knee at 200/s), longer if the knee is higher.
bench:
	tools/bench/bench.sh

## bench-relay: the outbox relay against Watermill's forwarder (tools/relaybench, a module of its own): relay.json and
## relay.md into BENCH_OUT (default a fresh .local/bench/relay-<timestamp>/); RELAYBENCH_FLAGS are more flags for it
## (e.g. "-events 2000 -steady 5s -repeat 1" for a quick look; go run . -h in tools/relaybench). A few minutes; not
## part of make test.
BENCH_OUT ?= .local/bench/relay-$(shell date -u +%Y%m%dT%H%M%SZ)
RELAYBENCH_FLAGS ?=
bench-relay: infra-up
	cd tools/relaybench && $(GO) run . -out $(abspath $(BENCH_OUT)) $(RELAYBENCH_FLAGS)

## chaos: the fault-injection suite at full size (tools/chaos, a module of its own): a private PostgreSQL (35432) and
## Kafka (39092, 39093) and the five services under its own supervisor, 5,000 orders at 50/s, open loop, while it
## SIGKILLs services 40 times, pauses them past the session timeout, SIGKILLs Kafka and stops PostgreSQL -m immediate
## 3 times each, slows, stalls and resets the services' PostgreSQL connections (Toxiproxy, in process) 12 times and puts
## poison messages on a topic, on a plan from a seed it prints (CHAOS_FLAGS="-seed N" repeats
## one); then heal, drain and every invariant checked (docs/RELIABILITY.md). Report and logs in .local/chaos/run-*/;
## exits 1 when an invariant fails. Runs as root (PostgreSQL is driven as its postgres user). About 5 minutes here.
## chaos-smoke: the same at the smoke size (400 orders at 20/s, a handful of each fault), about 2 minutes.
CHAOS_FLAGS ?=
chaos:
	cd tools/chaos && $(GO) run . -orders 5000 -rate 50 -kills 40 -pauses 3 -kafka-restarts 3 -postgres-restarts 3 \
		-net-faults 12 -poisons 5 $(CHAOS_FLAGS)
chaos-smoke:
	cd tools/chaos && $(GO) run . -orders 400 -rate 20 -kills 5 -pauses 1 -kafka-restarts 1 -postgres-restarts 1 \
		-net-faults 3 -poisons 3 $(CHAOS_FLAGS)
## chaos-single: one fault kind alone, to measure what it costs (KIND=kill, pause, kafka or postgres; 3 of them 30 s
## apart at 30 orders/s, nothing else injected): per fault the longest send->terminal of the orders placed around it
## and how long until latency is back to normal (docs/RELIABILITY.md, "Recovery speed"). About 3 minutes.
KIND ?= kill
chaos-single:
	cd tools/chaos && $(GO) run . -single $(KIND) -rate 30 $(CHAOS_FLAGS)

clean: infra-down
	rm -rf bin .local
