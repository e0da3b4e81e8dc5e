# syntax=docker/dockerfile:1
# MMT as one process (`mmt serve`): every route, in-process workers, local Whisper on CPU.
# For Railway (railway.json) or any container host. It listens on $PORT and keeps its SQLite
# database and audio under DATA_DIR (/data): mount a volume there (Railway: a volume on /data).
#   docker build -t mmt .            (--build-arg MODEL=base for the multilingual model)
# Production-safe by default: ENV=prod refuses to start without INTERNAL_JWT_SECRET, or with
# stored PHI unencrypted (`mmt secrets --encryption 1` prints what to set).
#
# Railway's rules (docs.railway.com, "Dockerfiles" and "Volumes"): no VOLUME instruction; the
# volume is mounted owned by root, so the entrypoint hands it to the `mmt` user before dropping
# root (scripts/docker-entrypoint.sh; `make container-check` runs those steps); cache mounts
# are named `s/<service id>-<path>` — Railway passes RAILWAY_SERVICE_ID as a build argument.

FROM rust:1.95-bookworm AS build
ARG RAILWAY_SERVICE_ID=local
ENV DEBIAN_FRONTEND=noninteractive \
    # Portable: whisper.cpp would otherwise compile for the build host's CPU.
    GGML_NATIVE=OFF
RUN apt-get update && apt-get install -y --no-install-recommends \
        cmake clang libclang-dev libopus-dev pkg-config python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target directory persist between builds: a redeploy recompiles only what
# changed, not every crate.
RUN --mount=type=cache,id=s/${RAILWAY_SERVICE_ID}-/usr/local/cargo/registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=s/${RAILWAY_SERVICE_ID}-/src/target,target=/src/target \
    cargo build --release --locked -p mmt-core --bin mmt \
    && cp target/release/mmt /usr/local/bin/mmt

# The model is fetched and checked at build time (official file; PyPI + converter offline),
# and baked into the image.
FROM build AS model
ARG MODEL=tiny.en
ARG RAILWAY_SERVICE_ID=local
RUN --mount=type=cache,id=s/${RAILWAY_SERVICE_ID}-/src/target,target=/src/target \
    python3 -m venv /opt/tools && PATH=/opt/tools/bin:$PATH MODEL=${MODEL} MODELS_DIR=/models scripts/model.sh \
    && PATH=/opt/tools/bin:$PATH MODEL=silero-vad MODELS_DIR=/models scripts/model.sh

FROM debian:bookworm-slim
ARG MODEL=tiny.en
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libopus0 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home /data mmt
COPY --from=build /usr/local/bin/mmt /usr/local/bin/mmt
COPY --from=model /models/ggml-${MODEL}.bin /models/ggml-${MODEL}.bin
COPY --from=model /models/ggml-silero-vad.bin /models/ggml-silero-vad.bin
COPY scripts/docker-entrypoint.sh /usr/local/bin/mmt-entrypoint
ENV ENV=prod LOG_FORMAT=json HOST=0.0.0.0 PORT=8080 DATA_DIR=/data MMT_RUN_AS=mmt \
    ENABLE_LOCAL_TRANSCRIPTION=true WHISPER_MODEL_PATH=/models/ggml-${MODEL}.bin \
    WHISPER_VAD=silero WHISPER_VAD_MODEL_PATH=/models/ggml-silero-vad.bin
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS "http://127.0.0.1:${PORT}/health/ready" || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["mmt-entrypoint", "mmt", "serve"]
