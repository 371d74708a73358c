# syntax=docker/dockerfile:1
#
# The azora image: `docker build -t azora .` (BuildKit, the default builder
# since Docker 23). Two stages: the build on the Rust image this project is
# tested with, and a distroless runtime with the two binaries and nothing
# else (no shell, no package manager), run as a non-root user.
#
# The protos need no `protoc`: build.rs compiles them in pure Rust (protox).
# SQLite is bundled into the binary (libsqlite3-sys), and nothing links
# OpenSSL, so the runtime needs only glibc and libgcc.

FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the crates.io downloads and the target directory
# between builds, so a change to azora's own code recompiles azora alone.
# The binaries are copied out because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin azora \
    && cargo build --release --locked -p azora-probe --bin azora-probe \
    && install -D -m 0755 target/release/azora /out/azora \
    && install -D -m 0755 target/release/azora-probe /out/azora-probe

# Debian 12 (bookworm), as the builder: the same glibc.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/azora /out/azora-probe /usr/local/bin/
# The compiled default listens on 127.0.0.1, which nothing outside the
# container reaches.
ENV AZORA_LISTEN_ADDR=0.0.0.0:50051
# There is deliberately no default database for a container: the compiled
# default is an SQLite file in the working directory, which would keep the
# books in the container's writable layer and lose them with it. `/` is not
# writable for this user, so without AZORA_DATABASE_URL (a postgres:// URL)
# azora stops at start-up: SQLite cannot create its file.
WORKDIR /
# distroless's `nonroot`, by number so that Kubernetes' runAsNonRoot can
# verify it.
USER 65532:65532
EXPOSE 50051
ENTRYPOINT ["azora"]
CMD ["serve"]
