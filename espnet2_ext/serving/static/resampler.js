// Resampling a stream of samples as torchaudio.functional.resample resamples a whole
// recording (what our Python side does to audio at other rates): a Hann-windowed sinc
// reaching `zeros` zero crossings either side, cut off at `rolloff` of the lower Nyquist
// frequency. Output sample n is input time n * inRate / outRate; it is computed once the
// input it reaches has arrived, so the stream gives the whole recording's samples however
// it is cut. finish() computes the rest as if zeros followed, as torchaudio pads.

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

export class Resampler {
  constructor(inRate, outRate, zeros = 6, rolloff = 0.99) {
    if (!(Number.isInteger(inRate) && Number.isInteger(outRate) && inRate > 0 && outRate > 0)) {
      throw new RangeError(`sample rates must be whole numbers of Hz, got ${inRate} and ${outRate}`);
    }
    const divisor = gcd(inRate, outRate);
    this.orig = inRate / divisor;
    this.next = outRate / divisor;
    this.base = Math.min(this.orig, this.next) * rolloff;
    this.zeros = zeros;
    this.reach = (zeros * this.orig) / this.base; // input samples either side of an output that count
    this.reset();
  }

  reset() {
    this.buffer = new Float32Array(0); // input samples from index `start` on
    this.start = 0;
    this.received = 0;
    this.emitted = 0;
  }

  /** Take input samples (a Float32Array); return the output samples they complete. */
  push(samples) {
    if (this.orig === this.next) return Float32Array.from(samples);
    this._append(samples);
    return this._emit((n) => Math.floor(this._time(n) + this.reach) < this.received);
  }

  /** The output samples still owed (the input's end zero-padded); then reset. */
  finish() {
    if (this.orig === this.next) return new Float32Array(0);
    const total = Math.ceil((this.next * this.received) / this.orig);
    const out = this._emit((n) => n < total);
    this.reset();
    return out;
  }

  _time(n) {
    return (n * this.orig) / this.next;
  }

  _append(samples) {
    const keep = Math.max(0, Math.ceil(this._time(this.emitted) - this.reach) - this.start);
    const kept = this.buffer.subarray(Math.min(keep, this.buffer.length));
    const joined = new Float32Array(kept.length + samples.length);
    joined.set(kept);
    joined.set(samples, kept.length);
    this.start += this.buffer.length - kept.length;
    this.buffer = joined;
    this.received += samples.length;
  }

  _emit(ready) {
    const out = [];
    const scale = this.base / this.orig;
    for (let n = this.emitted; ready(n); n++) {
      const time = this._time(n);
      let sum = 0;
      for (let k = Math.ceil(time - this.reach); k <= Math.floor(time + this.reach); k++) {
        const i = k - this.start;
        if (i < 0 || i >= this.buffer.length) continue; // before the stream or past its end: zeros
        const t = (k - time) * scale;
        if (Math.abs(t) >= this.zeros) continue;
        const window = Math.cos((t * Math.PI) / this.zeros / 2) ** 2;
        const x = t * Math.PI;
        sum += this.buffer[i] * (x === 0 ? 1 : Math.sin(x) / x) * window * scale;
      }
      out.push(sum);
      this.emitted = n + 1;
    }
    return Float32Array.from(out);
  }
}

/** Float samples in [-1, 1] as 16-bit integers (clipped). */
export function toInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    out[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32768)));
  }
  return out;
}
