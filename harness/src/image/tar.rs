//! A minimal, deterministic ustar writer (files and directories; mtime 0), enough for an OCI
//! layer and an OCI archive without a tar dependency.

use std::io::{self, Write};

/// One entry's header.
fn header(
    name: &str,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    dir: bool,
) -> io::Result<[u8; 512]> {
    let mut h = [0u8; 512];
    let (prefix, base) = if name.len() <= 100 {
        ("", name)
    } else {
        let cut = name[..name.len().min(155)]
            .rfind('/')
            .ok_or_else(|| io::Error::other(format!("tar: name too long: {name}")))?;
        (&name[..cut], &name[cut + 1..])
    };
    if base.len() > 100 || prefix.len() > 155 {
        return Err(io::Error::other(format!("tar: name too long: {name}")));
    }
    h[..base.len()].copy_from_slice(base.as_bytes());
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], u64::from(uid));
    octal(&mut h[116..124], u64::from(gid));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// Writes entries to `w`.
pub struct TarWriter<W: Write> {
    w: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(w: W) -> Self {
        Self { w }
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> io::Result<()> {
        let n = format!("{}/", name.trim_end_matches('/'));
        self.w.write_all(&header(&n, 0, mode, 0, 0, true)?)
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.w
            .write_all(&header(name, data.len() as u64, mode, 0, 0, false)?)?;
        self.w.write_all(data)?;
        let pad = (512 - data.len() % 512) % 512;
        self.w.write_all(&vec![0u8; pad])
    }

    /// The two zero blocks that end an archive; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&[0u8; 1024])?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive must be readable by the tools users import it with; GNU tar is the referee.
    #[test]
    fn gnu_tar_reads_what_we_write() {
        let Some(tar) = crate::sys::which("tar") else {
            eprintln!("tar is not installed: skipped");
            return;
        };
        let mut t = TarWriter::new(Vec::new());
        t.dir("etc", 0o755).unwrap();
        t.file(
            "etc/passwd",
            0o644,
            b"nonroot:x:65532:65532::/:/sbin/nologin\n",
        )
        .unwrap();
        let long = format!("{}/{}", "d".repeat(90), "f".repeat(60));
        t.file(&long, 0o755, &[7u8; 1000]).unwrap();
        let bytes = t.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.tar");
        std::fs::write(&f, &bytes).unwrap();
        let out = std::process::Command::new(tar)
            .arg("-tvf")
            .arg(&f)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(list.contains("etc/passwd"), "{list}");
        assert!(list.contains(&long), "{list}");
    }
}
