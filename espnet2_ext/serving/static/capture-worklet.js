// The microphone's audio, mixed to mono, resampled to the server's rate and cut into
// 16-bit chunks, posted to the page. Runs in the audio thread (an AudioWorklet).
import { Resampler, toInt16 } from './resampler.js';

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, chunkSamples } = options.processorOptions;
    this.resampler = new Resampler(sampleRate, targetRate); // sampleRate: the AudioContext's
    this.chunk = new Float32Array(chunkSamples);
    this.filled = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === 'finish') {
        this.take(this.resampler.finish());
        this.post(this.chunk.subarray(0, this.filled));
        this.port.postMessage('finished');
        this.running = false;
      }
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (this.running && channels.length > 0) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) {
        for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
      }
      this.take(this.resampler.push(mono));
    }
    return this.running;
  }

  take(samples) {
    let offset = 0;
    while (offset < samples.length) {
      const count = Math.min(samples.length - offset, this.chunk.length - this.filled);
      this.chunk.set(samples.subarray(offset, offset + count), this.filled);
      this.filled += count;
      offset += count;
      if (this.filled === this.chunk.length) this.post(this.chunk);
    }
  }

  post(samples) {
    if (samples.length === 0) return;
    const pcm = toInt16(samples);
    this.port.postMessage(pcm.buffer, [pcm.buffer]);
    this.filled = 0;
  }
}

registerProcessor('pcm-capture', PcmCapture);
