# syntax=docker/dockerfile:1
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the build directory persist between builds (BuildKit cache mounts): a change
# to easm's code rebuilds easm's crates, not its dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin easm && cp target/release/easm /usr/local/bin/easm

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data easm \
    && mkdir -p /data && chown easm:easm /data
COPY --from=build /usr/local/bin/easm /usr/local/bin/easm
ENV EASM_DATA_DIR=/data EASM_LISTEN=0.0.0.0:8080
# Not root: the server needs no privilege, and the data volume is its own.
USER easm
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["easm"]
CMD ["serve"]
