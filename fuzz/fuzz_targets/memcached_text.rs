//! The memcached text-protocol request parser of larderd's listener (src/listen/text.rs) on
//! arbitrary lines: it must parse or refuse every line without panicking, and a parsed
//! request must not claim more than the line holds (keys are slices of it, within memcached's
//! 250-byte limit).
#![no_main]

use libfuzzer_sys::fuzz_target;

use larderd::listen::text::{parse, Request, KEY_MAX};

fuzz_target!(|line: &[u8]| {
    if let Ok(req) = parse(line) {
        let keys: Vec<&[u8]> = match &req {
            Request::Get { keys, .. } | Request::Gat { keys, .. } => keys.clone(),
            Request::Store { key, .. }
            | Request::Delete { key, .. }
            | Request::Arith { key, .. }
            | Request::Touch { key, .. } => vec![key],
            _ => Vec::new(),
        };
        for k in keys {
            assert!(!k.is_empty() && k.len() <= KEY_MAX);
            assert!(line.windows(k.len()).any(|w| w == k), "a key is a slice of the line");
        }
    }
});
