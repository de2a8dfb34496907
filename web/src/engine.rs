//! [`Engine`]: a loaded blob, its session and the generation in progress, owned together.
//!
//! The runtime borrows everything (`Model<'a>` borrows the blob, `Session<'m, 'b>` its working
//! memory, `Generator` the session and the prompt), which is right on a microcontroller and
//! awkward behind a C API that keeps state between calls. The engine owns those allocations
//! (boxes turned into raw pointers, `Owned`) and hands the runtime `'static` borrows of them;
//! its fields are declared so that every borrower drops before what it borrows is freed.

use std::ptr::NonNull;

use runtime::kernels::{level, Level};
use runtime::writer::ModelParams;
use runtime::{decode, encode, session_bytes_prefill, Generator, Model, Session, TernaryEncoding};

use crate::settings::Settings;
use crate::summary;

/// Most bytes the engine allocates for a blob or a session: `tools`' default `--max-memory`
/// (1 GiB). A blob whose configuration needs more working memory is refused with a message
/// instead of aborting the module on a failed allocation.
pub const MAX_MEMORY: usize = 1 << 30;

/// A heap allocation the engine frees itself (in `Drop`), so that it can lend `'static`
/// borrows of it to the runtime.
struct Owned<T: ?Sized>(NonNull<T>);

impl<T: ?Sized> Owned<T> {
    fn new(b: Box<T>) -> Owned<T> {
        Owned(NonNull::from(Box::leak(b)))
    }

    /// A shared borrow for as long as the caller likes.
    ///
    /// # Safety
    /// The borrow must end before `self` drops, and no `&mut` from [`Owned::get_mut`] may be
    /// live at the same time.
    unsafe fn get(&self) -> &'static T {
        // SAFETY: the pointer came from `Box::leak` and is freed only in `drop`; the caller
        // keeps the borrow rules above.
        unsafe { &*self.0.as_ptr() }
    }

    /// An exclusive borrow for as long as the caller likes.
    ///
    /// # Safety
    /// The borrow must end before `self` drops, and be the only borrow while it lives.
    unsafe fn get_mut(&mut self) -> &'static mut T {
        // SAFETY: as in `get`.
        unsafe { &mut *self.0.as_ptr() }
    }
}

impl<T: ?Sized> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::leak` and is freed once, here; the owners of
        // `Owned` values drop every borrower first (field order).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A generation in progress: the runtime's [`Generator`] over the engine's session, the
/// prompt it borrows, and how many tokens are still to come.
struct Run {
    // Declared before `prompt`: dropped first.
    generator: Generator<'static, 'static, 'static, 'static>,
    _prompt: Owned<[u16]>,
    left: usize,
    generated: usize,
}

/// A loaded, validated model with a session over its whole context, ready to generate as
/// `tools generate` does.
pub struct Engine {
    // Drop order = declaration order: the run borrows the session, the session borrows the
    // working memory and (through the model) the blob.
    run: Option<Run>,
    session: Owned<Session<'static, 'static>>,
    _memory: Owned<[u8]>,
    model: Model<'static>,
    _blob: Owned<[u8]>,
    summary_text: String,
    summary_json: String,
}

/// Why a blob did not load or a generation did not start.
pub type Message = String;

/// [`Model::from_bytes_in`] with room for any vocabulary's ids (128 KiB, as `tools` passes), so
/// that the duplicate-token check of an unsorted (hostile) vocabulary is one sort.
fn validate(blob: &[u8]) -> Result<Model<'_>, Message> {
    let mut scratch = vec![0u8; 2 * (runtime::format::MAX_VOCAB as usize + 1)];
    Model::from_bytes_in(blob, &mut scratch).map_err(|e| e.to_string())
}

/// The context, the prefill block (half the context, as `tools generate`) and the working
/// memory of a session over the whole context; refused over [`MAX_MEMORY`].
fn session_size(model: &Model<'_>) -> Result<(u32, u32, usize), Message> {
    let config = model.config();
    let ctx = config.ctx_len;
    let block = (ctx / 2).max(1);
    let need = session_bytes_prefill(config, ctx, block);
    if need > MAX_MEMORY {
        return Err(format!(
            "a session over this model's context of {ctx} needs {need} bytes of working \
             memory, more than the page's cap of {MAX_MEMORY} bytes"
        ));
    }
    Ok((ctx, block, need))
}

impl Engine {
    /// Validates `blob` (everything `Model::from_bytes` checks: magic, version, lengths,
    /// checksum, config, tensor table, section values) and allocates a session over the whole
    /// context with prefill blocks of half of it, as `tools generate` does. Refuses a session
    /// over [`MAX_MEMORY`] or one the allocator refuses, with a message.
    pub fn load(blob: Vec<u8>) -> Result<Engine, Message> {
        let (summary_text, summary_json, blob) = Engine::for_kernels(blob)?;
        let blob = Owned::new(blob.into_boxed_slice());
        // SAFETY: `model` and `session` below borrow the blob; both end up in the engine, which
        // drops them before `_blob`, or are dropped on the way out of this function before
        // `blob` (locals drop in reverse order).
        let model = validate(unsafe { blob.get() })?;
        let (ctx, block, need) = session_size(&model)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(need).map_err(|_| {
            format!("the browser refused {need} bytes of working memory for a session")
        })?;
        buf.resize(need, 0u8);
        let mut memory = Owned::new(buf.into_boxed_slice());
        // SAFETY: the only borrow of the memory; the session drops before it (as above).
        let session = Session::with_block(model, ctx, block, unsafe { memory.get_mut() })
            .map_err(|e| e.to_string())?;
        Ok(Engine {
            run: None,
            session: Owned::new(Box::new(session)),
            _memory: memory,
            model,
            _blob: blob,
            summary_text,
            summary_json,
        })
    }

    /// Validates `blob`, takes `tools inspect`'s report of it, and returns the blob the kernels
    /// run: the same one, or, when it stores base-3 matrices and the kernel level has SIMD
    /// kernels (which read the 2-bit encoding), the same model rewritten with 2-bit matrices,
    /// as `tools generate` does on a host (the same weights, so the same outputs bit for bit;
    /// with the portable kernels the base-3 table lookup is the faster one).
    fn for_kernels(blob: Vec<u8>) -> Result<(String, String, Vec<u8>), Message> {
        let model = validate(&blob)?;
        session_size(&model)?; // refused before any repacking
        let (text, json) = summary::both(&model, &blob);
        let base3 = model.layout().encodings().contains(&TernaryEncoding::Base3);
        if !base3 || level() == Level::Portable {
            return Ok((text, json, blob));
        }
        let two_bit = ModelParams::from_model(&model)
            .and_then(|p| p.to_blob())
            .map_err(|e| {
                format!(
                    "cannot repack the matrices to 2-bit for the {} kernels: {e}",
                    level()
                )
            })?;
        Ok((text, json, two_bit))
    }

    /// The model (borrowing the engine: the blob lives as long as the engine).
    pub fn model(&self) -> Model<'_> {
        self.model
    }

    /// `tools inspect`'s report of the blob: its text, or its JSON (`--json`).
    pub fn summary(&self, json: bool) -> &str {
        if json {
            &self.summary_json
        } else {
            &self.summary_text
        }
    }

    /// Starts generating a continuation of `prompt` (replacing a generation in progress):
    /// encodes it as `tools generate` does and refuses it with the same message when it is
    /// empty or holds a character outside the vocabulary. Tokens then come from [`step`].
    ///
    /// [`step`]: Engine::step
    pub fn start(&mut self, prompt: &[u8], settings: Settings) -> Result<(), Message> {
        self.run = None;
        let mut ids = Vec::new();
        ids.try_reserve_exact(prompt.len())
            .map_err(|_| format!("no memory to encode a prompt of {} bytes", prompt.len()))?;
        ids.resize(prompt.len(), 0u16);
        let n = encode(&self.model, prompt, &mut ids).map_err(|e| format!("prompt: {e}"))?;
        if n == 0 {
            return Err("the prompt must not be empty".into());
        }
        ids.truncate(n);
        let prompt = Owned::new(ids.into_boxed_slice());
        // SAFETY: `run` is `None`, so no other borrow of the session is live; the generator
        // lives in `self.run`, which drops before `self.session` and before its own `_prompt`.
        let generator =
            unsafe { Generator::new(self.session.get_mut(), prompt.get(), settings.sampler) };
        self.run = Some(Run {
            generator,
            _prompt: prompt,
            left: settings.tokens,
            generated: 0,
        });
        Ok(())
    }

    /// The next token's bytes, `Ok(None)` once the requested number of tokens is out (or when
    /// nothing was started). The first call runs the prompt through the model (prefill).
    pub fn step(&mut self) -> Result<Option<&[u8]>, Message> {
        let Some(run) = self.run.as_mut().filter(|r| r.left > 0) else {
            return Ok(None);
        };
        match run.generator.next_token() {
            Ok(Some(tok)) => {
                run.left -= 1;
                run.generated += 1;
                Ok(Some(decode(&self.model, tok)))
            }
            Ok(None) => {
                run.left = 0;
                Ok(None)
            }
            Err(e) => {
                self.run = None;
                Err(e.to_string())
            }
        }
    }

    /// Ends the generation in progress (the next [`step`](Engine::step) returns `Ok(None)`).
    pub fn stop(&mut self) {
        self.run = None;
    }

    /// Tokens generated so far and window slides (re-prefills) so far, of the generation in
    /// progress or last finished.
    pub fn progress(&self) -> (usize, u32) {
        self.run
            .as_ref()
            .map_or((0, 0), |r| (r.generated, r.generator.slides()))
    }

    /// The kernel family the runtime runs (`simd128` in a browser, or `portable`).
    pub fn kernels(&self) -> &'static str {
        level().name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/shakespeare-mcu.bin"
        ))
        .unwrap()
    }

    fn generate(engine: &mut Engine, prompt: &[u8], settings: Settings) -> Vec<u8> {
        engine.start(prompt, settings).unwrap();
        let mut out = prompt.to_vec();
        while let Some(b) = engine.step().unwrap() {
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn restarts_give_the_same_bytes() {
        let mut e = Engine::load(shipped()).unwrap();
        let s = Settings::parse("temperature=0.8\ntop_k=5\nseed=3\ntokens=40").unwrap();
        let a = generate(&mut e, b"ROMEO:", s);
        // Stop a run midway, start another, then the first again.
        e.start(b"JULIET:", s).unwrap();
        e.step().unwrap();
        let b = generate(&mut e, b"ROMEO:", s);
        assert_eq!(a, b);
        assert_eq!(a.len(), 6 + 40, "one byte per token in this vocabulary");
        assert_eq!(e.progress().0, 40);
    }

    #[test]
    fn bad_prompts_are_refused_with_a_message() {
        let mut e = Engine::load(shipped()).unwrap();
        let s = Settings::default();
        assert_eq!(e.start(b"", s).unwrap_err(), "the prompt must not be empty");
        let m = e.start("ROMEO: Ω".as_bytes(), s).unwrap_err();
        assert!(m.starts_with("prompt: ") && m.contains("offset 7"), "{m}");
        // Nothing runs after a refused start.
        assert_eq!(e.step().unwrap(), None);
    }

    #[test]
    fn a_session_over_the_cap_is_refused_with_a_message() {
        // A valid blob (checksum and all) whose session would need over 1 GiB: the shipped
        // model's layers repeated 160 times over the largest context.
        let shipped = shipped();
        let mut p = ModelParams::from_model(&Model::from_bytes(&shipped).unwrap()).unwrap();
        let ctx = runtime::format::MAX_CTX;
        let row = p.rope.len() / p.config.ctx_len as usize;
        p.rope = p
            .rope
            .iter()
            .copied()
            .cycle()
            .take(row * ctx as usize)
            .collect();
        p.config.ctx_len = ctx;
        p.layers = p.layers.iter().cycle().take(160).cloned().collect();
        p.config.n_layers = 160;
        let blob = p.to_blob().unwrap();
        let need = session_bytes_prefill(&p.config, ctx, ctx / 2);
        assert!(need > MAX_MEMORY);
        let m = Engine::load(blob).err().unwrap();
        assert_eq!(
            m,
            format!(
                "a session over this model's context of 32768 needs {need} bytes of working \
                 memory, more than the page's cap of 1073741824 bytes"
            )
        );
    }

    #[test]
    fn hostile_blobs_are_refused_with_a_message() {
        let good = shipped();
        let mut flipped = good.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 0x10;
        for (blob, says) in [
            (Vec::new(), "shorter"),
            (good[..good.len() / 2].to_vec(), "truncated"),
            (flipped, "checksum"),
            (
                b"not a model at all, just some text of some length".to_vec(),
                "magic",
            ),
        ] {
            let m = Engine::load(blob).err().unwrap();
            assert!(m.to_lowercase().contains(says), "{says}: {m}");
        }
    }
}
