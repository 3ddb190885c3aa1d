//! sparsebak's mountpoint check: the archive must live on the file system the
//! user named, so a backup never fills the root file system of a VM whose USB
//! disk failed to mount.

use crate::error::{AgentError, IoContext, Result};
use sparsebak_common::proto::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An absolute path with no `.`/`..` components and no empty components.
pub fn clean_abs_path(p: &str, what: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(AgentError::invalid(format!(
            "{what} {p:?} is not an absolute path"
        )));
    }
    if p.contains('\0') || p.split('/').any(|c| c == "." || c == "..") {
        return Err(AgentError::invalid(format!(
            "{what} {p:?} must not contain '.' or '..' components"
        )));
    }
    Ok(path.components().collect())
}

/// Is `p` a mount point? Uses /proc/self/mountinfo where available (it sees
/// bind mounts), else compares device numbers with the parent directory.
fn is_mount_point(p: &Path) -> Result<bool> {
    if p == Path::new("/") {
        return Ok(true);
    }
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let want = p.to_string_lossy();
        return Ok(info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|m| unescape_mountinfo(m) == want));
    }
    let me = std::fs::metadata(p).ctx(format_args!("cannot stat mountpoint {}", p.display()))?;
    let parent = std::fs::metadata(p.join(".."))
        .ctx(format_args!("cannot stat parent of {}", p.display()))?;
    Ok(me.dev() != parent.dev() || me.ino() == parent.ino())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Check that `mountpoint` is mounted and that `dest` lies inside it on the
/// same file system (no symlink or nested mount leads elsewhere). `dest` may
/// not exist yet; then its nearest existing ancestor is checked.
pub fn check_dest(dest: &Path, mountpoint: &Path) -> Result<()> {
    let meta = std::fs::metadata(mountpoint).map_err(|e| {
        AgentError::new(
            ErrorKind::NotMounted,
            format!("mountpoint {} is not available: {e}", mountpoint.display()),
        )
    })?;
    if !meta.is_dir() || !is_mount_point(mountpoint)? {
        return Err(AgentError::new(
            ErrorKind::NotMounted,
            format!(
                "{} is not a mounted file system: mount the backup disk there, or fix --dest",
                mountpoint.display()
            ),
        ));
    }
    if !dest.starts_with(mountpoint) {
        return Err(AgentError::invalid(format!(
            "archive path {} is not under mountpoint {}",
            dest.display(),
            mountpoint.display()
        )));
    }
    let mut existing = dest.to_path_buf();
    while !existing.exists() {
        existing.pop();
    }
    let real = existing
        .canonicalize()
        .ctx(format_args!("cannot resolve {}", existing.display()))?;
    let real_mp = mountpoint
        .canonicalize()
        .ctx(format_args!("cannot resolve {}", mountpoint.display()))?;
    let dev = std::fs::metadata(&real)
        .ctx(format_args!("cannot stat {}", real.display()))?
        .dev();
    if !real.starts_with(&real_mp) || dev != meta.dev() {
        return Err(AgentError::new(
            ErrorKind::NotMounted,
            format!(
                "archive path {} resolves to {}, which is not on the file system mounted at {}",
                dest.display(),
                real.display(),
                mountpoint.display()
            ),
        ));
    }
    Ok(())
}

/// Free and total bytes of the file system holding `p`.
pub fn space(p: &Path) -> Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(p)
        .map_err(|e| AgentError::io(format_args!("cannot statvfs {}", p.display()), e.into()))?;
    let frag = st.fragment_size() as u64;
    Ok((
        st.blocks_available() as u64 * frag,
        st.blocks() as u64 * frag,
    ))
}

/// Check the paths of an `Open` or `OpenLegacy` request: both absolute and
/// clean, the archive path and its `sparsebak` dir (which may itself be a
/// symlink off the mount) on the named mountpoint. The archive path, and the
/// mountpoint's free and total bytes.
pub fn check_open(dest_path: &str, mountpoint: &str) -> Result<(PathBuf, u64, u64)> {
    let dest = clean_abs_path(dest_path, "archive path")?;
    let mp = clean_abs_path(mountpoint, "mountpoint")?;
    check_dest(&dest, &mp)?;
    check_dest(&dest.join(sparsebak_common::ARCHIVE_DIR), &mp)?;
    let (free, total) = space(&mp)?;
    Ok((dest, free, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_relative_and_dotdot() {
        assert!(clean_abs_path("rel/x", "p").is_err());
        assert!(clean_abs_path("/a/../b", "p").is_err());
        assert_eq!(
            clean_abs_path("/a//b/", "p").unwrap(),
            PathBuf::from("/a/b")
        );
    }

    #[test]
    fn plain_directory_is_not_a_mount_point() {
        let d = tempfile::tempdir().unwrap();
        let e = check_dest(&d.path().join("x"), d.path()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotMounted, "{e}");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/x"), "/x");
    }
}
