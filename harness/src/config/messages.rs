//! Parser messages rewritten into what to do. The YAML parser reports where it stopped
//! ("expected end of mapping after enum variant value", "expected sequence start"); a user
//! needs to hear that a class has exactly one kind of volume, or that a list is written
//! `[a, b]`.

use super::spec::LocalKind;

/// The kinds `local:` accepts, as the deserializer itself lists them (so the message stays
/// true when a kind is added).
pub fn local_kinds() -> Vec<String> {
    let err = match serde_json::from_str::<LocalKind>("{\"\\u0000\": null}") {
        Err(e) => e.to_string(),
        Ok(_) => return Vec::new(),
    };
    err.split_once("expected one of ")
        .map(|(_, rest)| {
            rest.split(',')
                .map(|k| {
                    k.split(" at line")
                        .next()
                        .unwrap_or("")
                        .trim()
                        .trim_matches('`')
                        .to_string()
                })
                .filter(|k| !k.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A better message for `msg` (the parser's, at 1-based `line` of `text`), with the field it is
/// about when that changes; None to keep the parser's.
pub fn rewrite(
    msg: &str,
    text: &str,
    line: Option<u64>,
    field: Option<&str>,
) -> Option<(String, Option<String>)> {
    if msg.contains("after enum variant value") {
        let kinds = local_kinds();
        let list = if kinds.is_empty() {
            "dir, loop, flexvolume".to_string()
        } else {
            kinds.join(", ")
        };
        return Some((
            format!(
                "a class has exactly one of {list} under `local:`: keep one, and define another class for the other"
            ),
            Some("local".into()),
        ));
    }
    if msg.contains("expected sequence") {
        let field = field.unwrap_or("this field");
        let value = line
            .and_then(|l| text.lines().nth(usize::try_from(l).ok()?.checked_sub(1)?))
            .and_then(|l| value_of(l, field));
        let example = match value {
            Some(v) => format!("`{field}: [{v}]`"),
            None => format!("`{field}: [a, b]`"),
        };
        return Some((
            format!(
                "expected a list, found a single value: write {example} (or one `- item` per line below `{field}:`)"
            ),
            None,
        ));
    }
    None
}

/// The scalar after `field:` on a YAML line (`size: 1GiB, mount_options: noatime }` → `noatime`).
fn value_of(line: &str, field: &str) -> Option<String> {
    let at = line.find(&format!("{field}:"))? + field.len() + 1;
    let v: String = line[at..]
        .trim_start()
        .chars()
        .take_while(|c| !matches!(c, ',' | '}' | '#'))
        .collect();
    let v = v.trim().trim_matches(['"', '\'']).to_string();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_come_from_the_type() {
        let kinds = local_kinds();
        for k in ["dir", "loop", "flexvolume"] {
            assert!(kinds.iter().any(|x| x == k), "{kinds:?}");
        }
    }

    #[test]
    fn a_string_for_a_list_shows_the_list_form() {
        let text = "classes:\n  - name: a\n    local: { loop: { fs: ext4, size: 1GiB, mount_options: noatime } }\n";
        let (msg, _) = rewrite(
            "expected sequence start",
            text,
            Some(3),
            Some("mount_options"),
        )
        .unwrap();
        assert!(msg.contains("`mount_options: [noatime]`"), "{msg}");
    }
}
