//! Mount points as the agent sees them. `Open` names the destination's
//! mount point and the agent checks it against `/proc/self/mountinfo`, so
//! the tests compute it the same way (not with `stat -c %m`, which can
//! disagree on bind mounts and symlinked paths).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The mount points listed in /proc/self/mountinfo (field 5, with the
/// kernel's `\040` escape for spaces undone).
fn mount_points() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .collect()
}

/// The mount point holding `p`: the longest mount point that is a prefix of
/// `p`'s canonical path.
pub fn mount_point_of(p: &Path) -> PathBuf {
    let real = p
        .canonicalize()
        .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", p.display()));
    mount_points()
        .into_iter()
        .filter(|m| real.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Is `p` itself listed as a mount point? (For tests that need a second
/// file system such as /dev/shm and skip without one.)
pub fn is_mount_point(p: &Path) -> bool {
    let want = p.as_os_str().as_bytes();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|i| {
            i.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|m| m.as_bytes() == want)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_a_mount_point_and_holds_everything() {
        assert!(is_mount_point(Path::new("/")));
        let t = tempfile::tempdir().unwrap();
        let mp = mount_point_of(t.path());
        assert!(t.path().canonicalize().unwrap().starts_with(&mp));
        assert!(is_mount_point(&mp) || mp == Path::new("/"));
    }
}
