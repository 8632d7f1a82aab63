//! Where an arena's pages live. An arena on tmpfs (`/dev/shm`, `/run`) is memory and can be
//! backed by huge pages; one on a disk file system (ext4 `/tmp`, a home directory) is a
//! file whose dirty pages the kernel writes back to the disk — I/O and latency under
//! writes, wear on flash — and it gets no huge pages. Nothing else tells a user so.

use std::path::Path;

use nix::sys::statfs::{
    statfs, FsType, BTRFS_SUPER_MAGIC, FUSE_SUPER_MAGIC, HUGETLBFS_MAGIC, NFS_SUPER_MAGIC,
    OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
};

/// The file system an arena file is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// In memory (tmpfs, ramfs, hugetlbfs): the name of the file system.
    Memory(&'static str),
    /// Anything else: the name (or magic number) of the file system.
    Disk(String),
}

/// A file system's magic number (its C type differs between targets).
fn code(t: FsType) -> i64 {
    #[allow(clippy::unnecessary_cast)]
    let v = t.0 as i64;
    v
}

// Not among nix's constants.
const EXT_SUPER_MAGIC: i64 = 0xEF53;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

impl Backing {
    /// The file system `path` (a file or the directory it is to be created in) is on.
    pub fn of(path: &Path) -> std::io::Result<Backing> {
        let magic = code(
            statfs(path)
                .map_err(std::io::Error::from)?
                .filesystem_type(),
        );
        let memory = [
            (code(TMPFS_MAGIC), "tmpfs"),
            (code(HUGETLBFS_MAGIC), "hugetlbfs"),
            (RAMFS_MAGIC, "ramfs"),
        ];
        let disk = [
            (EXT_SUPER_MAGIC, "ext4"),
            (code(BTRFS_SUPER_MAGIC), "btrfs"),
            (code(XFS_SUPER_MAGIC), "xfs"),
            (code(OVERLAYFS_SUPER_MAGIC), "overlayfs"),
            (code(NFS_SUPER_MAGIC), "nfs"),
            (code(FUSE_SUPER_MAGIC), "fuse"),
        ];
        let named = |table: &[(i64, &'static str)]| {
            table.iter().find(|(m, _)| *m == magic).map(|(_, n)| *n)
        };
        Ok(match (named(&memory), named(&disk)) {
            (Some(n), _) => Backing::Memory(n),
            (None, Some(n)) => Backing::Disk(n.to_string()),
            (None, None) => Backing::Disk(format!("file system type {magic:#x}")),
        })
    }

    /// The file system's name.
    pub fn name(&self) -> &str {
        match self {
            Backing::Memory(n) => n,
            Backing::Disk(n) => n,
        }
    }

    /// What a user should be told about an arena on this file system: nothing for memory.
    pub fn warning(&self, path: &Path) -> Option<String> {
        match self {
            Backing::Memory(_) => None,
            Backing::Disk(name) => Some(format!(
                "the arena {} is on a disk file system ({name}), not in memory: the kernel writes its changed pages back to the disk (I/O and latency under writes, wear on flash) and it gets no huge pages; put it on tmpfs, e.g. /dev/shm/larder/arena or /run/larder/arena (the systemd unit's RuntimeDirectory)",
                path.display()
            )),
        }
    }
}
