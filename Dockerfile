# The image of one Sagashop service: docker build --build-arg SERVICE=order -t sagashop/order .
# docker-compose.yml builds all five from this file.
#
# Two stages: the Go toolchain compiles every service and the sagashopctl
# helper as static binaries (CGO off), then a runtime image without a shell
# gets the one binary it runs plus sagashopctl (its healthcheck and the demo
# seeding). The build stage does not depend on SERVICE, so building the five
# images compiles once and the rest come from the cache.
#
# Base images are build arguments so machines without a registry can use
# local ones (tools/containers/compose.sh passes GO_IMAGE and
# RUNTIME_IMAGE=scratch). Any runtime base works: the binaries are static and
# the user is numeric.
ARG GO_IMAGE=golang:1.26
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
# Go module proxy override, e.g. behind a corporate proxy (empty: the default).
ARG GOPROXY
ENV CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY pkg/ pkg/
# sagashopctl is a module of its own that uses the root module's pkg/ (its
# dead-letter commands): it is built after pkg/ is in place.
COPY tools/sagashopctl/ tools/sagashopctl/
RUN cd tools/sagashopctl && go build -ldflags="-s -w" -o /out/sagashopctl .
COPY services/ services/
RUN go build -ldflags="-s -w" -o /out/ ./services/...
ARG SERVICE
RUN test -n "${SERVICE}" && test -x "/out/${SERVICE}" \
	|| { echo "build with --build-arg SERVICE=<name>, one of:" $(ls /out); exit 1; }; \
	cp "/out/${SERVICE}" /out/service

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/service /usr/local/bin/service
COPY --from=build /out/sagashopctl /usr/local/bin/sagashopctl
# distroless's nonroot user; numeric so that FROM scratch works as well.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/service"]
