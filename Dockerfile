# Tailor: multi-stage image. Build on Debian bookworm with the same dependency script as
# developers and CI; run on a slim bookworm with only the runtime libraries.
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN TAILOR_BUILD_DIR=/build scripts/build.sh -DTAILOR_BUILD_TESTS=OFF

FROM debian:bookworm-slim AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
    && useradd --system --uid 10001 --home-dir /var/lib/tailor --create-home tailor
COPY --from=build /build/bin/tailord /build/bin/tailorctl /usr/local/bin/
USER tailor
VOLUME ["/var/lib/tailor"]
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["tailorctl", "--target=127.0.0.1:50051", "--deadline_ms=2000", "health"]
ENTRYPOINT ["tailord", "--data_dir=/var/lib/tailor/data", "--listen=0.0.0.0:50051", \
            "--metrics_listen=0.0.0.0:9464"]
