//! Whether a watched folder lives on a network share, where the operating system's change
//! notifications do not see what other machines write (inotify on Linux reports only changes
//! made through this machine's own mount; SMB change notifications are not passed on by the
//! Linux CIFS client), so the folder must be polled.
//!
//! Linux: the file system's magic number from `statfs(2)` (`f_type`): NFS, SMB/CIFS (all three
//! magics), AFS, Coda, Ceph, Lustre, GlusterFS and every FUSE mount (sshfs, rclone, gvfs).
//! Windows: a UNC path (`\\server\share\…`); a mapped drive letter cannot be told apart from a
//! local disk without the Win32 API, so such an entry needs `poll = true`. Elsewhere nothing is
//! detected.

use std::path::Path;

/// The network file system `path` is on, by name, if it is on one.
pub fn network_filesystem(path: &Path) -> Option<&'static str> {
    if is_unc(path) {
        return Some("SMB (UNC path)");
    }
    magic(path).and_then(network_magic)
}

/// The name of the network file system with this `statfs` magic number, if it is one.
pub fn network_magic(f_type: u64) -> Option<&'static str> {
    Some(match f_type {
        0x6969 => "NFS",
        0x517B => "SMB",
        0xFF53_4D42 => "CIFS",
        0xFE53_4D42 => "SMB2",
        0x5346_414F => "AFS",
        0x7375_7245 => "Coda",
        0x00C3_6400 => "Ceph",
        0x0BD0_0BD0 => "Lustre",
        0x0102_1997 => "9P",
        0x6573_5546 => "FUSE",
        _ => return None,
    })
}

#[cfg(target_os = "linux")]
fn magic(path: &Path) -> Option<u64> {
    // `f_type` is signed and 64 bits wide on some targets, 32 on others; the magic numbers are
    // 32-bit patterns.
    #[allow(
        clippy::useless_conversion,
        reason = "the type of f_type differs between targets"
    )]
    rustix::fs::statfs(path)
        .ok()
        .map(|s| (i64::from(s.f_type) as u64) & 0xFFFF_FFFF)
}

#[cfg(not(target_os = "linux"))]
fn magic(_: &Path) -> Option<u64> {
    None
}

/// `\\server\share\…` (or its verbatim form `\\?\UNC\server\share\…`) on Windows.
fn is_unc(path: &Path) -> bool {
    use std::path::{Component, Prefix};
    matches!(
        path.components().next(),
        Some(Component::Prefix(p)) if matches!(p.kind(), Prefix::UNC(..) | Prefix::VerbatimUNC(..))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_magics_are_named_and_local_ones_are_not() {
        assert_eq!(network_magic(0x6969), Some("NFS"));
        assert_eq!(network_magic(0xFF53_4D42), Some("CIFS"));
        assert_eq!(network_magic(0xFE53_4D42), Some("SMB2"));
        assert_eq!(network_magic(0xEF53), None, "ext4");
        assert_eq!(network_magic(0x0102_1994), None, "tmpfs");
        let dir = tempfile::tempdir().expect("tempdir");
        // The test's temp folder is on a local disk (or a tmpfs) on CI machines.
        assert_eq!(network_filesystem(dir.path()), None);
    }
}
