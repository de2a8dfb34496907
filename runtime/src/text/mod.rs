//! Text in and out: tokens, sampling, streaming generation and the chat protocol.
//!
//! | module | what |
//! |---|---|
//! | [`tokenizer`](crate::tokenizer) | [`encode`](crate::encode), [`decode`](crate::decode) |
//! | [`bpe`](crate::bpe) | byte-level BPE: chunking, merge table, encoder (format v4) |
//! | [`utf8`](crate::utf8) | [`Utf8Stream`](crate::Utf8Stream): output that never splits a character |
//! | [`sampler`](crate::sampler) | integer temperature / top-k sampling, [`Pcg32`](crate::Pcg32) |
//! | [`generate`](crate::generate) | [`Generator`](crate::Generator): one token per call, sliding window |
//! | [`chat`](crate::chat) | the interactive line protocol of the firmware and `tools chat` |

pub mod bpe;
pub mod chat;
pub mod generate;
pub mod sampler;
pub mod tokenizer;
pub mod utf8;
