// The page: the microphone's audio to the server in simulstream's protocol (a JSON
// configuration, 16-bit PCM chunks at 16 kHz, {"end_of_stream": true}), its words
// shown as they come. window.liveTranslation holds what the page shows, with timings.
import { SentenceLines } from './transcript.js';

const RATE = 16000; // what the server's translators take
const CHUNK_SAMPLES = 1600; // 100 ms per message

const $ = (id) => document.getElementById(id);
const view = (window.liveTranslation = {
  words: [], // {text, time (s of audio the server had), arrival (s of audio the page had sent, and since)}
  audioSeconds: 0,
  state: 'idle', // idle, starting, recording, finishing
  deviceRate: null,
  message: '',
});
let session = null;

function say(text, isError = false) {
  view.message = text;
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function setState(state) {
  view.state = state;
  const button = $('mic');
  button.disabled = state === 'starting' || state === 'finishing';
  button.setAttribute('aria-pressed', String(state === 'recording'));
  $('mic-label').textContent = state === 'recording' ? 'Stop' : state === 'finishing' ? 'Finishing…' : 'Start';
}

function microphoneProblem(error) {
  if (error.name === 'NotFoundError' || error.name === 'OverconstrainedError') {
    return 'No microphone found: connect one, then press Start again.';
  }
  if (error.name === 'NotAllowedError' || error.name === 'SecurityError') {
    return 'The microphone was not allowed: allow it for this page, then press Start again.';
  }
  return `The microphone could not be opened (${error.name}: ${error.message}).`;
}

async function checkForMicrophone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    say('This browser gives the page no microphone: open it as http://localhost:… or over https.', true);
    return false;
  }
  const devices = await navigator.mediaDevices.enumerateDevices();
  if (!devices.some((device) => device.kind === 'audioinput')) {
    say('No microphone found: connect one, then press Start.', true);
    return false;
  }
  return true;
}

class Session {
  constructor() {
    this.lines = new SentenceLines();
    this.line = null;
    this.sent = 0; // samples
    this.lastSend = 0; // performance.now() of the last chunk sent
  }

  async start() {
    setState('starting');
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (error) {
      return this.fail(microphoneProblem(error));
    }
    // At the device's rate (the worklet resamples). 'playback': larger buffers, so a busy machine
    // makes the audio clock miss its turn less often (each miss inserts silence into the stream;
    // in headless Chromium at load 5-8 on 2 cores: 3, 16, 3 misses in a 15-s talk against 15, 17, 8).
    this.context = new AudioContext({ latencyHint: 'playback' });
    view.deviceRate = this.context.sampleRate;
    await this.context.audioWorklet.addModule('capture-worklet.js');
    try {
      this.socket = await openSocket();
    } catch {
      return this.fail('The server cannot be reached: is it still running?');
    }
    this.socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    this.socket.onclose = (event) => this.closed(event);
    this.socket.send(JSON.stringify({ sample_rate: RATE, metrics_metadata: { client: 'page', device_rate: view.deviceRate } }));
    this.node = new AudioWorkletNode(this.context, 'pcm-capture', {
      processorOptions: { targetRate: RATE, chunkSamples: CHUNK_SAMPLES },
    });
    this.node.port.onmessage = (event) => (event.data === 'finished' ? this.endStream() : this.send(event.data));
    this.context.createMediaStreamSource(this.stream).connect(this.node);
    this.node.connect(this.context.destination); // silent: the worklet writes nothing
    for (const p of $('translation').querySelectorAll('p')) p.remove();
    Object.assign(view, { words: [], audioSeconds: 0 });
    showReadout();
    setState('recording');
    const rate = view.deviceRate === RATE ? `${RATE} Hz` : `${view.deviceRate} Hz, resampled to ${RATE} Hz`;
    say(`Listening (microphone at ${rate}). Press Stop at the end.`);
  }

  stop() {
    setState('finishing');
    say('Translating the end…');
    this.node.port.postMessage('finish'); // the worklet sends what it holds, then 'finished'
  }

  send(buffer) {
    if (this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(buffer);
    this.sent += buffer.byteLength / 2;
    this.lastSend = performance.now();
    view.audioSeconds = this.sent / RATE;
    $('audio').textContent = `${view.audioSeconds.toFixed(1)} s`;
  }

  endStream() {
    this.releaseMicrophone();
    this.socket.send(JSON.stringify({ end_of_stream: true }));
  }

  /** Seconds of stream now: the audio sent, and the time since the last of it was. */
  now() {
    return this.sent / RATE + (this.lastSend ? (performance.now() - this.lastSend) / 1000 : 0);
  }

  receive(message) {
    if (message.error) {
      this.fail(`The server stopped the translation: ${message.error}`);
      return;
    }
    if (message.end_of_processing) {
      this.socket.close();
      return;
    }
    const arrival = this.now();
    for (const word of message.words ?? []) this.show(word.text, word.time, arrival);
  }

  show(text, time, arrival) {
    if (this.lines.next(text) || !this.line) {
      this.line = document.createElement('p');
      $('translation').append(this.line);
    } else {
      this.line.append(' ');
    }
    const span = document.createElement('span');
    span.className = 'word';
    span.textContent = text;
    this.line.append(span);
    view.words.push({ text, time, arrival });
    showReadout();
    const box = $('translation');
    box.scrollTop = box.scrollHeight; // the newest line in view
  }

  closed(event) {
    this.releaseMicrophone();
    if (session === this) {
      session = null;
      if (view.state === 'finishing') say(`Done: ${view.words.length} words from ${view.audioSeconds.toFixed(1)} s of audio.`);
      else if (!$('status').classList.contains('error')) say(`The connection closed (${event.code}${event.reason ? ': ' + event.reason : ''}).`, true);
      setState('idle');
    }
  }

  fail(text) {
    say(text, true);
    this.releaseMicrophone();
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close();
    session = null;
    setState('idle');
  }

  releaseMicrophone() {
    this.stream?.getTracks().forEach((track) => track.stop());
    if (this.context && this.context.state !== 'closed') this.context.close();
  }
}

function openSocket() {
  const url = new URL('ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  return new Promise((resolve, reject) => {
    socket.onopen = () => resolve(socket);
    socket.onerror = reject;
  });
}

function showReadout() {
  $('count').textContent = String(view.words.length);
  if (!view.words.length) {
    $('latency').textContent = '–';
    return;
  }
  const lags = view.words.map((word) => word.arrival - word.time);
  const mean = lags.reduce((a, b) => a + b, 0) / lags.length;
  const seconds = (value) => `${Math.max(0, value).toFixed(2)} s`;
  $('latency').textContent = `${seconds(lags[lags.length - 1])} · ${seconds(mean)} · ${seconds(Math.max(...lags))}`;
}

$('mic').addEventListener('click', async () => {
  if (session) {
    session.stop();
  } else if (await checkForMicrophone()) {
    session = new Session();
    await session.start();
  }
});

checkForMicrophone();
