# syntax=docker/dockerfile:1
#
# Sluice in one small image: the `sluice` binary (gateway, embedded or
# standalone registry, CLI) and ONNX Runtime's library from its PyPI wheel,
# on Debian slim, run as a non-root user.
#
#   docker build -t sluice:dev .
#   docker run --rm -p 8080:8080 -p 8081:8081 -v sluice-data:/var/lib/sluice sluice:dev serve --demo
#
# The same image runs every role: `serve` (default; embedded registry),
# `serve --registry URL` (a gateway of a standalone registry), `registry`,
# and the CLI. deploy/README.md covers Kubernetes.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
WORKDIR /src
COPY . .
# Cache mounts keep crates and compiled dependencies between builds.
# The binary ships stripped of debug info; its line tables go to
# /out/sluice.debug, which the `debuginfo` stage below holds for profiling
# (`docker build --target debuginfo -o type=local,dest=. .`).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-release.sh /out

FROM scratch AS debuginfo
COPY --from=build /out/sluice.debug /sluice.debug

FROM python:3.11-slim-${DEBIAN} AS onnxruntime
# Pinned: reference outputs in the tests were checked against this version.
ARG ORT_VERSION=1.32.0
RUN python3 -m pip download --no-cache-dir --quiet --no-deps --only-binary=:all: \
      -d /wheel "onnxruntime==${ORT_VERSION}" \
 && python3 -c "import glob, zipfile; zipfile.ZipFile(glob.glob('/wheel/onnxruntime-*.whl')[0]).extract('onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}', '/ort')" \
 && install -D -m 0644 "/ort/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" /out/libonnxruntime.so

FROM debian:${DEBIAN}-slim
# CA certificates: webhooks and HTTPS registries; nothing else is needed.
# Unpinned on purpose: Debian's security updates of the trust store come
# with each rebuild, and a pinned version vanishes at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sluice --create-home --shell /usr/sbin/nologin sluice
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY --from=onnxruntime /out/libonnxruntime.so /usr/local/lib/sluice/libonnxruntime.so
COPY models/repository /usr/share/sluice/models
ENV SLUICE_ORT_LIBRARY=/usr/local/lib/sluice/libonnxruntime.so \
    SLUICE_DATA_DIR=/var/lib/sluice \
    SLUICE_LISTEN=0.0.0.0:8080 \
    SLUICE_ADMIN_LISTEN=0.0.0.0:8081 \
    SLUICE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/sluice
VOLUME ["/var/lib/sluice"]
# 8080: predictions (Open Inference Protocol) and /metrics; 8081: the
# registry's admin API. Publish 8081 only where operators reach it.
EXPOSE 8080 8081
# Plain HTTP readiness with bash alone (no curl in the image), for the
# roles that serve predictions. Under TLS, or for `sluice registry` (8081
# only; its probe is /api/v1/health), run with --no-healthcheck and rely
# on the orchestrator's probes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SLUICE_LISTEN##*:} && printf 'GET /v2/health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM drains (readiness false, in-flight requests finish, logs flushed).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sluice"]
CMD ["serve"]
