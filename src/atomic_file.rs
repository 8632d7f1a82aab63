//! Files replaced whole: written under a temporary name in the target's directory, then
//! renamed over it. One durability rule for every such file larderd and cachectl write
//! (snapshots, the metrics textfile, dumps): the data is fsynced before the rename and the
//! directory after it, so after a crash at any point the target is the old file or the new
//! one, whole — never empty or torn (a rename without the first fsync can leave a
//! zero-length file after a power loss on ext4).

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `<dir>/.<name>.tmp`: the temporary name a file is written under before it replaces
/// `target`. It starts with a dot (collectors of `*.prom`, and `ls`, skip it).
pub fn tmp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    target.with_file_name(format!(".{name}.tmp"))
}

/// Renames `tmp` (already fsynced) over `target` and fsyncs the directory.
pub fn rename_durably(tmp: &Path, target: &Path) -> io::Result<()> {
    std::fs::rename(tmp, target)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// A file being written under [`tmp_path`], renamed over its target by
/// [`AtomicFile::commit`]; removed if dropped uncommitted. A target that exists and is not a
/// regular file (/dev/stdout, a FIFO) is written in place.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    in_place: bool,
    file: File,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file, with `mode` (before the umask) if it is new.
    pub fn create(target: &Path, mode: u32) -> io::Result<AtomicFile> {
        let in_place = std::fs::metadata(target).is_ok_and(|m| !m.file_type().is_file());
        let tmp = if in_place {
            target.to_owned()
        } else {
            tmp_path(target)
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        Ok(AtomicFile {
            target: target.to_owned(),
            tmp,
            in_place,
            file,
            committed: false,
        })
    }

    /// Where the data goes until the commit.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// fsync, rename over the target, fsync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        if !self.in_place {
            rename_durably(&self.tmp, &self.target)?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed && !self.in_place {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
