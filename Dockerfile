# syntax=docker/dockerfile:1
# Build stage: the pinned Bun compiles the gateway into one self-contained binary.
FROM oven/bun:1.4.5 AS build
WORKDIR /app
COPY package.json bun.lock bunfig.toml ./
RUN bun install --frozen-lockfile
COPY tsconfig.json buf.yaml buf.gen.yaml ./
COPY proto ./proto
COPY gen ./gen
COPY src ./src
RUN bun run build

# Runtime stage: glibc and the binary, nothing else; runs as an unprivileged user.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home xiaozhi
COPY --from=build /app/dist/xiaozhi-im /usr/local/bin/xiaozhi-im
USER 10001
ENV IM_SERVER_PORT=8081
EXPOSE 8081
# The MQTT + UDP transport, served with IM_MQTT_ENABLED=true (MQTT, MQTT over TLS, UDP audio).
EXPOSE 1883 8883 8884/udp
# The binary checks itself (the image has no curl): /alive answers while the process serves.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/xiaozhi-im", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/xiaozhi-im"]
CMD ["serve"]
