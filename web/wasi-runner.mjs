#!/usr/bin/env node
// Runs a wasm32-wasip1 program (a cargo test binary) in Node's WASI, as a cargo runner:
//   CARGO_TARGET_WASM32_WASIP1_RUNNER="node web/wasi-runner.mjs" \
//     cargo test -p runtime --target wasm32-wasip1 --lib --test golden
// The whole file system is visible at the same paths (tests read their golden files by their
// absolute paths); the exit status is the program's.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: [file, ...args],
  env: process.env,
  preopens: { '/': '/' },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
