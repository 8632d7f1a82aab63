//! Model-based test: random operation sequences against larder and a `HashMap`, with a
//! manual clock for TTLs. The arena is large enough that nothing is evicted, which the test
//! checks, so every answer must match the model exactly.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{small, TempDir};
use larder::{Cache, CasOutcome, CasToken, Error, SetOptions};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Key, value, TTL, client flags (0: stored with the plain call, no options).
    Set(u8, Val, Option<u8>, u32),
    Add(u8, Val, Option<u8>, u32),
    Replace(u8, Val, Option<u8>, u32),
    Delete(u8),
    Get(u8),
    GetMulti(Vec<u8>),
    Incr(u8, u8),
    Decr(u8, u8),
    Touch(u8, Option<u8>),
    Ttl(u8),
    Gets(u8),
    Cas(u8, Val),
    Advance(u8),
}

#[derive(Clone, Debug)]
enum Val {
    Num(u64),
    Bytes(Vec<u8>),
}

impl Val {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Val::Num(n) => n.to_string().into_bytes(),
            Val::Bytes(b) => b.clone(),
        }
    }
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        any::<u64>().prop_map(Val::Num),
        (0u64..100).prop_map(Val::Num),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Val::Bytes),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..12;
    let ttl = proptest::option::of(1u8..20);
    let flags = prop_oneof![3 => Just(0u32), 1 => any::<u32>()];
    prop_oneof![
        4 => (k.clone(), val(), ttl.clone(), flags.clone()).prop_map(|(k, v, t, f)| Op::Set(k, v, t, f)),
        2 => (k.clone(), val(), ttl.clone(), flags.clone()).prop_map(|(k, v, t, f)| Op::Add(k, v, t, f)),
        2 => (k.clone(), val(), ttl.clone(), flags).prop_map(|(k, v, t, f)| Op::Replace(k, v, t, f)),
        2 => k.clone().prop_map(Op::Delete),
        4 => k.clone().prop_map(Op::Get),
        1 => proptest::collection::vec(k.clone(), 0..40).prop_map(Op::GetMulti),
        2 => (k.clone(), any::<u8>()).prop_map(|(k, d)| Op::Incr(k, d)),
        1 => (k.clone(), any::<u8>()).prop_map(|(k, d)| Op::Decr(k, d)),
        1 => (k.clone(), ttl).prop_map(|(k, t)| Op::Touch(k, t)),
        1 => k.clone().prop_map(Op::Ttl),
        2 => k.clone().prop_map(Op::Gets),
        2 => (k, val()).prop_map(|(k, v)| Op::Cas(k, v)),
        2 => (0u8..10).prop_map(Op::Advance),
    ]
}

#[derive(Default)]
struct Model {
    now: u64,
    /// value, expiry, version, client flags
    items: HashMap<u8, (Vec<u8>, Option<u64>, u64, u32)>,
    version: u64,
    tokens: HashMap<u8, (CasToken, u64)>,
}

impl Model {
    fn live(&self, k: u8) -> Option<&(Vec<u8>, Option<u64>, u64, u32)> {
        self.items
            .get(&k)
            .filter(|(_, exp, _, _)| exp.is_none_or(|e| self.now < e))
    }
    fn put(&mut self, k: u8, v: Vec<u8>, ttl: Option<u8>, flags: u32) {
        self.version += 1;
        let exp = ttl.map(|t| self.now + u64::from(t));
        self.items.insert(k, (v, exp, self.version, flags));
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

fn ttl(t: Option<u8>) -> Option<Duration> {
    t.map(|t| Duration::from_secs(u64::from(t)))
}

fn opts(t: Option<u8>, flags: u32) -> SetOptions {
    let o = SetOptions::new().flags(flags);
    match ttl(t) {
        Some(d) => o.ttl(d),
        None => o,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let d = TempDir::new("model");
    let clock = Arc::new(AtomicU64::new(3_000_000_000));
    let c = Cache::create(d.arena(), &small(8 << 20))
        .unwrap()
        .with_manual_clock(clock.clone());
    let mut m = Model {
        now: 3_000_000_000,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Set(k, v, t, f) => {
                if f == 0 {
                    c.set(&key(k), &v.bytes(), ttl(t)).unwrap();
                } else {
                    c.set_with(&key(k), &v.bytes(), &opts(t, f)).unwrap();
                }
                m.put(k, v.bytes(), t, f);
            }
            Op::Add(k, v, t, f) => {
                let want = m.live(k).is_none();
                let got = if f == 0 {
                    c.add(&key(k), &v.bytes(), ttl(t))
                } else {
                    c.add_with(&key(k), &v.bytes(), &opts(t, f))
                };
                prop_assert_eq!(got.unwrap(), want);
                if want {
                    m.put(k, v.bytes(), t, f);
                }
            }
            Op::Replace(k, v, t, f) => {
                let want = m.live(k).is_some();
                let got = if f == 0 {
                    c.replace(&key(k), &v.bytes(), ttl(t))
                } else {
                    c.replace_with(&key(k), &v.bytes(), &opts(t, f))
                };
                prop_assert_eq!(got.unwrap(), want);
                if want {
                    m.put(k, v.bytes(), t, f);
                }
            }
            Op::Delete(k) => {
                let want = m.live(k).is_some();
                prop_assert_eq!(c.delete(&key(k)).unwrap(), want);
                m.items.remove(&k);
            }
            Op::Get(k) => {
                prop_assert_eq!(c.get(&key(k)).unwrap(), m.live(k).map(|x| x.0.clone()));
                let mut v = Vec::new();
                let got = c.get_meta_into(&key(k), &mut v).unwrap();
                prop_assert_eq!(
                    got.map(|g| (v, g.flags)),
                    m.live(k).map(|x| (x.0.clone(), x.3))
                );
            }
            Op::GetMulti(ks) => {
                let keys: Vec<Vec<u8>> = ks.iter().map(|&k| key(k)).collect();
                let want: Vec<Option<Vec<u8>>> =
                    ks.iter().map(|&k| m.live(k).map(|x| x.0.clone())).collect();
                prop_assert_eq!(c.get_multi(&keys).unwrap(), want);
                let mut got = Vec::new();
                c.get_multi_with(&keys, |i, v, meta| got.push((i, v.to_vec(), meta.flags)))
                    .unwrap();
                let want: Vec<(usize, Vec<u8>, u32)> = ks
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &k)| m.live(k).map(|x| (i, x.0.clone(), x.3)))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Incr(k, d) | Op::Decr(k, d) => {
                let decr = matches!(op, Op::Decr(..));
                let got = if decr {
                    c.decr(&key(k), d.into())
                } else {
                    c.incr(&key(k), d.into())
                };
                match m.live(k).cloned() {
                    None => prop_assert!(matches!(got, Ok(None)), "{:?}", got),
                    Some((v, exp, _, flags)) => match std::str::from_utf8(&v)
                        .ok()
                        .filter(|s| {
                            !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
                        })
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        None => prop_assert!(matches!(got, Err(Error::NotANumber)), "{:?}", got),
                        Some(n) => {
                            let n = if decr {
                                n.saturating_sub(d.into())
                            } else {
                                n.wrapping_add(d.into())
                            };
                            prop_assert_eq!(got.unwrap(), Some(n));
                            m.version += 1;
                            let ver = m.version;
                            m.items
                                .insert(k, (n.to_string().into_bytes(), exp, ver, flags));
                        }
                    },
                }
            }
            Op::Touch(k, t) => {
                let want = m.live(k).is_some();
                prop_assert_eq!(c.touch(&key(k), ttl(t)).unwrap(), want);
                if want {
                    let (v, _, _, flags) = m.items[&k].clone();
                    m.put(k, v, t, flags);
                }
            }
            Op::Ttl(k) => {
                let want = m
                    .live(k)
                    .map(|(_, e, _, _)| e.map(|e| Duration::from_secs(e - m.now)));
                prop_assert_eq!(c.ttl(&key(k)).unwrap(), want);
            }
            Op::Gets(k) => {
                let got = c.gets(&key(k)).unwrap();
                prop_assert_eq!(
                    got.as_ref().map(|g| g.0.clone()),
                    m.live(k).map(|x| x.0.clone())
                );
                if let (Some((_, t)), Some((_, _, ver, _))) = (got, m.live(k)) {
                    m.tokens.insert(k, (t, *ver));
                }
            }
            Op::Cas(k, v) => {
                let Some(&(t, ver)) = m.tokens.get(&k) else {
                    continue;
                };
                let want = match m.live(k) {
                    None => CasOutcome::NotFound,
                    Some((_, _, cur, _)) if *cur == ver => CasOutcome::Stored,
                    Some(_) => CasOutcome::Exists,
                };
                prop_assert_eq!(c.cas(&key(k), &v.bytes(), t, None).unwrap(), want);
                if want == CasOutcome::Stored {
                    m.put(k, v.bytes(), None, 0);
                }
            }
            Op::Advance(s) => {
                m.now += u64::from(s);
                clock.store(m.now, Ordering::Relaxed);
            }
        }
    }
    // Everything the model holds is there, and nothing else.
    let mut keys: Vec<Vec<u8>> = c.keys().collect();
    keys.sort();
    let mut want: Vec<Vec<u8>> = m
        .items
        .keys()
        .filter(|&&k| m.live(k).is_some())
        .map(|&k| key(k))
        .collect();
    want.sort();
    prop_assert_eq!(keys, want);
    let s = c.stats();
    prop_assert_eq!(
        s.totals.evictions + s.totals.index_evictions,
        0,
        "the model assumes no eviction"
    );
    prop_assert_eq!(s.totals.corrupt, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn larder_behaves_like_a_hashmap(ops in proptest::collection::vec(op(), 1..200)) {
        run(ops)?;
    }
}
