//! The worker side: what each re-executed process does (writer, reader, hostile open).

use super::*;

pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Progress a worker publishes: `[ops, verified reads, writes, acknowledged incrs]`.
pub(crate) struct Heartbeat {
    pub(crate) file: File,
    pub(crate) words: [u64; 4],
}

impl Heartbeat {
    pub(crate) fn publish(&mut self) -> Result<(), String> {
        let mut b = [0u8; 32];
        for (i, w) in self.words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        self.file
            .write_all_at(&b, 0)
            .map_err(|e| format!("heartbeat: {e}"))
    }
}

pub(crate) struct WorkerCtx {
    pub(crate) cache: Cache,
    pub(crate) rng: StdRng,
    pub(crate) hb: Heartbeat,
    pub(crate) stop: PathBuf,
    pub(crate) id: u64,
    /// Counters and persistent keys are in use (the roomy run).
    pub(crate) counters: bool,
    /// Data keys in use.
    pub(crate) ndata: u64,
}

pub(crate) fn run_worker(role: &str) -> Result<(), String> {
    let arena = PathBuf::from(std::env::var(ARENA).map_err(|_| "no arena path".to_string())?);
    if role == "open-hostile" {
        return open_hostile(&arena);
    }
    let dir = PathBuf::from(std::env::var(DIR).map_err(|_| "no directory".to_string())?);
    let id = env_u64(ID, 0);
    let hb_file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(format!("hb-{id}")))
        .map_err(|e| format!("heartbeat file: {e}"))?;
    let cache = Cache::open(&arena).map_err(|e| format!("open: {e}"))?;
    let mut w = WorkerCtx {
        cache,
        rng: StdRng::seed_from_u64(env_u64(SEED, id)),
        hb: Heartbeat {
            file: hb_file,
            words: [0; 4],
        },
        stop: dir.join("stop"),
        id,
        counters: env_u64(COUNTERS, 0) == 1,
        ndata: env_u64(KEYS, 800).clamp(1, NDATA),
    };
    w.hb.publish()?;
    match role {
        "writer" => writer(&mut w, &dir),
        "reader" => reader(&mut w),
        other => Err(format!("unknown role {other}")),
    }?;
    w.hb.publish()?;
    println!(
        "RESULT ops={} verified={} writes={} incrs={}",
        w.hb.words[0], w.hb.words[1], w.hb.words[2], w.hb.words[3]
    );
    Ok(())
}

impl WorkerCtx {
    /// Every 32 operations: publish progress; `true` when the harness asks to stop.
    pub(crate) fn tick(&mut self) -> Result<bool, String> {
        self.hb.words[0] += 1;
        if self.hb.words[0].is_multiple_of(32) {
            self.hb.publish()?;
            if self.hb.words[0].is_multiple_of(256) && self.stop.exists() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn verify(&mut self, key: &[u8], v: &[u8], what: &str) -> Result<(), String> {
        check_any(key, v).map_err(|e| format!("CORRUPT value from {what}: {e}"))?;
        self.hb.words[1] += 1;
        Ok(())
    }

    pub(crate) fn value_len(&mut self) -> usize {
        // Mostly small, sometimes up to LONGEST: items of every size class.
        if self.rng.gen_bool(0.8) {
            self.rng.gen_range(20..400)
        } else {
            self.rng.gen_range(400..=LONGEST)
        }
    }
}

/// An append-only file of one byte per event (the counter's number): what this worker
/// attempted (written before the call) and what was acknowledged (written after it).
pub(crate) fn append_file(dir: &Path, name: &str) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(|e| format!("{name}: {e}"))
}

pub(crate) fn writer(w: &mut WorkerCtx, dir: &Path) -> Result<(), String> {
    let mut attempts = append_file(dir, &format!("att-{}", w.id))?;
    let mut acks = append_file(dir, &format!("ack-{}", w.id))?;
    let mut last_ctr = [0u64; NCTR as usize];
    // Sequence numbers distinct between workers.
    let mut seq = w.id << 32;
    let c = w.cache.clone();
    let e = |op: &str, k: &[u8], err: larder::Error| {
        format!("{op} {:?}: {err}", String::from_utf8_lossy(k))
    };
    while !w.tick()? {
        seq += 1;
        let k = data_key(w.rng.gen_range(0..w.ndata));
        let r = w.rng.gen_range(0..100);
        match r {
            0..=29 => {
                let v = make_value(&k, seq, w.value_len());
                c.set(&k, &v, None).map_err(|x| e("set", &k, x))?;
                w.hb.words[2] += 1;
            }
            30..=39 => {
                let v = make_value(&k, seq, w.value_len());
                if c.add(&k, &v, None).map_err(|x| e("add", &k, x))? {
                    w.hb.words[2] += 1;
                }
            }
            40..=49 => {
                let v = make_value(&k, seq, w.value_len());
                if c.replace(&k, &v, None).map_err(|x| e("replace", &k, x))? {
                    w.hb.words[2] += 1;
                }
            }
            50..=56 => {
                c.delete(&k).map_err(|x| e("delete", &k, x))?;
            }
            57..=66 => {
                if let Some((old, token)) = c.gets(&k).map_err(|x| e("gets", &k, x))? {
                    w.verify(&k, &old, "gets")?;
                    let v = make_value(&k, seq, w.value_len());
                    match c.cas(&k, &v, token, None).map_err(|x| e("cas", &k, x))? {
                        CasOutcome::Stored => w.hb.words[2] += 1,
                        CasOutcome::Exists | CasOutcome::NotFound => {}
                    }
                }
            }
            67..=81 if w.counters => {
                let j = w.rng.gen_range(0..NCTR);
                let k = ctr_key(j);
                attempts
                    .write_all(&[j as u8])
                    .map_err(|x| format!("attempts file: {x}"))?;
                match c.incr(&k, 1).map_err(|x| e("incr", &k, x))? {
                    Some(v) if v > last_ctr[j as usize] => last_ctr[j as usize] = v,
                    Some(v) => {
                        return Err(format!(
                            "LOST INCREMENT: {} went from {} to {v}",
                            String::from_utf8_lossy(&k),
                            last_ctr[j as usize]
                        ))
                    }
                    None => {
                        return Err(format!(
                            "LOST COUNTER: {} vanished",
                            String::from_utf8_lossy(&k)
                        ))
                    }
                }
                acks.write_all(&[j as u8])
                    .map_err(|x| format!("acks file: {x}"))?;
                w.hb.words[3] += 1;
            }
            _ => {
                if let Some(v) = c.get(&k).map_err(|x| e("get", &k, x))? {
                    w.verify(&k, &v, "get")?;
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn reader(w: &mut WorkerCtx) -> Result<(), String> {
    let c = w.cache.clone();
    let mut last_ctr = [0u64; NCTR as usize];
    let mut buf = Vec::with_capacity(MAX_VALUE);
    let e = |op: &str, k: &[u8], err: larder::Error| {
        format!("{op} {:?}: {err}", String::from_utf8_lossy(k))
    };
    while !w.tick()? {
        let r = w.rng.gen_range(0..1000);
        match r {
            0..=599 => {
                let k = data_key(w.rng.gen_range(0..w.ndata));
                buf.clear();
                if c.get_into(&k, &mut buf).map_err(|x| e("get_into", &k, x))? {
                    let v = std::mem::take(&mut buf);
                    w.verify(&k, &v, "get_into")?;
                    buf = v;
                }
            }
            600..=749 => {
                let k = data_key(w.rng.gen_range(0..w.ndata));
                if let Some((v, _)) = c.gets(&k).map_err(|x| e("gets", &k, x))? {
                    w.verify(&k, &v, "gets")?;
                }
            }
            750..=899 if w.counters => {
                // Counters only grow: a read going backwards is a lost increment.
                let j = w.rng.gen_range(0..NCTR);
                let k = ctr_key(j);
                match c.get(&k).map_err(|x| e("get", &k, x))? {
                    Some(v) => {
                        w.verify(&k, &v, "get")?;
                        let n = parse_counter(&v)?;
                        if n < last_ctr[j as usize] {
                            return Err(format!(
                                "LOST INCREMENT: c{j} read {} then {n}",
                                last_ctr[j as usize]
                            ));
                        }
                        last_ctr[j as usize] = n;
                    }
                    None => return Err(format!("LOST COUNTER: c{j} vanished")),
                }
            }
            900..=998 if w.counters => {
                let i = w.rng.gen_range(0..NPERSIST);
                let k = persist_key(i);
                if let Some(v) = c.get(&k).map_err(|x| e("get", &k, x))? {
                    w.verify(&k, &v, "get")?;
                }
            }
            999 => {
                // Every key the index yields is one of ours, and its value checks out.
                for k in c.keys() {
                    if let Some(v) = c.get(&k).map_err(|x| e("get", &k, x))? {
                        w.verify(&k, &v, "keys+get")?;
                    } else if !known_key(&k) {
                        return Err(format!(
                            "CORRUPT: foreign key {:?} from keys()",
                            String::from_utf8_lossy(&k)
                        ));
                    }
                }
            }
            _ => {
                let k = data_key(w.rng.gen_range(0..w.ndata));
                if let Some(v) = c.get(&k).map_err(|x| e("get", &k, x))? {
                    w.verify(&k, &v, "get")?;
                }
            }
        }
    }
    Ok(())
}

/// A hostile file at `arena`: opening it must fail cleanly or give a working handle.
pub(crate) fn open_hostile(arena: &Path) -> Result<(), String> {
    match Cache::open(arena) {
        Err(e) => println!("RESULT refused: {e}"),
        Ok(c) => {
            // It was accepted: it must then work like an arena.
            let _ = c.get(b"k");
            let _ = c.set(b"k", b"v", None);
            let _ = c.keys().count();
            let _ = c.stats();
            let _ = c.reclaim_dead_clients();
            println!("RESULT accepted");
        }
    }
    Ok(())
}
