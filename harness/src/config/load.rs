//! Reading class files: strict parsing, then the checks serde cannot do (names, paths, kinds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;
use super::flexvolume::DriverSource;
use super::spec::{ClassSpec, LocalKind};

/// The default class file, compiled in so `pvcheck run` works from any directory.
pub const DEFAULT_CLASSES: &str = include_str!("../../../storageclasses/local.yaml");
/// How the built-in file is named in messages and results.
pub const DEFAULT_CLASSES_NAME: &str = "<built-in storageclasses/local.yaml>";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassFile {
    classes: Vec<ClassSpec>,
}

/// Loads the built-in default classes. Relative paths in it would be relative to the current
/// directory; it has none.
pub fn load_default() -> Result<Vec<ClassSpec>, ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let classes = parse_str(DEFAULT_CLASSES, Path::new(DEFAULT_CLASSES_NAME), &cwd)?;
    check_unique(&classes)?;
    Ok(classes)
}

/// Loads and checks every file; names must be unique across all of them.
pub fn load_files(files: &[PathBuf]) -> Result<Vec<ClassSpec>, ConfigError> {
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigError::new(file, None, None, format!("cannot read class file: {e}"))
        })?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        all.extend(parse_str(&text, file, &base)?);
    }
    check_unique(&all)?;
    Ok(all)
}

/// Parses one class file's text. `file` names it in errors; `base` resolves relative paths.
pub fn parse_str(text: &str, file: &Path, base: &Path) -> Result<Vec<ClassSpec>, ConfigError> {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ConfigError::new(
            file,
            None,
            None,
            "the file is empty: expected `classes:` with at least one class",
        ));
    }
    let parsed: ClassFile =
        serde_saphyr::from_str(text).map_err(|e| parse_error(text, file, &e))?;
    if parsed.classes.is_empty() {
        return Err(ConfigError::new(
            file,
            None,
            Some("classes".into()),
            "no classes defined",
        ));
    }
    let mut out = Vec::with_capacity(parsed.classes.len());
    for (i, mut class) in parsed.classes.into_iter().enumerate() {
        class.file = file.to_path_buf();
        check_class(&mut class, i, file, base)?;
        out.push(class);
    }
    Ok(out)
}

fn check_class(
    class: &mut ClassSpec,
    index: usize,
    file: &Path,
    base: &Path,
) -> Result<(), ConfigError> {
    let name = class.name.value.clone();
    let field = |f: &str| Some(format!("classes[{index}].{f}"));
    let line = class.line();
    super::limits::check(class, index, file)?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ConfigError::new(
            file,
            Some(line),
            field("name"),
            format!("{name:?} is not a valid class name: use only a-z, 0-9 and '-'"),
        ));
    }
    match &mut class.local {
        Some(LocalKind::Dir(dir)) => {
            let at = dir.referenced.line();
            dir.value = resolve(base, &dir.value);
            // The directory itself may be created by pvcheck (e.g. /dev/shm/pvcheck), its parent must exist.
            let parent_exists = dir.value.parent().is_some_and(Path::is_dir);
            if !dir.value.is_dir() && !parent_exists {
                return Err(ConfigError::new(
                    file,
                    Some(at),
                    field("local.dir"),
                    format!(
                        "{} does not exist (nor does its parent)",
                        dir.value.display()
                    ),
                ));
            }
            if class.capabilities.expansion || class.capabilities.snapshot {
                return Err(ConfigError::new(
                    file,
                    Some(line),
                    field("capabilities"),
                    "a dir class cannot expand or snapshot: set expansion and snapshot to false or use a loop class",
                ));
            }
        }
        Some(LocalKind::Loop(l)) => {
            if l.size.bytes() < (16 << 20) {
                return Err(ConfigError::new(
                    file,
                    Some(line),
                    field("local.loop.size"),
                    format!(
                        "{} is too small for a filesystem: use at least 16MiB",
                        l.size
                    ),
                ));
            }
            if let Some(d) = &mut l.image_dir {
                *d = resolve(base, d);
                if !d.is_dir() {
                    return Err(ConfigError::new(
                        file,
                        Some(line),
                        field("local.loop.image_dir"),
                        format!("{} is not a directory", d.display()),
                    ));
                }
            }
        }
        Some(LocalKind::Flexvolume(f)) => {
            let at = f.driver.referenced.line();
            f.source = Some(driver_source(&f.driver.value, file, base).map_err(|what| {
                ConfigError::new(file, Some(at), field("local.flexvolume.driver"), what)
            })?);
            let null = serde_json::Value::Object(Default::default());
            let (value, at) = match &f.options {
                Some(o) => (&o.value, o.referenced.line()),
                None => (&null, line),
            };
            let options_field = format!("classes[{index}].local.flexvolume.options");
            f.user_options = crate::platform::local::flexvolume::options::user_options(
                &name,
                &options_field,
                value,
            )
            .map_err(|e| ConfigError::new(file, Some(at), None, e.to_string()))?;
            if class.capabilities.expansion || class.capabilities.snapshot {
                return Err(ConfigError::new(
                    file,
                    Some(line),
                    field("capabilities"),
                    "flexVolume has no expand or snapshot call: set expansion and snapshot to false",
                ));
            }
        }
        Some(LocalKind::Csi(c)) => {
            let upgrade = class.upgrade.as_mut().and_then(|u| u.csi.as_mut());
            super::csi::check(c, upgrade, file, base, line, &field)?;
        }
        None => {}
    }
    super::kube::check(class, index, file, base)?;
    if (class.capabilities.clone || class.capabilities.block)
        && !matches!(class.local, Some(LocalKind::Csi(_)) | None)
    {
        return Err(ConfigError::new(
            file,
            Some(line),
            field("capabilities"),
            "only a csi class can clone or publish raw block volumes: set clone and block to false",
        ));
    }
    if let Some(u) = &class.upgrade
        && let Some(c) = &u.csi
        && !matches!(class.local, Some(LocalKind::Csi(_)))
    {
        return Err(ConfigError::new(
            file,
            Some(c.command.referenced.line()),
            field("upgrade.csi"),
            "only a csi class has a CSI driver to restart: use upgrade.command",
        ));
    }
    if let Some(u) = &mut class.upgrade
        && let Some(d) = &u.driver
    {
        let at = d.referenced.line();
        if !matches!(class.local, Some(LocalKind::Flexvolume(_))) {
            return Err(ConfigError::new(
                file,
                Some(at),
                field("upgrade.driver"),
                "only a flexvolume class has a driver to swap: use upgrade.command",
            ));
        }
        if u.command.is_some() {
            return Err(ConfigError::new(
                file,
                Some(at),
                field("upgrade.driver"),
                "give either upgrade.driver (a flexVolume driver swap) or upgrade.command, not both",
            ));
        }
        u.driver_source = Some(
            driver_source(&d.value, file, base)
                .map_err(|what| ConfigError::new(file, Some(at), field("upgrade.driver"), what))?,
        );
    }
    if let Some(t) = &class.thresholds
        && let Err((f, what)) = t.validate()
    {
        return Err(ConfigError::new(
            file,
            Some(line),
            field(&format!("thresholds.{f}")),
            what,
        ));
    }
    if let Some(u) = &class.upgrade
        && u.rollback
        && u.driver.is_none()
        && u.csi.is_none()
    {
        return Err(ConfigError::new(
            file,
            Some(line),
            field("upgrade.rollback"),
            "`rollback` needs `upgrade.driver` or `upgrade.csi`: it goes back to the first driver",
        ));
    }
    if let Some(u) = &class.upgrade
        && u.drain
        && u.command.is_none()
        && u.driver.is_none()
        && u.csi.is_none()
    {
        return Err(ConfigError::new(
            file,
            Some(line),
            field("upgrade.drain"),
            "`drain` needs `upgrade.command`, `upgrade.driver` or `upgrade.csi`: there is no upgrade to drain the volume for",
        ));
    }
    if let Some(b) = &class.backend
        && b.value.trim().is_empty()
    {
        return Err(ConfigError::new(
            file,
            Some(b.referenced.line()),
            field("backend"),
            "is empty: name the storage backend the class's volumes live on (classes naming the same one never measure speed at once), or leave the field out",
        ));
    }
    if let Some(k) = &class.disruption.kubelet {
        for (name, cmd) in [("stop", &k.stop), ("start", &k.start)] {
            if cmd.value.trim().is_empty() {
                return Err(ConfigError::new(
                    file,
                    Some(cmd.referenced.line()),
                    field(&format!("disruption.kubelet.{name}")),
                    format!(
                        "is empty: give the shell command that {name}s the kubelet of node $PVCHECK_NODE"
                    ),
                ));
            }
        }
    }
    if let Some(cmd) = &class.disruption.node_mounts
        && cmd.value.trim().is_empty()
    {
        return Err(ConfigError::new(
            file,
            Some(cmd.referenced.line()),
            field("disruption.node_mounts"),
            "is empty: give the shell command that prints the mount table of node $PVCHECK_NODE, or leave the field out",
        ));
    }
    if let Some(u) = &class.upgrade
        && u.command.is_none()
        && u.ready.is_some()
    {
        return Err(ConfigError::new(
            file,
            Some(line),
            field("upgrade.ready"),
            "`ready` without `command`: say what the upgrade does",
        ));
    }
    Ok(())
}

/// A driver path: in the built-in class file, a sample shipped in the binary; elsewhere an
/// executable file relative to the class file.
fn driver_source(p: &Path, file: &Path, base: &Path) -> Result<DriverSource, String> {
    if file == Path::new(DEFAULT_CLASSES_NAME) {
        let rel = p.to_string_lossy();
        return crate::platform::local::flexvolume::embedded::SAMPLES
            .iter()
            .find(|s| s.path == rel)
            .map(|s| DriverSource::Embedded(s.path))
            .ok_or_else(|| format!("{rel} is not one of the built-in sample drivers"));
    }
    let path = resolve(base, p);
    crate::platform::local::flexvolume::call::check_executable(&path).map_err(|e| e.to_string())?;
    Ok(DriverSource::File(path))
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// One line from the parser's error: its first line without the location prefix (we print the
/// location ourselves), plus the field, taken from the YAML key the error points at.
fn parse_error(text: &str, file: &Path, e: &serde_saphyr::Error) -> ConfigError {
    let loc = e.location();
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("").trim();
    // "error: line 4 column 5: unknown field …" → "unknown field …"
    let msg = first.strip_prefix("error: ").unwrap_or(first);
    let msg = match msg.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(msg),
        None => msg,
    };
    let field = loc.and_then(|l| key_at(text, l.line(), l.column()));
    let field = if msg.contains("unknown field") {
        None
    } else {
        field
    };
    let line = loc.map(|l| l.line());
    if let Some((better, better_field)) =
        super::messages::rewrite(msg, text, line, field.as_deref())
    {
        return ConfigError::new(file, line, better_field.or(field), better);
    }
    ConfigError::new(file, line, field, msg.to_string())
}

/// The YAML key whose value starts at (line, column), 1-based: `size` for `{ fs: ext4, size: 1024 }`.
fn key_at(text: &str, line: u64, column: u64) -> Option<String> {
    let l = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let before: String = l
        .chars()
        .take(usize::try_from(column).ok()?.saturating_sub(1))
        .collect();
    let before = before.trim_end().strip_suffix(':')?;
    let key: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    (!key.is_empty()).then(|| key.chars().rev().collect())
}

fn check_unique(classes: &[ClassSpec]) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, &ClassSpec> = HashMap::new();
    for c in classes {
        if let Some(first) = seen.insert(c.name(), c) {
            return Err(ConfigError::new(
                &c.file,
                Some(c.line()),
                Some("name".into()),
                format!(
                    "duplicate class name {:?} (first defined at {}:{})",
                    c.name(),
                    first.file.display(),
                    first.line()
                ),
            ));
        }
    }
    Ok(())
}
