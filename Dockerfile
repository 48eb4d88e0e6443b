# The cpi image: built in one stage, shipped as the binary alone on a
# distroless base (glibc and CA roots, no shell, no package manager), run as
# a non-root user. docs/operations.md ("Install") gives the image name the
# Kubernetes kit uses and how to build it:
#   docker build --build-arg CPI_GIT_COMMIT=$(git rev-parse --short HEAD) \
#     -t registry.example.com/cpi:0.1.0 .
# tests/integration/release.rs parses this file (no container engine runs on
# the development machine).

FROM rust:1-bookworm AS build
ARG CPI_GIT_COMMIT=unknown
ENV CPI_GIT_COMMIT=${CPI_GIT_COMMIT}
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cpi

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cpi /usr/local/bin/cpi
# The uid and gid the Kubernetes kit runs as (runAsUser 10001).
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/cpi"]
CMD ["run"]
