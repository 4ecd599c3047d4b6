# Sagashop: the two commands a fresh machine needs are `make run` and `make test`.
# Everything else here is what those two are made of.

GO      ?= go
GOTEST  ?= $(GO) test -race -count=1 -timeout 25m
PKGS    ?= ./...

.PHONY: run test lint unit e2e build infra-up infra-down infra-status infra-reset clean \
	containers containers-compose containers-e2e containers-clean fresh-machine

## run: start the local infrastructure and all five services in the foreground (Ctrl-C stops everything)
## (everything on 127.0.0.1; SAGASHOP_BIND=0.0.0.0 makes the services listen on every interface), seeded by sagashopctl
run:
	tools/run.sh

## test: start the local infrastructure if needed, then gofmt, go vet and every test (unit, integration, e2e) with -race,
## also those of sagashopctl (tools/sagashopctl, a module of its own)
test: infra-up lint
	$(GOTEST) $(PKGS)
	cd tools/sagashopctl && $(GOTEST) ./...

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tools/sagashopctl && $(GO) vet ./...

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

clean: infra-down
	rm -rf bin .local
