# syntax=docker/dockerfile:1
# The sockcap image: the release binary on Debian 12, run as a non-root user.
#
#   docker build -t sockcap .
#   docker run --rm sockcap run /scenario.toml ...
#
# Non-root is enough for what sockcap does in a container: raising its soft
# RLIMIT_NOFILE to the hard limit, counting sockets through sock_diag, reading /proc.
# Sysctls such as net.ipv4.ip_local_port_range are set by the container runtime from
# the pod spec (securityContext.sysctls), not by sockcap. What needs root is a
# scenario's [netns] (unshare(CLONE_NEWNET)): run those with --user 0 and
# CAP_SYS_ADMIN, or outside a container.

FROM rust:bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crates and build artifacts between builds (BuildKit); the
# binary is copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sockcap \
    && cp target/release/sockcap /usr/local/bin/sockcap

FROM debian:bookworm-slim
# No packages beyond the base: `sockcap probe` counts sockets by state as `ss` would.
# For interactive digging add iproute2 (ss) here.
COPY --from=build /usr/local/bin/sockcap /usr/local/bin/sockcap
# A numeric user, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
ENTRYPOINT ["sockcap"]
CMD ["--help"]
