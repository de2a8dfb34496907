//! Interrupted training, with the trainer as a real process: SIGKILL at random moments (inside
//! checkpoint writes too) and `--resume` until done must end byte-identical to a run that went
//! straight through; a read-only or full output directory stops the run with one `error:` line
//! and leaves the last checkpoint loadable.
//!
//! The read-only and full cases need `mount` (root); without it they print `SKIP` and pass.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use trainer::backend::{Cpu, CpuDevice};
use trainer::rng::SplitMix64;
use trainer::runinfo::RunConfig;

/// Seed of the kill schedule (printed, so a failing schedule can be replayed).
const KILL_SEED: u64 = 0x6b69_6c6c;
/// SIGKILLs before the run is allowed to finish.
const KILLS: usize = 14;
/// Steps of every run here (a checkpoint after each one).
const STEPS: &str = "64";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-int-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Random words from a fixed list (as in tests/train.rs).
fn corpus(dir: &Path) -> PathBuf {
    const WORDS: [&str; 8] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut rng = SplitMix64::new(3);
    let mut s = String::new();
    for _ in 0..2500 {
        s.push_str(WORDS[rng.below(8) as usize]);
        s.push(' ');
    }
    let p = dir.join("corpus.txt");
    std::fs::write(&p, s).unwrap();
    p
}

/// The trainer on `data` into `out`: a fresh run, or `--resume` once `config.json` exists.
fn spawn(data: &Path, out: &Path, extra: &[&str]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.arg("--data").arg(data).arg("--out").arg(out);
    c.args(["--backend", "cpu", "--quiet", "--steps", STEPS]);
    if out.join("config.json").exists() {
        c.arg("--resume");
    } else {
        c.args(["--preset", "tiny", "--ctx", "32", "--batch", "8"]);
        c.args(["--warmup", "4", "--eval-every", "8", "--val-batches", "1"]);
        c.args(["--checkpoint-every", "1"]);
    }
    c.args(extra);
    // Same thread count in every process, whatever the machine.
    c.env("RAYON_NUM_THREADS", "2");
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// Waits for the child; (exit code, stderr).
fn finish(child: Child) -> (i32, String) {
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `weights.safetensors` and `metrics.csv` (columns step..val) of a run that went straight through.
fn reference() -> &'static (Vec<u8>, Vec<String>) {
    static R: OnceLock<(Vec<u8>, Vec<String>)> = OnceLock::new();
    R.get_or_init(|| {
        let d = tmp("reference");
        let data = corpus(&d);
        let out = d.join("run");
        let (code, err) = finish(spawn(&data, &out, &[]));
        assert_eq!(code, 0, "{err}");
        let r = (
            std::fs::read(out.join("weights.safetensors")).unwrap(),
            metric_cols(&out),
        );
        let _ = std::fs::remove_dir_all(&d);
        r
    })
}

/// metrics.csv without the columns that depend on timing (tokens/s, wall time).
fn metric_cols(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').take(7).collect::<Vec<_>>().join(","))
        .collect()
}

/// The step of the checkpoint `--resume` would load, after loading it completely (model and
/// every optimiser record); `None` when there is none yet.
fn loadable_checkpoint(out: &Path) -> Option<usize> {
    if !out.join("checkpoint/state.json").exists()
        && !out.join("checkpoint.old/state.json").exists()
    {
        return None;
    }
    let cfg = RunConfig::read(out).expect("a checkpoint without a readable config.json");
    let opt = cfg.train.optimizer;
    let n_averages = cfg.train.ema_decays.len();
    let dev = CpuDevice::default();
    let loaded = trainer::checkpoint::load::<Cpu>(out, &cfg.model, opt, n_averages, &dev)
        .unwrap_or_else(|e| panic!("checkpoint in {} cannot be loaded: {e}", out.display()));
    Some(loaded.state.step)
}

/// A finished run: summary.json and weights.safetensors readable, weights byte-identical to the
/// uninterrupted run, same per-step losses.
fn check_finished(out: &Path) {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], STEPS.parse::<u64>().unwrap());
    assert!(summary["quantized_val_loss"].as_f64().unwrap().is_finite());
    let w = std::fs::read(out.join("weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&w).unwrap();
    assert!(st.tensor("embed").is_ok() && st.tensor("final_norm").is_ok());
    let (ref_w, ref_m) = reference();
    assert!(
        &w == ref_w,
        "weights.safetensors differs from the uninterrupted run"
    );
    assert_eq!(&metric_cols(out), ref_m, "metrics.csv differs");
    for f in ["config.json", "vocab.json", "metrics.csv", "loss.svg"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
}

/// Where in the run a kill landed, judged from what it left on disk.
fn landed(out: &Path) -> &'static str {
    let has = |f: &str| out.join(f).exists();
    if !has("config.json") {
        "before the run dir was set up"
    } else if has("checkpoint.tmp") && !has("checkpoint.tmp/state.json") {
        "inside a checkpoint write"
    } else if has("checkpoint.tmp") || has("checkpoint.old") {
        "inside the checkpoint swap"
    } else if !has("checkpoint") {
        "before the first checkpoint"
    } else if ["weights.safetensors", "summary.json", "config.json.tmp"]
        .iter()
        .any(|f| has(f) || has(&format!("{f}.tmp")))
    {
        "inside the final export"
    } else {
        "between checkpoints"
    }
}

enum Kill {
    /// this many ms after the start
    After(u64),
    /// when `checkpoint.tmp` has appeared for the n-th time in this session, plus µs
    InWrite(u32, u64),
    /// when the final export begins (`weights.safetensors.tmp` appears), plus µs
    InExport(u64),
}

#[test]
fn sigkill_and_resume_match_an_uninterrupted_run() {
    let t0 = Instant::now();
    reference();
    let d = tmp("kill");
    let data = corpus(&d);
    let out = d.join("run");
    let mut rng = SplitMix64::new(KILL_SEED);
    let schedule: Vec<Kill> = (0..KILLS)
        .map(|i| match (i, rng.below(3)) {
            // The first kills land early: before the config or the first checkpoint is written.
            (0, _) => Kill::After(rng.below(10)),
            (1, _) => Kill::After(15 + rng.below(25)),
            (i, _) if i == KILLS - 1 => Kill::InExport(rng.below(300)),
            (_, 0) => Kill::After(20 + rng.below(120)),
            _ => Kill::InWrite(1 + rng.below(3) as u32, rng.below(600)),
        })
        .collect();
    eprintln!("kill schedule (seed {KILL_SEED:#x}):");
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    let mut done = false;
    for (i, k) in schedule.iter().enumerate() {
        let before = loadable_checkpoint(&out);
        let mut child = spawn(&data, &out, &[]);
        let start = Instant::now();
        let what = match *k {
            Kill::After(ms) => format!("{ms} ms after start"),
            Kill::InWrite(n, us) => format!("{us} µs into checkpoint write #{n}"),
            Kill::InExport(us) => format!("{us} µs into the final export"),
        };
        let mut seen = 0u32;
        let mut in_tmp = false;
        let exited = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            let fire = match *k {
                Kill::After(ms) => start.elapsed() >= Duration::from_millis(ms),
                Kill::InWrite(n, us) => {
                    let now = out.join("checkpoint.tmp").exists();
                    if now && !in_tmp {
                        seen += 1;
                    }
                    in_tmp = now;
                    if seen >= n {
                        std::thread::sleep(Duration::from_micros(us));
                        true
                    } else {
                        false
                    }
                }
                Kill::InExport(us) => {
                    let now = out.join("weights.safetensors.tmp").exists();
                    if now {
                        std::thread::sleep(Duration::from_micros(us));
                    }
                    now
                }
            };
            if fire {
                break None;
            }
            match k {
                // Spin: a checkpoint write of this model takes about a millisecond.
                Kill::InWrite(..) | Kill::InExport(_) => std::thread::yield_now(),
                Kill::After(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        };
        if let Some(s) = exited {
            let (code, err) = finish(child);
            assert!(s.success(), "session {i} failed ({code}): {err}");
            eprintln!("  kill {i}: {what}: the run finished first");
            done = true;
            break;
        }
        child.kill().unwrap(); // SIGKILL
        let (code, err) = finish(child);
        // The session must not have failed on its own before the kill (e.g. an unreadable
        // checkpoint left by the previous kill).
        assert!(
            !err.contains("error:"),
            "session {i} failed by itself ({code}): {err}"
        );
        let place = landed(&out);
        *tally.entry(place).or_default() += 1;
        let after = loadable_checkpoint(&out);
        eprintln!("  kill {i}: {what}: {place}; checkpoint step {before:?} -> {after:?}",);
    }
    if !done {
        let (code, err) = finish(spawn(&data, &out, &[]));
        assert_eq!(code, 0, "final session: {err}");
    }
    check_finished(&out);
    eprintln!(
        "{} kills landed: {tally:?}; resumed run byte-identical; {:.1} s",
        tally.values().sum::<usize>(),
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Prints past the test harness's capture, so a skipped case shows in a plain `cargo test`.
fn say(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Runs a command; true when it exits 0.
fn cmd(prog: &str, args: &[&str]) -> bool {
    Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A mount made by a test, undone when dropped.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = cmd("umount", &["-l", self.0.to_str().unwrap()]);
    }
}

/// (exit code, stderr) of a trainer that ended with an error: exactly one `error:` line, and it
/// is the last one.
fn one_error_line(code: i32, err: &str) -> String {
    assert_eq!(code, 1, "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err}");
    assert_eq!(err.lines().last(), Some(errors[0]), "{err}");
    errors[0].to_string()
}

/// All files of the checkpoint `--resume` would read, with their bytes.
fn checkpoint_files(out: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    for sub in ["checkpoint", "checkpoint.old"] {
        if let Ok(rd) = std::fs::read_dir(out.join(sub)) {
            for e in rd {
                let p = e.unwrap().path();
                v.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    v.sort();
    v
}

/// The run dir turns read-only in the middle of a run (the trainer is paused with SIGSTOP while
/// it flips): the next checkpoint write fails with one error line, the last checkpoint loads,
/// `--resume` on the read-only dir fails up front without touching it, and once writable again
/// the run resumes and ends identical to an uninterrupted one.
///
/// Root ignores permission bits, so as root the dir is made read-only with a read-only bind mount
/// (needs `mount`); as another user, with `chmod 0555`.
#[test]
fn read_only_output_dir_keeps_the_checkpoint() {
    let d = tmp("ro");
    let data = corpus(&d);
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = mnt.to_str().unwrap().to_string();
    // Does chmod stop us from writing (not as root)?
    std::fs::set_permissions(&mnt, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let chmod_works = std::fs::write(mnt.join("probe"), "x").is_err();
    let _ = std::fs::remove_file(mnt.join("probe"));
    std::fs::set_permissions(&mnt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _guard = if chmod_works {
        None
    } else {
        if !cmd("mount", &["--bind", &m, &m]) {
            say("SKIP read_only_output_dir_keeps_the_checkpoint: running as root (chmod is not enforced) and `mount --bind` failed (no CAP_SYS_ADMIN?)");
            return;
        }
        say("read-only dir: chmod is not enforced for root; using a read-only bind mount");
        Some(Mount(mnt.clone()))
    };
    let out = mnt.join("run");
    let set_ro = |ro: bool| -> bool {
        if chmod_works {
            let mode = if ro { 0o555 } else { 0o755 };
            std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .is_ok()
        } else {
            let opt = if ro {
                "remount,ro,bind"
            } else {
                "remount,rw,bind"
            };
            cmd("mount", &["-o", opt, &m])
        }
    };

    let mut child = spawn(&data, &out, &[]);
    let pid = child.id().to_string();
    let t = Instant::now();
    while !out.join("checkpoint/state.json").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(t.elapsed() < Duration::from_secs(60));
        std::thread::yield_now();
    }
    // Flip while the trainer is stopped; a remount fails (EBUSY) while a file is open for
    // writing, so retry after letting it run a little.
    loop {
        assert!(cmd("kill", &["-STOP", &pid]));
        let ok = set_ro(true);
        assert!(cmd("kill", &["-CONT", &pid]));
        if ok {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "cannot make the dir read-only"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (code, err) = finish(child);
    let line = one_error_line(code, &err);
    say(&format!("read-only mid-run: {line}"));
    assert!(
        line.contains("Read-only file system") || line.contains("Permission denied"),
        "{line}"
    );
    let step = loadable_checkpoint(&out).expect("the last checkpoint is gone");
    assert!(step >= 1 && step < STEPS.parse().unwrap(), "{step}");
    assert!(!out.join("weights.safetensors").exists());

    // --resume on the read-only dir: one line, before any training; the checkpoint untouched.
    let before = checkpoint_files(&out);
    let (code, err) = finish(spawn(&data, &out, &[]));
    let line = one_error_line(code, &err);
    say(&format!("read-only --resume: {line}"));
    assert!(line.contains("output dir"), "{line}");
    assert!(checkpoint_files(&out) == before, "the checkpoint changed");

    assert!(set_ro(false));
    let (code, err) = finish(spawn(&data, &out, &[]));
    assert_eq!(code, 0, "{err}");
    check_finished(&out);
    drop(_guard);
    let _ = std::fs::remove_dir_all(&d);
}

/// The disk fills up: a tmpfs with room for the start files and one checkpoint but not for the
/// second one. The run stops with one error line at step 2's checkpoint, removes the partial
/// `checkpoint.tmp/`, and the step-1 checkpoint loads; with more room `--resume` finishes
/// identical to an uninterrupted run. Needs `mount -t tmpfs` (root); skipped otherwise.
#[test]
fn full_output_dir_keeps_the_checkpoint() {
    let d = tmp("full");
    let data = corpus(&d);
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = mnt.to_str().unwrap().to_string();
    // One checkpoint of this model is ~0.82 MB (model 0.27, AdamW moments 0.53).
    if !cmd("mount", &["-t", "tmpfs", "-o", "size=1200k", "tmpfs", &m]) {
        say("SKIP full_output_dir_keeps_the_checkpoint: `mount -t tmpfs` failed (not root?)");
        return;
    }
    let guard = Mount(mnt.clone());
    let out = mnt.join("run");
    let (code, err) = finish(spawn(&data, &out, &[]));
    let line = one_error_line(code, &err);
    say(&format!("full disk: {line}"));
    assert!(line.contains("No space left on device"), "{line}");
    assert_eq!(loadable_checkpoint(&out), Some(1));
    assert!(
        !out.join("checkpoint.tmp").exists(),
        "partial checkpoint left"
    );
    assert!(!out.join("weights.safetensors").exists());

    assert!(cmd("mount", &["-o", "remount,size=16m", &m]));
    let (code, err) = finish(spawn(&data, &out, &[]));
    assert_eq!(code, 0, "{err}");
    check_finished(&out);
    drop(guard);
    let _ = std::fs::remove_dir_all(&d);
}

/// SIGTERM and SIGHUP stop the run as Ctrl-C does: a checkpoint after the current step, then
/// exit 128 + the signal number (they used to kill it with no checkpoint).
#[test]
fn sigterm_and_sighup_write_the_checkpoint_ctrl_c_writes() {
    use std::io::Read;
    for (signal, code, name) in [
        ("-TERM", 143, "SIGTERM"),
        ("-HUP", 129, "SIGHUP"),
        ("-INT", 130, "Ctrl-C"),
    ] {
        let d = tmp(&format!("signal{signal}"));
        let data = corpus(&d);
        let out = d.join("run");
        // So many steps and so rare a checkpoint that only the signal's can appear; a progress
        // line per step (stderr is not a terminal) tells when training is under way.
        let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args([
                "--backend",
                "cpu",
                "--preset",
                "tiny",
                "--ctx",
                "32",
                "--batch",
                "8",
            ])
            .args([
                "--val-batches",
                "1",
                "--steps",
                "100000",
                "--eval-every",
                "4",
            ])
            .args(["--checkpoint-every", "100000"])
            .env("RAYON_NUM_THREADS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let t = Instant::now();
        while !log.lock().unwrap().contains("step 2/100000") {
            assert!(child.try_wait().unwrap().is_none(), "{signal}: ended early");
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{signal}: no second step"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(cmd("kill", &[signal, &child.id().to_string()]));
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let err = log.lock().unwrap().clone();
        assert_eq!(status.code(), Some(code), "{signal}: {err}");
        assert!(
            err.contains(&format!("{name}: writing a checkpoint")),
            "{err}"
        );
        let step = loadable_checkpoint(&out).expect("no checkpoint after the signal");
        assert!((2..100_000).contains(&step), "{step}");
        assert!(err.contains(&format!("stopped at step {step}")), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
