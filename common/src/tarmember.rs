//! The one tar member header every sparsebak tar uses: dom0's upload
//! stream, its dedup link records, and the agent's `chunks.tar` parts
//! (docs/FORMAT.md). Fixed metadata (mode 0644, uid/gid 0, mtime 0) so the
//! same chunk always yields the same bytes.

use std::io;

/// A ustar header for member `name` of `len` bytes and type `kind`
/// (`Regular` for a chunk file, `Link` for a dedup link record). Errors if
/// `name` does not fit ustar (layout names always do).
pub fn member_header(name: &str, len: u64, kind: tar::EntryType) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(kind);
    h.set_cksum();
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_fields() {
        let h = member_header(
            "S_20260101-000000/000000001/x0000000000010000",
            7,
            tar::EntryType::Regular,
        )
        .unwrap();
        assert_eq!(h.size().unwrap(), 7);
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
            (0, 0, 0)
        );
        assert_eq!(h.entry_type(), tar::EntryType::Regular);
        assert_eq!(
            h.path().unwrap().to_str(),
            Some("S_20260101-000000/000000001/x0000000000010000")
        );
        let l = member_header("a", 0, tar::EntryType::Link).unwrap();
        assert_eq!(l.entry_type(), tar::EntryType::Link);
        assert!(member_header(&"x/".repeat(200), 0, tar::EntryType::Regular).is_err());
    }
}
