# syntax=docker/dockerfile:1
#
# Switchboard image: a static Go binary on a distroless base, run as a
# non-root user. Build: docker build -t switchboard . (docker compose up builds
# it too). Configuration is the environment (see README, "Configuration").

# Build stage: the toolchain named by go.mod's "go" line. Modules come from
# the public Go module proxy, downloaded in their own layer so that a source
# change does not download them again.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -tags nomsgpack -trimpath -ldflags="-s -w" -o /out/switchboard ./cmd/switchboard

# Final stage: no shell, no package manager, CA certificates and tzdata only.
# The healthcheck is the binary itself ("switchboard -healthcheck" GETs
# /healthz on the port of ADDR and exits 0 on 200), so no curl is needed.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
ENV ADDR=:7999
EXPOSE 7999
# 65532 is distroless's "nonroot" user; numeric so that runAsNonRoot checks
# can verify it without reading /etc/passwd.
USER 65532:65532
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/switchboard", "-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchboard"]
