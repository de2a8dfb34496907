// The page: controls, streaming output, and the worker (worker.js) that runs the model.
//
// Query parameters preset the controls and can drive the page (web/README.md, "Automation"):
// prompt, tokens, temperature, top_k, seed; model=URL (repeatable: loaded in turn instead of
// the shipped model); run=1 (generate after each model that loads); report=URL (POST the
// results as JSON when everything is done); kernels=portable (no SIMD128 kernels).
'use strict';

const SHIPPED = 'shakespeare-mcu.bin';
const MAX_BLOB_BYTES = 1 << 30; // the module's cap (web/src/engine.rs, MAX_MEMORY)
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const encoder = new TextEncoder();

let worker = null;
let current = null; // the model the worker holds: {name, bytes}
let pendingLoad = null; // {name, bytes, resolve}
let pendingGen = null; // {resolve, chunks, decoder, ...}

// ---- the worker --------------------------------------------------------------------------

function startWorker() {
  worker = new Worker('worker.js');
  worker.onmessage = (e) => onWorker(e.data);
  // kernels=portable: the portable kernels instead of SIMD128 (for speed comparisons).
  if (params.get('kernels') === 'portable') worker.postMessage({ type: 'kernels', portable: true });
  worker.onerror = (e) => {
    e.preventDefault();
    restart(`the runtime stopped: ${e.message}`);
  };
}

// A trap or a crash: a fresh worker, reloaded with the last good model.
function restart(message) {
  worker.terminate();
  showError(`${message}. The runtime was restarted${current ? ` with ${current.name}` : ''}.`);
  const load = pendingLoad;
  const gen = pendingGen;
  pendingLoad = pendingGen = null;
  startWorker();
  if (current) worker.postMessage({ type: 'load', bytes: current.bytes });
  if (load) load.resolve({ error: message });
  if (gen) finishGeneration({ error: message });
}

function onWorker(m) {
  switch (m.type) {
    case 'ready':
    case 'kernels':
      break;
    case 'loaded': {
      const p = pendingLoad;
      pendingLoad = null;
      if (!p) break; // a reload after a restart
      current = { name: p.name, bytes: p.bytes };
      showModel();
      $('summary').textContent = m.summary;
      $('generate').disabled = false;
      p.resolve({ summary: m.summary });
      break;
    }
    case 'tokens':
      if (pendingGen) onTokens(m);
      break;
    case 'done':
      if (pendingGen) finishGeneration(m);
      break;
    case 'error':
      if (m.fatal) {
        restart(`the runtime stopped (${m.message})`);
      } else if (m.during === 'load' && pendingLoad) {
        const p = pendingLoad;
        pendingLoad = null;
        showError(`${p.name}: ${m.message}` + (current ? `\n${current.name} is still loaded.` : ''));
        showModel();
        p.resolve({ error: m.message });
      } else if (m.during === 'generate' && pendingGen) {
        showError(m.message);
        finishGeneration({ error: m.message });
      } else {
        showError(m.message);
      }
      break;
  }
}

function showModel() {
  $('model-name').textContent = current
    ? `${current.name} (${current.bytes.byteLength.toLocaleString('en')} bytes)`
    : 'none';
}

function showError(text) {
  $('error').textContent = text;
}

// ---- loading a model ---------------------------------------------------------------------

// Loads a blob (a dropped or chosen file, or a fetched URL: the same path). Resolves to
// {summary} or {error}; the worker keeps the model it had when a blob is refused.
function loadBytes(name, bytes) {
  showError('');
  if (bytes.byteLength > MAX_BLOB_BYTES) {
    const error = `${bytes.byteLength} bytes, more than the page's cap of ${MAX_BLOB_BYTES} bytes`;
    showError(`${name}: ${error}`);
    return Promise.resolve({ error });
  }
  stopGeneration();
  $('model-name').textContent = `loading ${name}…`;
  return new Promise((resolve) => {
    if (pendingLoad) pendingLoad.resolve({ error: 'superseded by another model' });
    pendingLoad = { name, bytes, resolve };
    worker.postMessage({ type: 'load', bytes }); // a copy: `bytes` stays here for restarts
  });
}

async function loadUrl(url) {
  const name = decodeURIComponent(url.split('/').pop() || url);
  let bytes;
  try {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    bytes = await r.arrayBuffer();
  } catch (e) {
    showError(`${name}: cannot fetch it (${e.message})`);
    return { error: `cannot fetch it (${e.message})` };
  }
  return loadBytes(name, bytes);
}

async function loadFile(file) {
  if (file.size > MAX_BLOB_BYTES) {
    showError(`${file.name}: ${file.size} bytes, more than the page's cap of ${MAX_BLOB_BYTES} bytes`);
    return;
  }
  await loadBytes(file.name, await file.arrayBuffer());
}

// ---- generating --------------------------------------------------------------------------

function settingsText() {
  return ['temperature', 'top_k', 'seed', 'tokens'].map((k) => `${k}=${$(k).value}`).join('\n');
}

// `tools generate` with the same settings: it writes the same bytes.
function commandLine() {
  const q = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
  const model = current && current.name !== SHIPPED ? ` --model ${q(current.name)}` : '';
  return `tools generate${model} --prompt ${q($('prompt').value)} --tokens ${$('tokens').value.trim()} ` +
    `--temperature ${$('temperature').value.trim()} --top-k ${$('top_k').value.trim()} --seed ${$('seed').value.trim()}`;
}

function rate(m) {
  return m.count > 1 && m.decodeMs > 0 ? (m.count - 1) / (m.decodeMs / 1000) : 0;
}

function showStats(m, done) {
  const parts = [`${m.count} tokens`];
  if (m.count > 0) parts.push(`prompt + first token ${m.firstMs.toFixed(1)} ms`);
  if (m.count > 1) parts.push(`decode ${Math.round(rate(m)).toLocaleString('en')} tokens/s`);
  if (done && m.kernels) parts.push(`${m.kernels} kernels, ${m.slides} window slides`);
  if (done && m.stopped) parts.push('stopped');
  $('stats').textContent = parts.join(' · ');
}

// Starts a generation with the controls' settings. Resolves when it ends (done, stopped or
// refused) to {text: Uint8Array (prompt + continuation), count, ...} or {error}.
function generate() {
  if (!current || pendingGen) return Promise.resolve({ error: 'busy or no model' });
  showError('');
  const prompt = $('prompt').value;
  const promptBytes = encoder.encode(prompt);
  const out = $('output');
  out.textContent = '';
  const head = document.createElement('span');
  head.className = 'prompt';
  head.textContent = prompt;
  out.append(head);
  $('stats').textContent = '';
  $('command').textContent = `same bytes on the command line: ${commandLine()}`;
  $('generate').disabled = true;
  $('stop').disabled = false;
  return new Promise((resolve) => {
    let ticks = 0; // the page's own timer: it keeps running while the model works
    const timer = setInterval(() => (ticks += 1), 10);
    pendingGen = {
      resolve,
      timer,
      ticks: () => ticks,
      t0: performance.now(),
      chunks: [promptBytes],
      decoder: new TextDecoder(),
    };
    worker.postMessage({ type: 'generate', prompt, settings: settingsText() });
  });
}

function onTokens(m) {
  const g = pendingGen;
  g.chunks.push(m.bytes);
  // Streamed decoding never splits a UTF-8 character across two token messages.
  $('output').append(g.decoder.decode(m.bytes, { stream: true }));
  showStats(m, false);
}

function finishGeneration(m) {
  const g = pendingGen;
  pendingGen = null;
  clearInterval(g.timer);
  $('output').append(g.decoder.decode());
  $('generate').disabled = !current;
  $('stop').disabled = true;
  if (!m.error) showStats(m, true);
  const len = g.chunks.reduce((n, c) => n + c.length, 0);
  const text = new Uint8Array(len);
  let at = 0;
  for (const c of g.chunks) {
    text.set(c, at);
    at += c.length;
  }
  g.resolve({
    ...m,
    text,
    decodeTokensPerS: m.error ? 0 : rate(m),
    wallMs: performance.now() - g.t0,
    mainThreadTicks: g.ticks(),
  });
}

function stopGeneration() {
  if (pendingGen) worker.postMessage({ type: 'stop' });
}

// ---- automation (query parameters), used by web/tests/browser.rs -------------------------

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

async function automate() {
  const results = [];
  const models = params.getAll('model');
  for (const url of models.length ? models : [SHIPPED]) {
    const loaded = await loadUrl(url);
    const result = { model: url, error: loaded.error || null, summary: loaded.summary || null };
    if (!loaded.error && params.get('run') === '1') {
      const g = await generate();
      Object.assign(result, {
        error: g.error || null,
        text_hex: hex(g.text),
        count: g.count || 0,
        slides: g.slides || 0,
        kernels: g.kernels || null,
        first_ms: g.firstMs || 0,
        decode_ms: g.decodeMs || 0,
        decode_tokens_per_s: g.decodeTokensPerS,
        wall_ms: g.wallMs,
        main_thread_ticks: g.mainThreadTicks,
        visibility: document.visibilityState,
        shown: $('output').textContent,
        error_shown: $('error').textContent,
      });
    } else {
      result.error_shown = $('error').textContent;
      result.model_shown = $('model-name').textContent;
    }
    results.push(result);
  }
  const report = params.get('report');
  if (report) {
    await fetch(report, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(results) });
  }
}

// ---- wiring ------------------------------------------------------------------------------

function init() {
  for (const k of ['prompt', 'tokens', 'temperature', 'top_k', 'seed']) {
    if (params.has(k)) $(k).value = params.get(k);
  }
  startWorker();
  $('generate').onclick = () => generate();
  $('stop').onclick = () => stopGeneration();
  $('shipped').onclick = () => loadUrl(SHIPPED);
  $('file').onchange = (e) => e.target.files[0] && loadFile(e.target.files[0]);
  $('prompt').onkeydown = (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) generate();
  };
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    document.body.classList.remove('dragging');
    const f = e.dataTransfer.files[0];
    if (f) loadFile(f);
  });
  if (params.has('model') || params.has('run') || params.has('report')) automate();
  else loadUrl(SHIPPED).then((r) => !r.error && params.get('autostart') !== '0' && generate());
}

init();
