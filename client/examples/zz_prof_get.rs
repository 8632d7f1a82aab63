fn main() {
    let path = format!("/dev/shm/prof-{}", std::process::id());
    let _ = std::fs::remove_file(&path);
    let c = larder::Cache::create(&path, &larder::Config::new(64 << 20)).unwrap();
    let keys: Vec<String> = (0..100_000).map(|i| format!("key:{i:08}")).collect();
    let miss: Vec<String> = (0..100_000).map(|i| format!("nok:{i:08}")).collect();
    let v = vec![7u8; 100];
    for k in &keys {
        c.set(k.as_bytes(), &v, None).unwrap();
    }
    let which = if std::env::var_os("MISS").is_some() {
        &miss
    } else {
        &keys
    };
    let mut buf = Vec::with_capacity(4096);
    let mut x = 12345u64;
    let mut hits = 0;
    let n: usize = std::env::args()
        .nth(1)
        .map_or(200_000, |s| s.parse().unwrap());
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.clear();
        hits += c
            .get_into(which[(x % 100_000) as usize].as_bytes(), &mut buf)
            .unwrap() as u64;
    }
    println!("{hits}");
    let _ = std::fs::remove_file(&path);
}
