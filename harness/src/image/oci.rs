//! An OCI image archive (image-layout in a tar: `oci-layout`, `index.json`, `blobs/sha256/…`)
//! holding one uncompressed layer: one static binary (the agent at `/pvcheck-agent`, or for the
//! runner image pvcheck itself at `/pvcheck`, whose `pvcheck agent …` is the agent built in),
//! `/etc/passwd` and `/etc/group` with the non-root user 65532, nothing else (no shell).
//! Importable with `ctr images import` (which reads `io.containerd.image.name`) and
//! `skopeo copy oci-archive:FILE …`. Deterministic: the same binary gives the same digests.

use super::tar::TarWriter;

/// Which image: the agent's, or the runner's (pvcheck itself, for the nightly CronJob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Agent,
    Runner,
}

impl Kind {
    /// The binary's path in the image (its entrypoint) and the image's title.
    pub fn binary(self) -> &'static str {
        match self {
            Kind::Agent => "pvcheck-agent",
            Kind::Runner => "pvcheck",
        }
    }
}

/// What the image is built from.
pub struct ImageSpec<'a> {
    pub kind: Kind,
    /// The static binary: the agent, or pvcheck for [`Kind::Runner`].
    pub agent: &'a [u8],
    /// `amd64`, `arm64`.
    pub arch: &'a str,
    /// `docker.io/pvcheck/agent:0.1.0`.
    pub reference: &'a str,
    pub version: &'a str,
}

/// The image's digests, for messages.
pub struct Written {
    pub manifest_digest: String,
    pub layer_bytes: usize,
}

/// The layer tar.
pub fn layer(kind: Kind, agent: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut t = TarWriter::new(Vec::new());
    t.dir("etc", 0o755)?;
    t.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n",
    )?;
    t.file("etc/group", 0o644, b"root:x:0:\nnonroot:x:65532:\n")?;
    if kind == Kind::Agent {
        t.dir("data", 0o755)?;
        t.dir("inputs", 0o755)?;
    }
    t.dir("tmp", 0o1777)?;
    t.file(kind.binary(), 0o755, agent)?;
    t.finish()
}

/// Writes the archive to `w`.
pub fn write(spec: &ImageSpec<'_>, w: impl std::io::Write) -> std::io::Result<Written> {
    let layer = layer(spec.kind, spec.agent)?;
    let binary = spec.kind.binary();
    let layer_digest = crate::sys::sha256_hex(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": spec.arch,
        "os": "linux",
        "config": {
            "User": "65532:65532",
            "Entrypoint": [format!("/{binary}")],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": binary,
                "org.opencontainers.image.version": spec.version,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [ { "created": "1970-01-01T00:00:00Z", "created_by": "pvcheck image export" } ],
    }))?;
    let config_digest = crate::sys::sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [ {
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len(),
        } ],
    }))?;
    let manifest_digest = crate::sys::sha256_hex(&manifest);
    let tag = spec
        .reference
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.contains('/'))
        .unwrap_or("latest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [ {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "platform": { "architecture": spec.arch, "os": "linux" },
            "annotations": {
                "io.containerd.image.name": spec.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        } ],
    }))?;
    let mut t = TarWriter::new(w);
    t.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    t.file("index.json", 0o644, &index)?;
    t.dir("blobs", 0o755)?;
    t.dir("blobs/sha256", 0o755)?;
    t.file(&format!("blobs/sha256/{layer_digest}"), 0o644, &layer)?;
    t.file(&format!("blobs/sha256/{config_digest}"), 0o644, &config)?;
    t.file(&format!("blobs/sha256/{manifest_digest}"), 0o644, &manifest)?;
    t.finish()?;
    Ok(Written {
        manifest_digest: format!("sha256:{manifest_digest}"),
        layer_bytes: layer.len(),
    })
}

/// ELF facts: (static: no program interpreter, architecture), or why it is not a usable agent.
pub fn elf_facts(b: &[u8]) -> Result<(bool, &'static str), String> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    if b[4] != 2 || b[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let arch = match u16_at(0x12) {
        0x3e => "amd64",
        0xb7 => "arm64",
        m => return Err(format!("unsupported machine type {m:#x}")),
    };
    let phoff = usize::try_from(u64_at(0x20)).map_err(|_| "bad program header offset")?;
    let phentsize = usize::from(u16_at(0x36));
    let phnum = usize::from(u16_at(0x38));
    let mut interp = false;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > b.len() {
            return Err("truncated program headers".into());
        }
        if u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) == 3 {
            interp = true;
        }
    }
    Ok((!interp, arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image must be what the pod spec assumes: user 65532, the agent at /pvcheck-agent,
    /// no shell; and the same input must give the same digest (reproducible images).
    #[test]
    fn the_archive_names_the_image_and_runs_the_agent_as_65532() {
        let spec = ImageSpec {
            kind: Kind::Agent,
            agent: b"\x7fELF-not-really",
            arch: "amd64",
            reference: "docker.io/pvcheck/agent:0.1.0",
            version: "0.1.0",
        };
        let mut a = Vec::new();
        let w1 = write(&spec, &mut a).unwrap();
        let mut b = Vec::new();
        let w2 = write(&spec, &mut b).unwrap();
        assert_eq!(a, b, "not deterministic");
        assert_eq!(w1.manifest_digest, w2.manifest_digest);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("\"io.containerd.image.name\":\"docker.io/pvcheck/agent:0.1.0\""));
        assert!(text.contains("\"User\":\"65532:65532\""));
        assert!(text.contains("\"Entrypoint\":[\"/pvcheck-agent\"]"));
        let l = layer(Kind::Agent, b"x").unwrap();
        assert!(!String::from_utf8_lossy(&l).contains("bin/sh"));
    }

    /// The runner image (the nightly CronJob's): pvcheck at /pvcheck as its entrypoint, user
    /// 65532, reproducible, and not the agent's image under another name.
    #[test]
    fn the_runner_archive_runs_pvcheck_as_65532_and_is_reproducible() {
        let spec = ImageSpec {
            kind: Kind::Runner,
            agent: b"\x7fELF-pvcheck",
            arch: "amd64",
            reference: "docker.io/pvcheck/pvcheck:0.1.0",
            version: "0.1.0",
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let w1 = write(&spec, &mut a).unwrap();
        let w2 = write(&spec, &mut b).unwrap();
        assert_eq!(a, b, "not deterministic");
        assert_eq!(w1.manifest_digest, w2.manifest_digest);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("\"io.containerd.image.name\":\"docker.io/pvcheck/pvcheck:0.1.0\""));
        assert!(text.contains("\"User\":\"65532:65532\""));
        assert!(text.contains("\"Entrypoint\":[\"/pvcheck\"]"));
        let l = String::from_utf8_lossy(&layer(Kind::Runner, b"x").unwrap()).into_owned();
        assert!(l.contains("pvcheck") && !l.contains("pvcheck-agent") && !l.contains("bin/sh"));
    }

    #[test]
    fn a_dynamically_linked_binary_is_told_apart_from_a_static_one() {
        let me = std::fs::read("/proc/self/exe").unwrap();
        let (is_static, _) = elf_facts(&me).unwrap();
        // Test binaries are linked dynamically unless built with crt-static.
        let dynamic = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains("ld-linux");
        assert_eq!(is_static, !dynamic);
        assert!(elf_facts(b"#!/bin/sh\n").is_err());
    }
}
