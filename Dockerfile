# The image the Helm chart runs (helm/firn). Multi-stage: build on Rust, run on a slim Debian as
# an unprivileged user. cluster-tests/tests/cluster/helm.rs checks that the entrypoint, port, user and data
# directory here match the chart.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p firn-node --bin firn \
 && install -D -m 0755 target/release/firn /out/firn

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 firn \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/firn --shell /usr/sbin/nologin firn \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/firn
COPY --from=build /out/firn /usr/local/bin/firn
USER 10001:10001
WORKDIR /var/lib/firn
VOLUME ["/var/lib/firn"]
EXPOSE 4040
ENV FIRN_DATA_DIR=/var/lib/firn
ENTRYPOINT ["/usr/local/bin/firn"]
CMD ["serve", "--listen", "0.0.0.0:4040"]
