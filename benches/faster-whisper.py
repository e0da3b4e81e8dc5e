"""faster-whisper (CTranslate2) on one file, for `make bench`: prints one JSON line.

usage: faster-whisper.py MODEL_DIR AUDIO THREADS POLICY
  POLICY greedy:  temperature 0, no fallback, no conditioning on previous text (MMT's pieces
                  are decoded the same way)
  POLICY default: faster-whisper's defaults (temperature fallback 0.0..1.0, conditioning on)
Both decode greedily (beam_size=1) with int8 weights, without faster-whisper's VAD filter.
"""

import json
import resource
import sys
import time

from faster_whisper import WhisperModel

model_dir, audio, threads, policy = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1)
loaded = time.perf_counter()
options = dict(beam_size=1, best_of=1, language="en", vad_filter=False)
if policy == "greedy":
    options.update(temperature=0.0, condition_on_previous_text=False)
elif policy != "default":
    sys.exit(f"unknown policy {policy}")
segments, info = model.transcribe(audio, **options)
text = " ".join(segment.text.strip() for segment in segments)  # decoding happens here
done = time.perf_counter()
print(json.dumps({
    "load_s": loaded - started,
    "transcribe_s": done - loaded,
    "audio_s": info.duration,
    "real_time_factor": (done - loaded) / info.duration,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "text": text,
}))
