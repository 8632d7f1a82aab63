//! Keys owned by one process each, kept hot while fillers churn a small log: a lookup
//! must never miss a present key while evictors copy it forward (the bug of b3bcf57).

use super::*;

/// Keys each `owner` worker owns, besides its counter.
pub(crate) const OWNED: u64 = 8;
/// Longest value an owner writes: the owners' items together stay a sliver of the log.
pub(crate) const OWNED_VALUE: usize = 160;
/// A get reports a miss after this many torn lookups in a row (`READ_RETRIES` in
/// client/src/protocol/index.rs), each counted in `torn_retries`.
pub(crate) const TORN_GIVE_UP: u64 = 8;

pub(crate) fn owned_key(owner: u64, i: u64) -> Vec<u8> {
    format!("own-{owner}-{i}").into_bytes()
}

pub(crate) fn owned_counter(owner: u64) -> Vec<u8> {
    format!("own-{owner}-ctr").into_bytes()
}

/// An `owner` worker: the only process that ever writes the keys `owned_key(me, 0..OWNED)`
/// and `owned_counter(me)`, so it knows at every moment what each must hold. It reads its
/// keys over and over (keeping their reference bits set, so that evictions copy them
/// forward instead of dropping them); every 64 rounds it increments its counter, overwrites
/// a key, or deletes a key and sets it again, in turn. When `stop` appears in the directory
/// `LARDER_TEST_SIGNALS` names, it stops writing, says so with a file `quiet-<me>`, and goes
/// on reading until `exit` appears; then it reads everything once more and prints the final
/// state: the version of each key (0: confirmed absent) and the counter (`ctr_gone=1`:
/// confirmed absent).
///
/// What it checks, and why no check can fire on a correct cache:
/// - A hit must carry exactly the version last written. Nobody else writes the key, and
///   an older copy is never made reachable again (an update or a copy-forward CASes the
///   key's one slot; a copy whose CAS fails is dead space), so any other value is a bug.
/// - A miss of a `get`, a `delete` that returns false or an `incr` that returns None is
///   *confirmed* with `ttl`, whose lookup, unlike a get's, never gives up on torn reads.
///   If `ttl` finds the key, it was present all along (nothing but this process could
///   have put it back): a present key was read as absent, the bug of commit b3bcf57. If
///   not, the key is really gone. That can happen legitimately under this pressure (an
///   eviction that finds the bit clear because this process was descheduled for a whole
///   turn of the log; a walk without a copy-forward destination; an index eviction, made
///   unlikely by the index sizing): it is only counted (`dropped`), and the key is written
///   again (or, once quiet, recorded as absent). The one other way a present key reads as
///   absent is a `get` that gave up after `TORN_GIVE_UP` torn lookups in a row: such a
///   miss is excused (`excused`) when this process's `torn_retries` rose by that much since
///   it was last read. (`delete` and `incr` never give up on a torn lookup.)
/// - After a `delete` that returned true, `ttl` finding the key is a bug: it was in a
///   second slot.
/// - `incr` must return the previous value + 1.
///
/// `moves` counts the times the cas token of a key changed although this process had not
/// written it: a copy-forward that the process observed. The harness requires some, so the
/// run demonstrably exercised the window.
pub(crate) struct Owner<'a> {
    pub(crate) cache: &'a Cache,
    pub(crate) me: u64,
    pub(crate) keys: Vec<Vec<u8>>,
    /// The version last written of each key; 0 once confirmed absent while quiet.
    pub(crate) version: Vec<u64>,
    /// The cas token last read of each key (`None` after our own write).
    pub(crate) token: Vec<Option<u64>>,
    pub(crate) counter: Vec<u8>,
    /// The counter's value as last acknowledged.
    pub(crate) count: u64,
    pub(crate) pad_key: Vec<u8>,
    pub(crate) pad: Vec<u8>,
    /// Cleared at `stop`: from then on nothing is written.
    pub(crate) writing: bool,
    /// Our `torn_retries` when last read.
    pub(crate) torn_mark: u64,
    pub(crate) gets: u64,
    pub(crate) moves: u64,
    pub(crate) deletes: u64,
    pub(crate) dropped: u64,
    pub(crate) excused: u64,
}

impl<'a> Owner<'a> {
    pub(crate) fn new(cache: &'a Cache, me: u64) -> Owner<'a> {
        Owner {
            cache,
            me,
            keys: (0..OWNED).map(|i| owned_key(me, i)).collect(),
            version: vec![0; OWNED as usize],
            token: vec![None; OWNED as usize],
            counter: owned_counter(me),
            count: 0,
            pad_key: format!("own-{me}-pad").into_bytes(),
            pad: vec![0x5a; cache.limits().1 as usize],
            writing: true,
            torn_mark: 0,
            gets: 0,
            moves: 0,
            deletes: 0,
            dropped: 0,
            excused: 0,
        }
    }

    pub(crate) fn name(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.keys[i]).into_owned()
    }

    /// This process's `torn_retries` (stats walks the index: called rarely).
    pub(crate) fn torn(&self) -> u64 {
        let me = std::process::id();
        self.cache
            .stats()
            .processes
            .iter()
            .find(|p| p.pid == me)
            .map_or(0, |p| p.counters.torn_retries)
    }

    /// Whether `key` is present, by a lookup that never gives up on torn reads.
    pub(crate) fn present(&self, key: &[u8]) -> Result<bool, String> {
        self.cache
            .ttl(key)
            .map(|t| t.is_some())
            .map_err(|e| format!("ttl {:?}: {e}", String::from_utf8_lossy(key)))
    }

    /// Writes a new version of key `i`.
    pub(crate) fn write(&mut self, i: usize) -> Result<(), String> {
        if !self.writing {
            return Err("a write after stop".into());
        }
        self.version[i] += 1;
        let v = make_value(&self.keys[i], self.version[i], OWNED_VALUE);
        self.cache
            .set(&self.keys[i], &v, None)
            .map_err(|e| format!("set {}: {e}", self.name(i)))?;
        self.token[i] = None;
        self.seal()
    }

    pub(crate) fn set_counter(&mut self) -> Result<(), String> {
        if !self.writing {
            return Err("a write after stop".into());
        }
        self.cache
            .set(&self.counter, self.count.to_string().as_bytes(), None)
            .map_err(|e| format!("set counter: {e}"))?;
        self.seal()
    }

    /// Pushes what this process just wrote into the log. Its writes go to its lane's OPEN
    /// segment, which is never evicted; as little as the owners write, it would keep their
    /// keys out of reach of every eviction for most of the run. So every write is followed
    /// by a pad item of the largest value the arena takes, which the harness's config
    /// makes more than half a segment: the lane's segment then always holds a pad, so the
    /// next pad does not fit behind the write and the segment holding it is sealed into
    /// the log at once (or, for a write that began a segment, at the next write). One pad
    /// key per owner, overwritten each time: dead space by the next write.
    pub(crate) fn seal(&mut self) -> Result<(), String> {
        self.cache
            .set(&self.pad_key, &self.pad, None)
            .map_err(|e| format!("set pad: {e}"))
    }

    /// Reads key `i`: a hit must be the version last written, and none is expected of a
    /// key confirmed absent.
    pub(crate) fn read(&mut self, i: usize) -> Result<bool, String> {
        self.gets += 1;
        let Some((v, t)) = self
            .cache
            .gets(&self.keys[i])
            .map_err(|e| format!("get {}: {e}", self.name(i)))?
        else {
            return Ok(false);
        };
        match check_value(&self.keys[i], &v) {
            Ok(s) if s == self.version[i] => {}
            Ok(s) if self.version[i] == 0 => {
                return Err(format!(
                    "KEY CAME BACK: {} read version {s} after ttl had found it absent, and nothing writes it",
                    self.name(i)
                ))
            }
            Ok(s) => {
                return Err(format!(
                    "WRONG VALUE: {} read version {s}, but version {} was written last (a second copy?)",
                    self.name(i),
                    self.version[i]
                ))
            }
            Err(e) => return Err(format!("CORRUPT read of {}: {e}", self.name(i))),
        }
        if self.token[i].is_some_and(|old| old != t.0) {
            self.moves += 1;
        }
        self.token[i] = Some(t.0);
        Ok(true)
    }

    /// After `what` found key `i` absent: asks `ttl`. Present means it was present all
    /// along (a failure, unless `what` was a get that gave up on torn reads); absent means
    /// it was legitimately dropped: it is written again, or once quiet recorded as absent.
    pub(crate) fn confirm_absent(&mut self, i: usize, what: &str, get: bool) -> Result<(), String> {
        if self.present(&self.keys[i])? {
            if get {
                let torn = self.torn();
                let gave_up = torn >= self.torn_mark + TORN_GIVE_UP;
                self.torn_mark = torn;
                if gave_up {
                    self.excused += 1;
                    return Ok(());
                }
            }
            return Err(format!(
                "FALSE MISS: {what} found {} absent, yet ttl finds it (version {}), and only this process writes it",
                self.name(i),
                self.version[i]
            ));
        }
        self.dropped += 1;
        if self.writing {
            self.write(i)
        } else {
            self.version[i] = 0;
            Ok(())
        }
    }

    /// Reads key `i`, which must be present unless confirmed absent.
    pub(crate) fn expect(&mut self, i: usize, what: &str) -> Result<(), String> {
        if self.read(i)? || self.version[i] == 0 {
            return Ok(());
        }
        self.confirm_absent(i, what, true)
    }

    /// Deletes key `i` (which must have been live), checks it is gone, writes it again.
    pub(crate) fn delete_and_reset(&mut self, i: usize) -> Result<(), String> {
        let live = self
            .cache
            .delete(&self.keys[i])
            .map_err(|e| format!("delete {}: {e}", self.name(i)))?;
        if !live {
            // Written again already if it was really gone.
            return self.confirm_absent(i, "delete", false);
        }
        self.deletes += 1;
        if self.present(&self.keys[i])? {
            return Err(format!(
                "DELETED KEY STILL PRESENT: {} after delete returned true: it was in a second slot",
                self.name(i)
            ));
        }
        self.write(i)?;
        self.expect(i, "the get after the re-set")
    }

    pub(crate) fn incr(&mut self) -> Result<(), String> {
        let name = String::from_utf8_lossy(&self.counter).into_owned();
        match self.cache.incr(&self.counter, 1) {
            Ok(Some(v)) if v == self.count + 1 => {
                self.count = v;
                self.seal()
            }
            Ok(Some(v)) => Err(format!(
                "incr {name} returned {v}, after {}: want {}",
                self.count,
                self.count + 1
            )),
            Ok(None) if self.present(&self.counter)? => Err(format!(
                "FALSE MISS: incr found {name} absent, yet ttl finds it, and only this process writes it"
            )),
            Ok(None) => {
                self.dropped += 1;
                self.set_counter()
            }
            Err(e) => Err(format!("incr {name}: {e}")),
        }
    }

    pub(crate) fn run(mut self) -> Result<(), String> {
        let signals =
            PathBuf::from(std::env::var(SIGNALS).map_err(|_| "no signals directory".to_string())?);
        for i in 0..OWNED as usize {
            self.write(i)?;
        }
        self.set_counter()?;
        self.torn_mark = self.torn();
        let mut round = 0u64;
        let (mut next_write, mut next_delete) = (0u64, 0u64);
        loop {
            round += 1;
            for i in 0..OWNED as usize {
                self.expect(i, "get")?;
            }
            if round.is_multiple_of(256) {
                self.torn_mark = self.torn();
            }
            // Writes are rare next to reads: a key must outlive several turns of the log to
            // be copied forward under the reads (each key is overwritten every 1024 rounds,
            // deleted and set again every 2048, the counter incremented every 256).
            if !round.is_multiple_of(64) {
                continue;
            }
            if !self.writing {
                if signals.join("exit").exists() {
                    break;
                }
                continue;
            }
            // Checked before every write: once `stop` exists, nothing more is written.
            if signals.join("stop").exists() {
                self.writing = false;
                File::create(signals.join(format!("quiet-{}", self.me)))
                    .map_err(|e| format!("quiet file: {e}"))?;
                continue;
            }
            match (round / 64) % 4 {
                0 => self.incr()?,
                3 => {
                    self.delete_and_reset((next_delete % OWNED) as usize)?;
                    next_delete += 1;
                }
                _ => {
                    self.write((next_write % OWNED) as usize)?;
                    next_write += 1;
                }
            }
        }
        // Final pass, reads only: every key as recorded.
        for i in 0..OWNED as usize {
            self.expect(i, "the final get")?;
        }
        let ctr_gone = match self.cache.get(&self.counter) {
            Ok(Some(v)) if v == self.count.to_string().as_bytes() => 0,
            Ok(Some(v)) => {
                return Err(format!(
                    "counter reads {:?}, want {}",
                    String::from_utf8_lossy(&v),
                    self.count
                ))
            }
            Ok(None) if self.present(&self.counter)? => {
                return Err("FALSE MISS: the final get missed the counter, yet ttl finds it".into())
            }
            Ok(None) => 1,
            Err(e) => return Err(format!("final get of the counter: {e}")),
        };
        let versions: Vec<String> = (0..OWNED as usize)
            .map(|i| format!("v{i}={}", self.version[i]))
            .collect();
        println!(
            "RESULT owner={} rounds={round} gets={} moves={} deletes={} dropped={} excused={} ctr={} ctr_gone={ctr_gone} {}",
            self.me,
            self.gets,
            self.moves,
            self.deletes,
            self.dropped,
            self.excused,
            self.count,
            versions.join(" ")
        );
        Ok(())
    }
}

/// Sets unique keys with 1-3 KiB values until killed: with nothing ever read again, each
/// eviction drops them and copies only the referenced items (the owners') forward.
pub(crate) fn filler(cache: &Cache, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut value = vec![0u8; 3072];
    rng.fill(&mut value[..]);
    let mut n = 0u64;
    loop {
        n += 1;
        let k = format!("fill-{seed}-{n}").into_bytes();
        let len = rng.gen_range(1024..=3072);
        cache
            .set(&k, &value[..len], None)
            .map_err(|e| format!("set {:?}: {e}", String::from_utf8_lossy(&k)))?;
    }
}

/// The bug of commit b3bcf57 under real processes: a reader loads a slot word `W`, an
/// evictor copies the (referenced) item forward into the *same slot* (`W -> W''`) and frees
/// the old segment, the reader sees the new generation, fails to clear the "stale" slot,
/// and skipped it: a present key read as absent, `delete` returned false, and a `set`
/// whose two lookups both met the window put the key into a second slot.
///
/// A 6 MiB arena of 64 KiB segments (80 of them) turns over constantly: filler processes
/// write unique keys with 1-3 KiB values, never read again, so every eviction walks a
/// segment of unreferenced items; owner processes (see `Owner`) keep a few keys each
/// referenced, so every turn of the log (tens of milliseconds) copies each of them forward
/// into its slot, and read, delete, re-set and increment them meanwhile, confirming every
/// miss they meet. The owners' live data (36 items of at most 200 bytes, and one 36 KiB
/// pad each) is a few percent of the 5 MiB log. The index is planned for 64-byte items
/// while the fillers' average 2 KiB, so it is loaded to about 2 %: a full 16-slot
/// neighbourhood (an index eviction, a legitimate drop) practically never happens, and the
/// owners' checks stay sound if one does (`Owner`), as for any other legitimate drop.
///
/// Afterwards: the fillers are SIGKILLed and reaped; the owners are told to stop writing
/// and each says when it has; only when all have (so that nothing is written, hence
/// nothing evicted, from then on) are they told to take their final reads and exit, and
/// each must exit 0. Then no key is in two slots (`keys()` yields the key of every slot
/// holding a live item, bucket by bucket, so a key in two slots appears twice), and the
/// arena holds exactly what each owner last saw: the same version of every key, the same
/// counter, and absent what it confirmed absent.
///
/// Runs `LARDER_TEST_COPY_FORWARD_MILLIS` (default 4000) of churn.
#[test]
pub(crate) fn copy_forward_never_hides_a_live_key() {
    const OWNERS: u64 = 4;
    const FILLERS: u64 = 2;
    let millis = env_u64(CF_MILLIS, 4000);
    let dir = TempDir::new("mp-cf");
    // Values up to 36 KiB: more than half a segment, so an owner's pad (`Owner::seal`)
    // never shares a segment with another pad.
    let config = larder::Config::new(6 << 20)
        .max_value_len(36 << 10)
        .segment_size(64 << 10)
        .avg_item_size(64)
        .max_processes(64);
    let c = Cache::create(dir.arena(), &config).unwrap();
    let segments = c.stats().segments;
    let signals = dir.0.join("signals");
    std::fs::create_dir(&signals).unwrap();
    let mut w = Workers::new(&dir);
    let base = seed_base();
    let owners: Vec<usize> = (0..OWNERS)
        .map(|o| w.spawn("owner", o, &[(SIGNALS, signals.display().to_string())]))
        .collect();
    let fillers: Vec<usize> = (0..FILLERS)
        .map(|i| w.spawn("filler", base + i, &[]))
        .collect();
    // Every worker keeps running (an owner exits 3 at its first failed check).
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(millis) {
        std::thread::sleep(Duration::from_millis(20));
        for &i in owners.iter().chain(&fillers) {
            w.assert_running(i);
        }
    }
    for &i in &fillers {
        w.kill_and_reap(i);
    }
    c.reclaim_dead_clients().unwrap();
    File::create(signals.join("stop")).unwrap();
    let limit = Instant::now() + Duration::from_secs(20);
    for o in 0..OWNERS {
        while !signals.join(format!("quiet-{o}")).exists() {
            w.assert_running(owners[o as usize]);
            assert!(Instant::now() < limit, "owner {o} never stopped writing");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    File::create(signals.join("exit")).unwrap();
    for &i in &owners {
        let st = w.wait(i, Duration::from_secs(20));
        assert!(
            st.success(),
            "worker {} ended with {st}\n{}",
            w.list[i].name,
            w.list[i].output()
        );
    }

    // No key in two slots.
    let mut seen = std::collections::HashMap::<Vec<u8>, u32>::new();
    for k in c.keys() {
        *seen.entry(k).or_default() += 1;
    }
    let twice: Vec<String> = seen
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(k, n)| format!("{} x{n}", String::from_utf8_lossy(k)))
        .collect();
    assert!(twice.is_empty(), "keys in more than one slot: {twice:?}");

    // The arena holds what each owner last saw.
    let mut summary = Vec::new();
    let mut moves = 0;
    for (o, &i) in owners.iter().enumerate() {
        let o = o as u64;
        let out = w.list[i].stdout();
        assert_eq!(parse_result(&out, "owner"), o);
        moves += parse_result(&out, "moves");
        summary.push(
            ["rounds", "moves", "deletes", "dropped", "excused"]
                .map(|f| format!("{f}={}", parse_result(&out, f)))
                .join(" "),
        );
        for k in 0..OWNED {
            let key = owned_key(o, k);
            let got = c.get(&key).unwrap().map(|v| check_value(&key, &v));
            let want = parse_result(&out, &format!("v{k}"));
            let want = (want > 0).then_some(Ok(want));
            assert_eq!(got, want, "owner {o}'s key {k} (None: absent)");
            assert_eq!(
                seen.contains_key(&key),
                want.is_some(),
                "owner {o}'s key {k} in keys()"
            );
        }
        let ctr = c.get(&owned_counter(o)).unwrap();
        let want = (parse_result(&out, "ctr_gone") == 0)
            .then(|| parse_result(&out, "ctr").to_string().into_bytes());
        assert_eq!(ctr, want, "owner {o}'s counter");
    }

    let st = c.stats();
    eprintln!(
        "copy_forward_never_hides_a_live_key: {segments} segments, {:?}; owners: {summary:?}; totals {:?}",
        start.elapsed(),
        st.totals
    );
    assert_eq!(st.totals.corrupt, 0, "corrupt items met: {st:?}");
    // The owners saw their keys move: copy-forward happened under their reads.
    assert!(
        moves > 0,
        "no owned key was seen copied forward: {summary:?}"
    );
}
