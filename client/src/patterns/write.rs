//! Write policies against a backing [`Store`]: write-through and write-behind.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cache::Cache;
use crate::Error;

/// The backing store behind write-through and write-behind.
pub trait Store {
    type Error: std::fmt::Debug + Send + 'static;
    fn write(&self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    fn remove(&self, key: &[u8]) -> Result<(), Self::Error>;
}

/// A shared store is a store (so the application can keep a handle to it).
impl<S: Store + ?Sized> Store for Arc<S> {
    type Error = S::Error;
    fn write(&self, key: &[u8], value: &[u8]) -> Result<(), Self::Error> {
        (**self).write(key, value)
    }
    fn remove(&self, key: &[u8]) -> Result<(), Self::Error> {
        (**self).remove(key)
    }
}

/// A failure of a write-through or write-behind write.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The store refused the write; the cache was not changed.
    Store(E),
    Cache(Error),
}

/// Write-through: the store first, then the cache entry is invalidated (never set), so two
/// interleaved writers cannot leave the older value cached, and a store failure leaves the
/// cache unchanged. Reads go through [`Cache::get_or_load`].
pub struct WriteThrough<S: Store> {
    cache: Cache,
    store: S,
}

impl<S: Store> WriteThrough<S> {
    pub fn new(cache: Cache, store: S) -> Self {
        WriteThrough { cache, store }
    }
    pub fn write(&self, key: &[u8], value: &[u8]) -> Result<(), WriteError<S::Error>> {
        self.store.write(key, value).map_err(WriteError::Store)?;
        self.cache.invalidate(key).map_err(WriteError::Cache)?;
        Ok(())
    }
    pub fn remove(&self, key: &[u8]) -> Result<(), WriteError<S::Error>> {
        self.store.remove(key).map_err(WriteError::Store)?;
        self.cache.invalidate(key).map_err(WriteError::Cache)?;
        Ok(())
    }
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
    pub fn store(&self) -> &S {
        &self.store
    }
}

enum Job {
    Write(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// A store write that failed: the key and the store's error.
pub type Failed<E> = (Vec<u8>, E);

struct Pending<E> {
    queued: usize,
    failed: Vec<Failed<E>>,
}

/// Write-behind: the cache is updated at once and the store later, by a background thread
/// fed through a bounded queue (a full queue makes writers wait). [`WriteBehind::flush`]
/// waits for the queue and returns every store error since the last flush; dropping flushes
/// and reports remaining errors on stderr — an error is never silently dropped.
pub struct WriteBehind<S: Store + Send + 'static> {
    cache: Cache,
    tx: Option<SyncSender<Job>>,
    state: Arc<(Mutex<Pending<S::Error>>, Condvar)>,
    worker: Option<JoinHandle<()>>,
}

impl<S: Store + Send + 'static> WriteBehind<S> {
    /// Starts the background writer with a queue of `capacity` writes.
    pub fn new(cache: Cache, store: S, capacity: usize) -> Self {
        let (tx, rx) = sync_channel::<Job>(capacity.max(1));
        let state = Arc::new((
            Mutex::new(Pending {
                queued: 0,
                failed: Vec::new(),
            }),
            Condvar::new(),
        ));
        let st = state.clone();
        let worker = std::thread::Builder::new()
            .name("larder-write-behind".into())
            .spawn(move || {
                for job in rx {
                    let (key, r) = match job {
                        Job::Write(k, v) => {
                            let r = store.write(&k, &v);
                            (k, r)
                        }
                        Job::Remove(k) => {
                            let r = store.remove(&k);
                            (k, r)
                        }
                    };
                    let (m, cv) = &*st;
                    let mut p = m.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = r {
                        p.failed.push((key, e));
                    }
                    p.queued -= 1;
                    cv.notify_all();
                }
            })
            .expect("spawning the write-behind thread");
        WriteBehind {
            cache,
            tx: Some(tx),
            state,
            worker: Some(worker),
        }
    }

    fn enqueue(&self, job: Job) {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queued += 1;
        let sent = self.tx.as_ref().map(|tx| tx.send(job));
        assert!(
            matches!(sent, Some(Ok(()))),
            "the write-behind thread is gone"
        );
    }

    /// Stores in the cache now (with `ttl`) and queues the store write.
    pub fn write(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        self.cache.set(key, value, ttl)?;
        self.enqueue(Job::Write(key.to_vec(), value.to_vec()));
        Ok(())
    }

    /// Deletes from the cache now and queues the store removal.
    pub fn remove(&self, key: &[u8]) -> Result<(), Error> {
        self.cache.delete(key)?;
        self.enqueue(Job::Remove(key.to_vec()));
        Ok(())
    }

    /// Waits until every queued write reached the store; returns the ones that failed.
    pub fn flush(&self) -> Result<(), Vec<Failed<S::Error>>> {
        let (m, cv) = &*self.state;
        let mut p = m.lock().unwrap_or_else(|e| e.into_inner());
        while p.queued > 0 {
            p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        let failed = std::mem::take(&mut p.failed);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }
}

impl<S: Store + Send + 'static> Drop for WriteBehind<S> {
    fn drop(&mut self) {
        if let Err(failed) = self.flush() {
            for (key, e) in failed {
                eprintln!(
                    "larder write-behind: store write of key {:?} failed: {e:?}",
                    String::from_utf8_lossy(&key)
                );
            }
        }
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
