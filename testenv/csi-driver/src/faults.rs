//! The faults pvcheck's CSI fault zoo injects (issue 11), chosen with `--fault NAME` or
//! `PVCHECK_TEST_CSI_FAULTS=a,b`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One injectable fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// NodePublishVolume answers OK and creates the target directory but mounts nothing.
    PublishWithoutMount,
    /// NodeUnstageVolume zeroes the last written 64 KiB of the volume's most recently
    /// modified file (for an image volume: its last non-zero 64 KiB).
    LoseTailAtUnstage,
    /// At startup, one bit in the middle of the largest file of every volume is flipped.
    BitflipOnStart,
    /// OK where the spec wants NOT_FOUND (unknown volume ids).
    OkForUnknown,
    /// A second CreateVolume with the same name makes a new volume; a second NodePublish of
    /// the same target fails.
    NotIdempotent,
    /// Every Node call after the first NodePublishVolume never returns.
    Hang,
    /// NodeStageVolume and NodePublishVolume of a volume already staged or published at the
    /// same path mount it again on top and answer OK: no "already mounted?" check, so every
    /// kubelet restart (which calls both again for each running pod) stacks one more mount
    /// (spiffe-csi #331, aws-ebs-csi-driver #1007). Teardown unmounts every layer.
    StackMounts,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::PublishWithoutMount,
        Fault::LoseTailAtUnstage,
        Fault::BitflipOnStart,
        Fault::OkForUnknown,
        Fault::NotIdempotent,
        Fault::Hang,
        Fault::StackMounts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::PublishWithoutMount => "publish-without-mount",
            Fault::LoseTailAtUnstage => "lose-tail-at-unstage",
            Fault::BitflipOnStart => "bitflip-on-start",
            Fault::OkForUnknown => "ok-for-unknown",
            Fault::NotIdempotent => "not-idempotent",
            Fault::Hang => "hang",
            Fault::StackMounts => "stack-mounts",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault name that is not one of [`Fault::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown fault {name:?} (known: {known})")]
pub struct UnknownFault {
    pub name: String,
    pub known: String,
}

impl FromStr for Fault {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s.trim())
            .ok_or_else(|| UnknownFault {
                name: s.to_string(),
                known: Fault::ALL.map(Fault::name).join(", "),
            })
    }
}

/// The set of faults this process injects.
#[derive(Clone, Debug, Default)]
pub struct Faults(BTreeSet<Fault>);

impl Faults {
    /// Flags first, then the comma-separated environment value (empty items ignored).
    pub fn from_sources(flags: &[Fault], env: Option<&str>) -> Result<Self, UnknownFault> {
        let mut set: BTreeSet<Fault> = flags.iter().copied().collect();
        if let Some(env) = env {
            for item in env.split(',').filter(|s| !s.trim().is_empty()) {
                set.insert(item.parse()?);
            }
        }
        Ok(Faults(set))
    }

    pub fn has(&self, fault: Fault) -> bool {
        self.0.contains(&fault)
    }

    pub fn iter(&self) -> impl Iterator<Item = Fault> + '_ {
        self.0.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_flags_merge_and_unknown_names_are_refused() {
        let f = Faults::from_sources(&[Fault::Hang], Some("ok-for-unknown, ,bitflip-on-start"))
            .unwrap();
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            vec![Fault::BitflipOnStart, Fault::OkForUnknown, Fault::Hang]
        );
        let err = Faults::from_sources(&[], Some("flip")).unwrap_err();
        assert!(err.to_string().contains("\"flip\""), "{err}");
    }
}
