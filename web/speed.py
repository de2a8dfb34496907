#!/usr/bin/env python3
"""Decode speed of the page in headless Chromium, side by side with the same engine natively.

    web/speed.py [ROUNDS] [TOKENS]        (defaults: 5 rounds of 1000 tokens)

Builds the page (web/build.sh) and the native twin (`cargo build --release -p web --example
speed`), then alternates, ROUNDS times: the page in Chromium with its SIMD128 kernels and with
the portable ones (`kernels=portable`), greedy, prompt ROMEO:, TOKENS tokens, its own decode
tokens/s as it shows them; the native engine with the portable kernels, and at this CPU's best
level (as `tools generate` runs). Prints every round and the medians. Python 3 standard library only; Chromium from
BITNET_CHROMIUM or the PATH.
"""

import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
TOKENS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
CHROMIUM = os.environ.get("BITNET_CHROMIUM") or next(
    (p for p in map(shutil.which, ["chromium", "chromium-browser", "google-chrome"]) if p), None
)
if not CHROMIUM:
    sys.exit("speed.py: no Chromium found (set BITNET_CHROMIUM)")

site = tempfile.mkdtemp(prefix="bitnet-web-speed-")
subprocess.run(["bash", os.path.join(ROOT, "web/build.sh"), site], check=True)
subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "web", "--example", "speed"],
               cwd=ROOT, check=True)
native = os.path.join(TARGET, "release/examples/speed")

reports = []
got = threading.Event()


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=site, **k)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        reports.append(json.loads(body))
        got.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = (f"http://127.0.0.1:{server.server_port}/index.html"
       f"?run=1&temperature=0&prompt=ROMEO%3A&tokens={TOKENS}&report=/report")


def browser(portable):
    got.clear()
    profile = tempfile.mkdtemp(prefix="bitnet-web-speed-profile-")
    p = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         url + ("&kernels=portable" if portable else "")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if not got.wait(300):
            sys.exit("speed.py: no report from the page")
    finally:
        os.killpg(p.pid, 9)
        p.wait()
        shutil.rmtree(profile, ignore_errors=True)
    r = reports[-1][0]
    if r["error"]:
        sys.exit(f"speed.py: the page failed: {r['error']}")
    return r["kernels"], r["decode_tokens_per_s"]


def engine(level):
    out = subprocess.run([native, level, str(TOKENS), "1"], capture_output=True, text=True, check=True)
    name, tps = out.stdout.split()
    return name, float(tps)


results = {}
for i in range(ROUNDS):
    row = []
    for portable in [False, True]:
        name, tps = browser(portable)
        row.append((f"browser {name}", tps))
    for level in ["portable", "best"]:
        name, tps = engine(level)
        row.append((f"native {name}", tps))
    for k, v in row:
        results.setdefault(k, []).append(v)
    print(f"round {i + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in row), flush=True)

print(f"\ndecode tokens/s, greedy, {TOKENS} tokens (window slides included), {ROUNDS} rounds alternated:")
base = statistics.median(results["browser simd128"])
for k, v in results.items():
    m = statistics.median(v)
    print(f"  {k:<20} median {m:8.0f}  min {min(v):8.0f}  max {max(v):8.0f}  ({m / base:.2f}x browser simd128)")
server.shutdown()
shutil.rmtree(site, ignore_errors=True)
