//! One walk of a directory tree for "nothing else changed" assertions.
//!
//! The suites compare snapshots in different shapes (relative or absolute
//! paths, contents or hashes, lock files left out), so [`walk`] returns plain
//! entries and each suite maps them to what it compares. Symlinks are
//! reported as links, never followed, so a planted link cannot make the walk
//! leave the tree.

use std::fs;
use std::path::{Path, PathBuf};

/// What a path in the tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// A symbolic link and its target (not followed).
    Symlink(PathBuf),
    /// A device, fifo or socket.
    Other(fs::FileType),
}

/// One path found by [`walk`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// The full path (the walk's root joined with `rel`).
    pub path: PathBuf,
    /// The path relative to the walk's root.
    pub rel: PathBuf,
    pub kind: Kind,
}

impl Entry {
    /// The file's bytes; panics if it cannot be read.
    pub fn read(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap_or_else(|e| panic!("cannot read {}: {e}", self.path.display()))
    }
}

/// Every path under `root` (not `root` itself), parents before their
/// children. A path for which `skip` returns true is left out, and so is
/// everything below it. Panics on I/O errors: a test fixture must be readable.
pub fn walk(root: &Path, skip: impl Fn(&Path) -> bool) -> Vec<Entry> {
    let mut out = Vec::new();
    walk_dir(root, root, &skip, &mut out);
    out
}

fn walk_dir(root: &Path, dir: &Path, skip: &dyn Fn(&Path) -> bool, out: &mut Vec<Entry>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for e in entries {
        let path = e
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        if skip(&path) {
            continue;
        }
        let m = fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
        let kind = if m.is_symlink() {
            Kind::Symlink(fs::read_link(&path).unwrap())
        } else if m.is_dir() {
            Kind::Dir
        } else if m.is_file() {
            Kind::File
        } else {
            Kind::Other(m.file_type())
        };
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let is_dir = kind == Kind::Dir;
        out.push(Entry {
            path: path.clone(),
            rel,
            kind,
        });
        if is_dir {
            walk_dir(root, &path, skip, out);
        }
    }
}

/// A `skip` for [`walk`]: sparsebak's own lock files (`lock` in the meta dir,
/// `.lock` in the archive), which a run may create and which hold nothing.
pub fn is_lock_file(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "lock" || n == ".lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_files_dirs_and_links_without_following_and_skips() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f"), b"x").unwrap();
        fs::write(r.join("lock"), b"").unwrap();
        std::os::unix::fs::symlink("/", r.join("d/up")).unwrap();
        let mut got: Vec<(String, Kind)> = walk(r, is_lock_file)
            .into_iter()
            .map(|e| (e.rel.display().to_string(), e.kind))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("d".into(), Kind::Dir),
                ("d/f".into(), Kind::File),
                ("d/up".into(), Kind::Symlink("/".into())),
            ]
        );
    }
}
