//! The terminal output of a small passing and a small failing run, as a user reads it, pinned
//! with insta snapshots (issue 15: output that ends with the answer). Times, run ids and
//! temporary paths are normalised; everything else (the order of the lines, the tables, the
//! verdict, the result path last) is compared as is.

mod common;

use common::{Env, stderr, stdout};

/// Replaces what differs between runs: temporary paths, the run id, timestamps and durations.
fn normalize(env: &Env, text: &str) -> String {
    let r = env.result();
    let run_id = r["run_id"].as_str().unwrap().to_string();
    let mut s = text
        .replace(&env.state.path().display().to_string(), "[STATE]")
        .replace(&env.results.path().display().to_string(), "[RESULTS]")
        .replace(&env.scratch.path().display().to_string(), "[SCRATCH]")
        .replace(&run_id, "[RUN]")
        .replace(common::PVCHECK, "[PVCHECK]");
    // `20261128T055133Z` in the result file's name.
    let stamp = r["start"].as_str().unwrap().replace(['-', ':'], "");
    s = s.replace(&stamp, "[TIME]");
    // Durations: `0.4s`, `0.41s`, `1.2s wall`, `(13%)`.
    s = replace_tokens(&s, |w| {
        let core = w.trim_end_matches([';', ',', ')']);
        let tail = &w[core.len()..];
        let num = core.strip_suffix('s')?;
        (!num.is_empty()
            && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && num.contains('.'))
        .then(|| format!("[T]{tail}"))
    });
    s = replace_tokens(&s, |w| {
        let core = w.trim_start_matches('(').trim_end_matches(')');
        let num = core.strip_suffix('%')?;
        num.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| w.replace(num, "[N]"))
    });
    // Column padding follows the widths of what was normalised away.
    s.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Applies `f` to every whitespace-separated word, keeping the whitespace.
fn replace_tokens(s: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            out.push_str(&f(word).unwrap_or_else(|| word.clone()));
            word.clear();
        }
    };
    for c in s.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn class_file(env: &Env, upgrade: &str) -> String {
    let vols = env.scratch.path().join("vols");
    std::fs::create_dir_all(&vols).unwrap();
    let p = env.scratch.path().join("classes.yaml");
    std::fs::write(
        &p,
        format!(
            "classes:\n  - name: small\n    local: {{ dir: {} }}\n{upgrade}",
            vols.display()
        ),
    )
    .unwrap();
    p.display().to_string()
}

fn terminal(env: &Env, args: &[&str]) -> (Option<i32>, String) {
    let out = env.run(args);
    let text = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        stdout(&out),
        stderr(&out)
    );
    (out.status.code(), normalize(env, &text))
}

#[test]
fn the_terminal_output_of_a_small_passing_run() {
    let env = Env::new();
    let f = class_file(&env, "");
    let (code, text) = terminal(
        &env,
        &[
            "--classes",
            &f,
            "--skip",
            "speed",
            "--skip",
            "durability",
            "--test-threads",
            "1",
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    insta::assert_snapshot!("small_passing_run", text);
}

#[test]
fn the_terminal_output_of_a_small_failing_run() {
    let env = Env::new();
    let f = class_file(
        &env,
        "    upgrade: { command: 'echo driver swap failed >&2; exit 3' }\n",
    );
    let (code, text) = terminal(
        &env,
        &[
            "--classes",
            &f,
            "--skip",
            "speed",
            "--skip",
            "durability",
            "--test-threads",
            "1",
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    insta::assert_snapshot!("small_failing_run", text);
}
