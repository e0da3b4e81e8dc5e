// Live dictation's audio path: the microphone at the browser's rate (44.1 or 48 kHz, mostly)
// to 16 kHz mono PCM16, the format /v1/stream takes. A windowed-sinc low-pass (Blackman, 63
// taps, cut at 7.6 kHz) keeps what lies above 8 kHz from folding into speech, then each output
// sample is read between two filtered input samples. Posts 100 ms of PCM16 at a time with its
// loudness (RMS) for the level meter.

const TARGET_RATE = 16000;
const TAPS = 63;
const CUTOFF_HZ = 7600;
const CHUNK = TARGET_RATE / 10;

function lowPass(taps, cutoff) {
  const h = new Float32Array(taps);
  const middle = (taps - 1) / 2;
  let sum = 0;
  for (let n = 0; n < taps; n++) {
    const x = n - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const blackman = 0.42 - 0.5 * Math.cos((2 * Math.PI * n) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * n) / (taps - 1));
    h[n] = sinc * blackman;
    sum += h[n];
  }
  return h.map((v) => v / sum);
}

class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE;
    this.taps = lowPass(TAPS, Math.min(CUTOFF_HZ, sampleRate / 2 - 1) / sampleRate);
    this.ring = new Float32Array(TAPS);
    this.at = 0;
    this.filteredIndex = 0;
    this.previous = 0;
    this.next = 0;
    this.out = new Int16Array(CHUNK);
    this.length = 0;
    this.energy = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      this.ring[this.at] = channel[i];
      let y = 0;
      for (let k = 0, j = this.at; k < TAPS; k++, j = j === 0 ? TAPS - 1 : j - 1) y += this.taps[k] * this.ring[j];
      this.at = (this.at + 1) % TAPS;
      while (this.next <= this.filteredIndex) {
        const fraction = this.filteredIndex === 0 ? 1 : this.next - (this.filteredIndex - 1);
        const value = Math.max(-1, Math.min(1, this.previous + (y - this.previous) * fraction));
        this.out[this.length++] = Math.round(value * 32767);
        this.energy += value * value;
        this.next += this.step;
        if (this.length === CHUNK) this.flush();
      }
      this.previous = y;
      this.filteredIndex++;
    }
    return true;
  }

  flush() {
    const pcm = this.out.slice(0, this.length);
    this.port.postMessage({ pcm, level: Math.sqrt(this.energy / this.length) }, [pcm.buffer]);
    this.length = 0;
    this.energy = 0;
  }
}

registerProcessor("pcm16-downsampler", Pcm16Downsampler);
