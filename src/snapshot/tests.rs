//! The format's round trip and its refusal of every damaged file.

use std::time::Duration;

use larder::Entry;

use super::format::*;

fn sample() -> Vec<Entry> {
    (0..300u32)
        .map(|i| Entry {
            key: format!("key-{i}").into_bytes(),
            value: vec![i as u8; (i as usize * 37) % 3000],
            ttl: match i % 3 {
                0 => None,
                1 => Some(Duration::from_secs(3600)),
                _ => Some(Duration::from_secs(u64::from(i))),
            },
            grace: (i % 3 == 1).then(|| Duration::from_secs(u64::from(i))),
            flags: if i % 5 == 0 {
                i.wrapping_mul(0x0101_0101)
            } else {
                0
            },
        })
        .collect()
}

fn encoded(entries: Vec<Entry>, created: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let n = encode(entries.into_iter(), created, &mut |c| {
        out.extend_from_slice(c);
        Ok(())
    })
    .unwrap();
    out[..HEADER_LEN].copy_from_slice(&header(created, n));
    out
}

type Items = Vec<(Vec<u8>, Vec<u8>, u64, u32, u32)>;

fn decoded(b: &[u8]) -> Result<Items, ReadError> {
    let mut v = Vec::new();
    decode(b, b.len() as u64, &mut |i| {
        v.push((
            i.key.to_vec(),
            i.value.to_vec(),
            i.expires,
            i.grace,
            i.flags,
        ))
    })?;
    Ok(v)
}

#[test]
fn round_trip_keeps_items_absolute_expiry_grace_and_flags() {
    let b = encoded(sample(), 1_000_000);
    let got = decoded(&b).unwrap();
    assert_eq!(got.len(), 300);
    for (e, (k, v, exp, grace, flags)) in sample().iter().zip(&got) {
        assert_eq!(&e.key, k);
        assert_eq!(&e.value, v);
        assert_eq!(*exp, e.ttl.map_or(0, |t| 1_000_000 + t.as_secs()));
        assert_eq!(u64::from(*grace), e.grace.map_or(0, |g| g.as_secs()));
        assert_eq!(*flags, e.flags);
    }
    assert!(got.iter().any(|i| i.4 != 0), "the sample has flagged items");
}

#[test]
fn a_version_2_snapshot_still_reads_with_flags_0() {
    // Version 2: the frames of version 3 without the trailing flags word.
    let mut b = header_of(2, 42, 1).to_vec();
    frame(&mut b, |p| {
        p.push(TAG_ITEM);
        p.extend_from_slice(&1u16.to_le_bytes());
        p.extend_from_slice(b"a");
        p.extend_from_slice(&3u32.to_le_bytes());
        p.extend_from_slice(b"one");
        p.extend_from_slice(&99u64.to_le_bytes());
        p.extend_from_slice(&7u32.to_le_bytes());
    });
    frame(&mut b, |p| {
        p.push(TAG_END);
        p.extend_from_slice(&1u64.to_le_bytes());
    });
    assert_eq!(
        decoded(&b).unwrap(),
        vec![(b"a".to_vec(), b"one".to_vec(), 99, 7, 0)]
    );
    // Version-3 frames are 4 bytes longer: a version-2 header on them is refused.
    let mut v3 = encoded(sample().into_iter().take(3).collect(), 42);
    v3[..HEADER_LEN].copy_from_slice(&header_of(2, 42, 3));
    assert!(matches!(decoded(&v3), Err(ReadError::Corrupt(_))));
}

#[test]
fn a_version_1_snapshot_still_reads_without_grace() {
    // Version 1: the same frames without the grace word.
    let mut b = header_of(1, 42, 2).to_vec();
    for (k, v, exp) in [(&b"a"[..], &b"one"[..], 0u64), (b"bb", b"two", 99)] {
        frame(&mut b, |p| {
            p.push(TAG_ITEM);
            p.extend_from_slice(&(k.len() as u16).to_le_bytes());
            p.extend_from_slice(k);
            p.extend_from_slice(&(v.len() as u32).to_le_bytes());
            p.extend_from_slice(v);
            p.extend_from_slice(&exp.to_le_bytes());
        });
    }
    frame(&mut b, |p| {
        p.push(TAG_END);
        p.extend_from_slice(&2u64.to_le_bytes());
    });
    let got = decoded(&b).unwrap();
    assert_eq!(
        got,
        vec![
            (b"a".to_vec(), b"one".to_vec(), 0, 0, 0),
            (b"bb".to_vec(), b"two".to_vec(), 99, 0, 0)
        ]
    );
    // Later frames are longer: a version-1 header on them is refused, not misread.
    let mut v3 = encoded(sample().into_iter().take(3).collect(), 42);
    v3[..HEADER_LEN].copy_from_slice(&header_of(1, 42, 3));
    assert!(matches!(decoded(&v3), Err(ReadError::Corrupt(_))));
}

#[test]
fn empty_snapshot_is_valid() {
    let b = encoded(Vec::new(), 5);
    assert_eq!(decoded(&b).unwrap().len(), 0);
    assert_eq!(b.len(), HEADER_LEN + FRAME_HEAD + 9);
}

#[test]
fn every_flipped_byte_and_every_truncation_is_detected() {
    let b = encoded(sample().into_iter().take(20).collect(), 77);
    for i in 0..b.len() {
        for bit in [0x01u8, 0x80] {
            let mut d = b.clone();
            d[i] ^= bit;
            assert!(
                matches!(decoded(&d), Err(ReadError::Corrupt(_))),
                "flip of bit {bit:#x} at byte {i} went unnoticed"
            );
        }
    }
    for n in 0..b.len() {
        assert!(
            matches!(decoded(&b[..n]), Err(ReadError::Corrupt(_))),
            "truncation to {n} bytes went unnoticed"
        );
    }
    let mut longer = b.clone();
    longer.push(0);
    assert!(matches!(decoded(&longer), Err(ReadError::Corrupt(_))));
}
