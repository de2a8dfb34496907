// The runtime's thread: loads bitnet_web.wasm and drives its C API (web/src/ffi.rs), so that
// a generation never blocks the page. Messages in: {type: 'load', bytes}, {type: 'generate',
// prompt, settings}, {type: 'stop'}, {type: 'kernels', portable}. Messages out: {type:
// 'ready'}, {type: 'loaded', summary, json}, {type: 'tokens', bytes, count}, {type: 'done',
// ...timing}, {type: 'kernels', name}, {type: 'error', message}.
'use strict';

const TOKEN = 1;
const ERROR = -1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

let api = null;
// Set by a 'stop' message; the generation loop checks it between slices.
let stopRequested = false;

const ready = fetch('bitnet_web.wasm')
  .then((r) => {
    if (!r.ok) throw new Error(`bitnet_web.wasm: HTTP ${r.status}`);
    return r.arrayBuffer();
  })
  .then((b) => WebAssembly.instantiate(b, {}))
  .then(({ instance }) => {
    api = instance.exports;
    postMessage({ type: 'ready' });
  })
  .catch((e) => postMessage({ type: 'error', message: `cannot start the runtime: ${e}` }));

// Copies bytes into the module's input buffer. Views are taken after each call: any call may
// grow the memory, which detaches older views.
function put(bytes) {
  const p = api.bitnet_input(bytes.length);
  if (p === 0) throw new Error(`cannot allocate ${bytes.length} bytes in the module (over 1 GiB, or refused)`);
  new Uint8Array(api.memory.buffer, p, bytes.length).set(bytes);
}

function output() {
  return new Uint8Array(api.memory.buffer, api.bitnet_output(), api.bitnet_output_len()).slice();
}

function outputText() {
  return decoder.decode(output());
}

// Yields to the worker's event loop (to receive 'stop') without setTimeout's 4 ms clamp.
function yieldNow() {
  return new Promise((resolve) => {
    const c = new MessageChannel();
    c.port1.onmessage = () => resolve();
    c.port2.postMessage(0);
  });
}

function load(bytes) {
  put(new Uint8Array(bytes));
  if (api.bitnet_load() === ERROR) throw new Error(outputText());
  api.bitnet_summary(0);
  const summary = outputText();
  api.bitnet_summary(1);
  postMessage({ type: 'loaded', summary, json: outputText() });
}

async function generate(prompt, settings) {
  put(encoder.encode(settings));
  if (api.bitnet_settings() === ERROR) throw new Error(outputText());
  put(encoder.encode(prompt));
  if (api.bitnet_start() === ERROR) throw new Error(outputText());
  stopRequested = false;
  const t0 = performance.now();
  let firstMs = 0; // the first step: the prompt's prefill and the first token
  let decodeMs = 0; // every later step (window slides included), wasm time only
  let count = 0;
  let rc = TOKEN;
  while (rc === TOKEN && !stopRequested) {
    // One slice: steps for up to ~30 ms, their bytes in one message.
    const chunks = [];
    const s0 = performance.now();
    let sliceStart = s0;
    while (performance.now() - s0 < 30) {
      rc = api.bitnet_step();
      if (rc !== TOKEN) break;
      chunks.push(output());
      count += 1;
      if (count === 1) {
        const now = performance.now();
        firstMs = now - t0;
        sliceStart = now;
      }
    }
    if (count > 1) decodeMs += performance.now() - sliceStart;
    if (chunks.length) {
      const len = chunks.reduce((n, c) => n + c.length, 0);
      const bytes = new Uint8Array(len);
      let at = 0;
      for (const c of chunks) {
        bytes.set(c, at);
        at += c.length;
      }
      postMessage({ type: 'tokens', bytes, count, firstMs, decodeMs }, [bytes.buffer]);
    }
    if (rc === ERROR) throw new Error(outputText());
    await yieldNow();
  }
  api.bitnet_status();
  const status = JSON.parse(outputText());
  postMessage({
    type: 'done',
    count,
    stopped: rc === TOKEN,
    firstMs,
    decodeMs,
    totalMs: performance.now() - t0,
    slides: status.slides,
    kernels: status.kernels,
  });
}

// Requests run one after another; a new load or generation first ends the one in progress.
let queue = Promise.resolve();

async function handle(m) {
  await ready;
  if (!api) return;
  try {
    if (m.type === 'kernels') {
      api.bitnet_kernels(m.portable ? 1 : 0);
      postMessage({ type: 'kernels', name: outputText() });
    } else if (m.type === 'load') load(m.bytes);
    else if (m.type === 'generate') await generate(m.prompt, m.settings);
  } catch (err) {
    // A trap (a bug: the runtime and the binding never panic by design) leaves the module in
    // an unknown state: the page starts a new worker.
    const fatal = err instanceof WebAssembly.RuntimeError;
    postMessage({ type: 'error', during: m.type, fatal, message: err.message || String(err) });
  }
}

onmessage = (e) => {
  const m = e.data;
  stopRequested = true;
  if (m.type !== 'stop') queue = queue.then(() => handle(m));
};
