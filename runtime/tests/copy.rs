//! `Model::with_copy`: part of the blob read from a RAM copy gives the same logits, and the
//! weights inside the copied window really come from the copy.

mod common;

use common::{random_model, TINY};
use runtime::{Model, Session};

fn logits(m: Model<'_>, tokens: &[u16]) -> Vec<Vec<i32>> {
    let mut mem = vec![0u8; m.session_bytes(8)];
    let mut s = Session::new(m, 8, &mut mem).unwrap();
    tokens
        .iter()
        .map(|t| s.forward(*t).unwrap().to_vec())
        .collect()
}

/// Address range of a buffer.
fn span(b: &[u8]) -> (usize, usize) {
    (b.as_ptr() as usize, b.as_ptr() as usize + b.len())
}

fn inside(inner: &[u8], (a, b): (usize, usize)) -> bool {
    let (x, y) = span(inner);
    !inner.is_empty() && x >= a && y <= b
}

#[test]
fn copied_window_gives_identical_logits_and_is_used() {
    let blob = random_model(TINY, 11).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let want = logits(m, &[1, 5, 9, 3]);
    let hot = m.hot_range();
    assert!(hot.start < hot.end);
    // Whole hot range, half of it, a few bytes, and nothing.
    for len in [hot.len(), hot.len() / 2, 7, 0] {
        let mut ram = vec![0u8; len];
        let in_ram = span(&ram);
        let (c, n) = m.with_copy(hot.start, &mut ram);
        assert_eq!(n, len);
        assert_eq!(logits(c, &[1, 5, 9, 3]), want, "copy of {len} bytes");
        let first = c.layer(0).wq.data;
        assert_eq!(
            inside(first, in_ram),
            len >= hot.len() / 2,
            "copy of {len} bytes"
        );
        let last = c.layer(TINY.n_layers as usize - 1).w_down.data;
        assert_eq!(
            inside(last, in_ram),
            len == hot.len(),
            "copy of {len} bytes"
        );
        assert!(inside(last, span(&blob)) || inside(last, in_ram));
    }
}

#[test]
fn copy_past_the_end_is_cut() {
    let blob = random_model(TINY, 12).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let hot = m.hot_range();
    let mut ram = vec![0u8; blob.len()];
    let (c, n) = m.with_copy(hot.start, &mut ram);
    assert!(n < blob.len() && n >= hot.len());
    assert_eq!(logits(c, &[2, 4]), logits(m, &[2, 4]));
    let (_, n) = m.with_copy(usize::MAX, &mut ram);
    assert_eq!(n, 0);
}
