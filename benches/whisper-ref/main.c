// whisper-ref MODEL WAV THREADS: transcribes a 16 kHz mono 16-bit WAV with whisper.cpp's
// defaults for greedy decoding and prints the text and the wall time of whisper_full.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "whisper.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL WAV THREADS\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(size);
    if (fread(bytes, 1, size, f) != (size_t)size) { fprintf(stderr, "short read\n"); return 1; }
    fclose(f);
    // Find the "data" chunk of a PCM WAV.
    long pos = 12, data = -1, len = 0;
    while (pos + 8 <= size) {
        uint32_t chunk = bytes[pos + 4] | bytes[pos + 5] << 8 | bytes[pos + 6] << 16 | (uint32_t)bytes[pos + 7] << 24;
        if (memcmp(bytes + pos, "data", 4) == 0) { data = pos + 8; len = chunk; break; }
        pos += 8 + chunk + (chunk & 1);
    }
    if (data < 0) { fprintf(stderr, "no data chunk\n"); return 1; }
    if (data + len > size) len = size - data;
    int n = (int)(len / 2);
    float *pcm = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) pcm[i] = (int16_t)(bytes[data + 2 * i] | bytes[data + 2 * i + 1] << 8) / 32768.0f;

    struct whisper_context_params cparams = whisper_context_default_params();
    struct whisper_context *ctx = whisper_init_from_file_with_params(argv[1], cparams);
    if (!ctx) { fprintf(stderr, "cannot load model\n"); return 1; }
    struct whisper_full_params params = whisper_full_default_params(WHISPER_SAMPLING_GREEDY);
    params.n_threads = atoi(argv[3]);
    params.print_progress = false;
    params.print_realtime = false;
    params.print_timestamps = false;
    params.language = "en";
    double t0 = now();
    if (whisper_full(ctx, params, pcm, n) != 0) { fprintf(stderr, "whisper_full failed\n"); return 1; }
    double elapsed = now() - t0;
    for (int i = 0; i < whisper_full_n_segments(ctx); i++) fputs(whisper_full_get_segment_text(ctx, i), stderr);
    fputc('\n', stderr);
    printf("{\"audio_s\": %.3f, \"transcribe_s\": %.3f, \"real_time_factor\": %.4f}\n", n / 16000.0, elapsed, elapsed / (n / 16000.0));
    whisper_free(ctx);
    return 0;
}
