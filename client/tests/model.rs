//! Model-based test: random operation sequences against larder and a `HashMap`, with a
//! manual clock for TTLs. The arena is large enough that nothing is evicted, which the test
//! checks, so every answer must match the model exactly.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{small, TempDir};
use larder::{Cache, CasOutcome, CasToken, Error};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Set(u8, Val, Option<u8>),
    Add(u8, Val, Option<u8>),
    Replace(u8, Val, Option<u8>),
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
    prop_oneof![
        4 => (k.clone(), val(), ttl.clone()).prop_map(|(k, v, t)| Op::Set(k, v, t)),
        2 => (k.clone(), val(), ttl.clone()).prop_map(|(k, v, t)| Op::Add(k, v, t)),
        2 => (k.clone(), val(), ttl.clone()).prop_map(|(k, v, t)| Op::Replace(k, v, t)),
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
    items: HashMap<u8, (Vec<u8>, Option<u64>, u64)>,
    version: u64,
    tokens: HashMap<u8, (CasToken, u64)>,
}

impl Model {
    fn live(&self, k: u8) -> Option<&(Vec<u8>, Option<u64>, u64)> {
        self.items
            .get(&k)
            .filter(|(_, exp, _)| exp.is_none_or(|e| self.now < e))
    }
    fn put(&mut self, k: u8, v: Vec<u8>, ttl: Option<u8>) {
        self.version += 1;
        let exp = ttl.map(|t| self.now + u64::from(t));
        self.items.insert(k, (v, exp, self.version));
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

fn ttl(t: Option<u8>) -> Option<Duration> {
    t.map(|t| Duration::from_secs(u64::from(t)))
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
            Op::Set(k, v, t) => {
                c.set(&key(k), &v.bytes(), ttl(t)).unwrap();
                m.put(k, v.bytes(), t);
            }
            Op::Add(k, v, t) => {
                let want = m.live(k).is_none();
                prop_assert_eq!(c.add(&key(k), &v.bytes(), ttl(t)).unwrap(), want);
                if want {
                    m.put(k, v.bytes(), t);
                }
            }
            Op::Replace(k, v, t) => {
                let want = m.live(k).is_some();
                prop_assert_eq!(c.replace(&key(k), &v.bytes(), ttl(t)).unwrap(), want);
                if want {
                    m.put(k, v.bytes(), t);
                }
            }
            Op::Delete(k) => {
                let want = m.live(k).is_some();
                prop_assert_eq!(c.delete(&key(k)).unwrap(), want);
                m.items.remove(&k);
            }
            Op::Get(k) => {
                prop_assert_eq!(c.get(&key(k)).unwrap(), m.live(k).map(|x| x.0.clone()));
            }
            Op::GetMulti(ks) => {
                let keys: Vec<Vec<u8>> = ks.iter().map(|&k| key(k)).collect();
                let want: Vec<Option<Vec<u8>>> =
                    ks.iter().map(|&k| m.live(k).map(|x| x.0.clone())).collect();
                prop_assert_eq!(c.get_multi(&keys).unwrap(), want);
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
                    Some((v, exp, _)) => match std::str::from_utf8(&v)
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
                            m.items.insert(k, (n.to_string().into_bytes(), exp, ver));
                        }
                    },
                }
            }
            Op::Touch(k, t) => {
                let want = m.live(k).is_some();
                prop_assert_eq!(c.touch(&key(k), ttl(t)).unwrap(), want);
                if want {
                    let v = m.items[&k].0.clone();
                    m.put(k, v, t);
                }
            }
            Op::Ttl(k) => {
                let want = m
                    .live(k)
                    .map(|(_, e, _)| e.map(|e| Duration::from_secs(e - m.now)));
                prop_assert_eq!(c.ttl(&key(k)).unwrap(), want);
            }
            Op::Gets(k) => {
                let got = c.gets(&key(k)).unwrap();
                prop_assert_eq!(
                    got.as_ref().map(|g| g.0.clone()),
                    m.live(k).map(|x| x.0.clone())
                );
                if let (Some((_, t)), Some((_, _, ver))) = (got, m.live(k)) {
                    m.tokens.insert(k, (t, *ver));
                }
            }
            Op::Cas(k, v) => {
                let Some(&(t, ver)) = m.tokens.get(&k) else {
                    continue;
                };
                let want = match m.live(k) {
                    None => CasOutcome::NotFound,
                    Some((_, _, cur)) if *cur == ver => CasOutcome::Stored,
                    Some(_) => CasOutcome::Exists,
                };
                prop_assert_eq!(c.cas(&key(k), &v.bytes(), t, None).unwrap(), want);
                if want == CasOutcome::Stored {
                    m.put(k, v.bytes(), None);
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
