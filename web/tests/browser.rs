//! The page in a real browser: builds it with `web/build.sh`, serves it from a small HTTP
//! server in this test, opens it in headless Chromium with settings in the query string, and
//! compares what the page reports (it POSTs its results back) byte for byte with what
//! `tools generate` writes through its own command line: greedy and sampled, long enough for
//! the context window to slide; the page's defaults against the command's defaults; hostile
//! blobs and a prompt outside the vocabulary refused with the runtime's own messages, the page
//! still working afterwards.
//!
//! Needs Chromium (`chromium`, `chromium-browser` or `google-chrome` on the PATH, or
//! `BITNET_CHROMIUM=/path`) and the `wasm32-unknown-unknown` target. Without either the test
//! says so loudly on stderr and passes, unless `BITNET_REQUIRE_BROWSER=1` (CI sets it), which
//! turns the missing tool into a failure.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;

/// How long one page run may take (the wasm build comes before and is not counted).
const PAGE_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped() -> Vec<u8> {
    std::fs::read(root().join("models/shakespeare-mcu.bin")).unwrap()
}

/// Skips (loudly) or, under `BITNET_REQUIRE_BROWSER=1`, fails.
fn missing(why: &str) {
    if std::env::var("BITNET_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("BITNET_REQUIRE_BROWSER=1 but {why}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n\
         ************************************************************************\n\
         * web/tests/browser.rs SKIPPED: {why}\n\
         * The page was NOT tested in a browser. Install Chromium (Debian:\n\
         * apt-get install chromium) and the target (rustup target add\n\
         * wasm32-unknown-unknown); BITNET_REQUIRE_BROWSER=1 makes this fail.\n\
         ************************************************************************\n"
    );
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BITNET_CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

fn wasm_target_installed() -> bool {
    let Ok(out) = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(root())
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib/wasm32-unknown-unknown")
        .is_dir()
}

/// Builds the page with the script the README gives, into a fresh folder.
fn build_site() -> PathBuf {
    let out = std::env::temp_dir().join(format!("bitnet-web-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("web/build.sh")).arg(&out);
    if let Some(cargo) = std::env::var_os("CARGO") {
        cmd.env("CARGO", cargo);
    }
    let status = cmd.status().expect("run web/build.sh");
    assert!(status.success(), "web/build.sh failed: {status}");
    out
}

// ---- a tiny HTTP server: the built folder, extra in-memory files, POST /report ------------

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn handle(
    mut stream: TcpStream,
    dir: &Path,
    extra: &HashMap<String, Vec<u8>>,
    reports: &Sender<Vec<u8>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let path = target.split('?').next().unwrap_or("/");
    if method == "POST" && path == "/report" {
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_ok() {
            let _ = reports.send(body);
        }
        respond(&mut stream, "204 No Content", "text/plain", b"");
        return;
    }
    let path = if path == "/" { "/index.html" } else { path };
    let body = extra.get(path).cloned().or_else(|| {
        let rel = path.trim_start_matches('/');
        (!rel.contains("..") && !rel.is_empty())
            .then(|| std::fs::read(dir.join(rel)).ok())
            .flatten()
    });
    match body {
        Some(b) => respond(&mut stream, "200 OK", content_type(path), &b),
        None => respond(&mut stream, "404 Not Found", "text/plain", b"not found"),
    }
}

/// Serves `dir` and `extra` on a free local port; reports arrive on the receiver.
fn serve(dir: PathBuf, extra: HashMap<String, Vec<u8>>) -> (SocketAddr, Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new((dir, extra));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (shared, tx) = (Arc::clone(&shared), tx.clone());
            std::thread::spawn(move || handle(stream, &shared.0, &shared.1, &tx));
        }
    });
    (addr, rx)
}

// ---- the browser -------------------------------------------------------------------------

/// Headless Chromium on `url`, in its own process group (killed, group and all, on drop).
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    fn open(chromium: &Path, url: &str, tag: &str) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("bitnet-web-chromium-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                // The page's timer probe below must not be throttled as a background page's
                // timers are (one wake-up per second) if the browser deems the page hidden.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromium");
        Browser { child, profile }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser and the renderer, GPU and zygote processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Opens the page with `query` and returns its report (one JSON object per model).
fn run_page(
    chromium: &Path,
    site: &Path,
    extra: &HashMap<String, Vec<u8>>,
    query: &[(&str, &str)],
    tag: &str,
) -> Vec<Value> {
    let (addr, reports) = serve(site.to_path_buf(), extra.clone());
    let mut q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    q.push("report=/report".into());
    let url = format!("http://{addr}/index.html?{}", q.join("&"));
    let _browser = Browser::open(chromium, &url, tag);
    let body = reports
        .recv_timeout(PAGE_TIMEOUT)
        .unwrap_or_else(|_| panic!("no report from the page within {PAGE_TIMEOUT:?}: {url}"));
    let v: Value = serde_json::from_slice(&body).expect("the report is JSON");
    v.as_array().expect("a list of results").clone()
}

fn hex_bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("text_hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `tools <args>` through its own command line: stdout, or the one-line error `main` prints
/// (after `tools: `).
fn tools(args: &[&str]) -> Result<Vec<u8>, String> {
    let cli = tools::cli::Cli::try_parse_from(std::iter::once("tools").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tools::cli::run(cli, &mut out).map_err(|e| format!("{e:#}"))?;
    Ok(out)
}

/// One generation on the page against `tools generate` with the same flags.
fn same_bytes(result: &Value, flags: &[&str], what: &str) {
    assert!(result["error"].is_null(), "{what}: {}", result["error"]);
    let page = hex_bytes(&result["text_hex"]);
    let host = tools(&[&["generate"], flags].concat()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&page),
        String::from_utf8_lossy(&host),
        "{what}: the page and tools generate {flags:?} differ"
    );
    assert_eq!(page, host, "{what}: byte for byte");
    // What the page shows is what it reports.
    assert_eq!(
        result["shown"].as_str().unwrap().as_bytes(),
        &page[..],
        "{what}: shown text"
    );
    eprintln!(
        "{what}: {} bytes identical to tools generate {:?}; {} tokens, {} window slides, decode {:.0} tokens/s in the browser ({} kernels)",
        page.len(),
        flags,
        result["count"],
        result["slides"],
        result["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
        result["kernels"].as_str().unwrap_or("?"),
    );
}

#[test]
fn the_page_writes_the_bytes_tools_generate_writes() {
    let Some(chromium) = find_chromium() else {
        return missing(
            "no Chromium found (chromium, chromium-browser, google-chrome, BITNET_CHROMIUM)",
        );
    };
    if !wasm_target_installed() {
        return missing("the wasm32-unknown-unknown target is not installed");
    }
    let site = build_site();

    // Hostile blobs, served beside the page: a truncated one and one with a flipped byte.
    let good = shipped();
    let truncated = good[..good.len() * 2 / 3].to_vec();
    let mut flipped = good.clone();
    let at = good.len() - 1000;
    flipped[at] ^= 0x01;
    let extra: HashMap<String, Vec<u8>> = [
        ("/hostile/truncated.bin".to_string(), truncated.clone()),
        ("/hostile/flipped.bin".to_string(), flipped.clone()),
    ]
    .into();

    // 1. A hostile blob, the shipped model (greedy, 300 tokens: the context of 128 slides; the
    //    page's inspect summary; the page's own timer running throughout), another hostile
    //    blob (the shipped model stays loaded).
    let r = run_page(
        &chromium,
        &site,
        &extra,
        &[
            ("model", "/hostile/truncated.bin"),
            ("model", "shakespeare-mcu.bin"),
            ("model", "/hostile/flipped.bin"),
            ("run", "1"),
            ("prompt", "ROMEO:"),
            ("tokens", "300"),
            ("temperature", "0"),
        ],
        "greedy",
    );
    assert_eq!(r.len(), 3);
    for (res, blob, name, model, still) in [
        (&r[0], &truncated, "truncated.bin", "none", ""),
        (
            &r[2],
            &flipped,
            "flipped.bin",
            "shakespeare-mcu.bin (281,776 bytes)",
            "\nshakespeare-mcu.bin is still loaded.",
        ),
    ] {
        let want = runtime::Model::from_bytes(blob).unwrap_err().to_string();
        assert_eq!(
            res["error"].as_str(),
            Some(want.as_str()),
            "{name}: the runtime's message"
        );
        let shown = res["error_shown"].as_str().unwrap();
        assert_eq!(shown, format!("{name}: {want}{still}"), "{name}: shown");
        assert_eq!(
            res["model_shown"].as_str(),
            Some(model),
            "{name}: the model shown"
        );
        eprintln!("{name}: the page says {shown:?}");
    }
    assert!(r[0]["error"].as_str().unwrap().contains("truncated"));
    assert!(r[2]["error"].as_str().unwrap().contains("checksum"));
    same_bytes(
        &r[1],
        &[
            "--prompt",
            "ROMEO:",
            "--tokens",
            "300",
            "--temperature",
            "0",
        ],
        "greedy",
    );
    assert!(
        r[1]["slides"].as_u64().unwrap() >= 2,
        "the window slid: {}",
        r[1]["slides"]
    );
    assert_eq!(r[1]["kernels"].as_str(), Some("simd128"));
    let inspect = tools(&[
        "inspect",
        root().join("models/shakespeare-mcu.bin").to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(
        r[1]["summary"].as_str().unwrap().as_bytes(),
        &inspect[..],
        "tools inspect's text"
    );
    // The page's timer (every 10 ms on the main thread) kept firing while the model ran in
    // its worker. A loose bound (one tick per 100 ms): a timing probe on a shared machine.
    let (ticks, wall, visibility) = (
        r[1]["main_thread_ticks"].as_u64().unwrap(),
        r[1]["wall_ms"].as_f64().unwrap(),
        r[1]["visibility"].as_str().unwrap_or("?"),
    );
    eprintln!("main thread: {ticks} timer ticks in {wall:.0} ms (page {visibility})");
    assert!(
        ticks >= 1 && (wall < 50.0 || ticks as f64 >= wall / 100.0),
        "main thread ticks {ticks} in {wall:.0} ms (page {visibility})"
    );

    // 2. Sampled: temperature, top-k and seed away from their defaults.
    let r = run_page(
        &chromium,
        &site,
        &extra,
        &[
            ("run", "1"),
            ("prompt", "JULIET:\nO Romeo"),
            ("tokens", "400"),
            ("temperature", "1.25"),
            ("top_k", "12"),
            ("seed", "18446744073709551557"),
        ],
        "sampled",
    );
    same_bytes(
        &r[0],
        &[
            "--prompt",
            "JULIET:\nO Romeo",
            "--tokens",
            "400",
            "--temperature",
            "1.25",
            "--top-k",
            "12",
            "--seed",
            "18446744073709551557",
        ],
        "sampled",
    );
    assert!(r[0]["slides"].as_u64().unwrap() >= 2);
    assert_eq!(r[0]["kernels"].as_str(), Some("simd128"));
    // The same with the portable kernels (the base-3 blob as it is, table lookup).
    let r = run_page(
        &chromium,
        &site,
        &extra,
        &[
            ("run", "1"),
            ("kernels", "portable"),
            ("prompt", "JULIET:\nO Romeo"),
            ("tokens", "400"),
            ("temperature", "1.25"),
            ("top_k", "12"),
            ("seed", "18446744073709551557"),
        ],
        "portable",
    );
    assert_eq!(r[0]["kernels"].as_str(), Some("portable"));
    same_bytes(
        &r[0],
        &[
            "--prompt",
            "JULIET:\nO Romeo",
            "--tokens",
            "400",
            "--temperature",
            "1.25",
            "--top-k",
            "12",
            "--seed",
            "18446744073709551557",
        ],
        "sampled, portable kernels",
    );

    // 3. The page's defaults are the command's defaults.
    let r = run_page(&chromium, &site, &extra, &[("run", "1")], "defaults");
    same_bytes(&r[0], &[], "defaults");

    // 4. A prompt outside the vocabulary: the command's message; then bad settings.
    let r = run_page(
        &chromium,
        &site,
        &extra,
        &[("run", "1"), ("prompt", "ROMEO: Ω")],
        "prompt",
    );
    let want = tools(&["generate", "--prompt", "ROMEO: Ω"]).unwrap_err();
    assert_eq!(r[0]["error"].as_str(), Some(want.as_str()));
    assert_eq!(r[0]["error_shown"].as_str(), Some(want.as_str()));
    let r = run_page(
        &chromium,
        &site,
        &extra,
        &[("run", "1"), ("temperature", "101")],
        "settings",
    );
    let want = tools(&["generate", "--temperature", "101"]).unwrap_err();
    assert_eq!(r[0]["error"].as_str(), Some(want.as_str()));

    let _ = std::fs::remove_dir_all(&site);
}
