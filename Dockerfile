# podiumd and the podium CLI in a small image. Build from the repository's root:
#   docker build -t podium .
# The build is the release build .ci/run and the README use: `cargo build --release --locked`.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# protoc is vendored by the build (protox), so cargo is all the build needs.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin podiumd --bin podium \
    && install -D target/release/podiumd target/release/podium -t /out/

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 podium \
    && useradd --system --uid 10001 --gid podium --home-dir /var/lib/podium --no-create-home podium \
    && install -d -o podium -g podium -m 0700 /var/lib/podium
COPY --from=build /out/podiumd /out/podium /usr/local/bin/
USER podium
VOLUME /var/lib/podium
EXPOSE 50051
ENV PODIUM_ADDR=127.0.0.1:50051
# Inside a container the port must face outward; plaintext because TLS ends at the proxy or
# the platform's ingress (or give --tls-cert and --tls-key).
ENTRYPOINT ["podiumd", "--data-dir", "/var/lib/podium", "--listen", "0.0.0.0:50051", "--allow-plaintext"]
# gRPC health, as load balancers ask it: SERVING once the read models are replayed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["podium", "health"]
