//! The prune plan (`sparsebak_common::plan::PlanReader`), as the agent reads
//! a plan uploaded into the archive: never a panic; an accepted plan's head
//! passes its own check, its moves ascend, and re-encoding it with
//! `to_text`/`move_line`/`end_line` gives back the very same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak_common::plan::{end_line, PlanReader};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = PlanReader::open(data) else {
        return;
    };
    let head = r.head.clone();
    assert!(head.check().is_ok());
    let mut text = head.to_text();
    let mut moves = Vec::new();
    for m in r {
        match m {
            Ok(m) => moves.push(m),
            Err(_) => return,
        }
    }
    assert!(moves.windows(2).all(|w| w[0].addr < w[1].addr));
    for m in &moves {
        assert!(m.session < head.pruned.len());
        text.push_str(&head.move_line(m));
    }
    text.push_str(&end_line(moves.len() as u64));
    assert_eq!(
        text.as_bytes(),
        data,
        "an accepted plan does not re-encode to itself"
    );
});
