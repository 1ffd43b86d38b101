//! Dyno sizes, named as Heroku's, with the limits Slipway enforces for each.

/// One dyno size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynoSize {
    pub name: &'static str,
    /// Heroku's memory quota: above it the dyno logs R14.
    pub memory_quota_mb: u64,
    /// Most processes and threads the dyno may have.
    pub pids: u64,
    /// Relative CPU share (cgroup v1 `cpu.shares`; 1024 is one share).
    pub cpu_shares: u64,
}

impl DynoSize {
    /// The hard limit: Heroku kills the dyno (R15) at twice its quota.
    pub fn memory_limit_bytes(&self) -> u64 {
        self.memory_quota_mb * 2 * 1024 * 1024
    }

    pub fn memory_quota_bytes(&self) -> u64 {
        self.memory_quota_mb * 1024 * 1024
    }
}

/// Every size, smallest first.
pub const DYNO_SIZES: &[DynoSize] = &[
    DynoSize {
        name: "eco",
        memory_quota_mb: 512,
        pids: 256,
        cpu_shares: 1024,
    },
    DynoSize {
        name: "basic",
        memory_quota_mb: 512,
        pids: 256,
        cpu_shares: 1024,
    },
    DynoSize {
        name: "standard-1x",
        memory_quota_mb: 512,
        pids: 256,
        cpu_shares: 1024,
    },
    DynoSize {
        name: "standard-2x",
        memory_quota_mb: 1024,
        pids: 512,
        cpu_shares: 2048,
    },
    DynoSize {
        name: "performance-m",
        memory_quota_mb: 2560,
        pids: 16384,
        cpu_shares: 12288,
    },
    DynoSize {
        name: "performance-l",
        memory_quota_mb: 14336,
        pids: 32768,
        cpu_shares: 51200,
    },
];

/// Looks a size up by name, case-insensitively (`Standard-2X` works).
/// A size's id: a UUID made from its name, the same on every server.
pub fn size_id(name: &str) -> String {
    // FNV-1a, twice with different seeds, for 128 bits.
    let hash = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

pub fn dyno_size(name: &str) -> Option<&'static DynoSize> {
    DYNO_SIZES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_have_herokus_quotas() {
        assert_eq!(dyno_size("Standard-2X").unwrap().memory_quota_mb, 1024);
        assert_eq!(
            dyno_size("basic").unwrap().memory_limit_bytes(),
            1024 * 1024 * 1024
        );
        assert!(dyno_size("huge").is_none());
    }
}
