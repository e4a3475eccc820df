//! Bad class files and filters: one clear line naming file, line and field; exit 2; nothing created.

mod common;

use common::{Env, assert_exit, stderr};

/// Runs with `file` and returns the single stderr line, after checking exit 2 and no state.
fn refused(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(
        env.leftovers().is_empty(),
        "created something: {:?}",
        env.leftovers()
    );
    assert!(
        !env.results.path().join("runs").exists(),
        "wrote a result file"
    );
    lines[0].to_string()
}

/// kubernetes#71589: a typo silently ignored hid bugs. An unknown field is an error with its line.
#[test]
fn unknown_field_names_file_line_and_field() {
    let env = Env::new();
    let f = env.write(
        "typo.yaml",
        "classes:\n  - name: a\n    local: { dir: /tmp }\n    capabilites: { snapshot: true }\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(line.contains(&format!("{f}:4")), "{line}");
    assert!(line.contains("unknown field `capabilites`"), "{line}");
}

#[test]
fn unknown_field_in_a_nested_section_names_its_line() {
    let env = Env::new();
    let f = env.write("nested.yaml",
        "classes:\n  - name: a\n    local:\n      loop:\n        fs: ext4\n        size: 1GiB\n        mount_opts: [noatime]\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(line.contains(&format!("{f}:7")), "{line}");
    assert!(line.contains("mount_opts"), "{line}");
}

#[test]
fn duplicate_class_name_is_refused_with_both_places() {
    let env = Env::new();
    let f = env.write(
        "dup.yaml",
        "classes:\n  - name: a\n    local: { dir: /tmp }\n  - name: a\n    local: { dir: /tmp }\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!("{f}:4"))
            && line.contains("duplicate class name \"a\"")
            && line.contains(&format!("{f}:2")),
        "{line}"
    );
}

#[test]
fn duplicate_names_across_two_files_are_refused() {
    let env = Env::new();
    let f1 = env.write(
        "one.yaml",
        "classes:\n  - name: a\n    local: { dir: /tmp }\n",
    );
    let f2 = env.write(
        "two.yaml",
        "classes:\n  - name: a\n    local: { dir: /tmp }\n",
    );
    let line = refused(&env, &["--classes", &f1, "--classes", &f2]);
    assert!(
        line.contains(&format!("{f2}:2")) && line.contains("duplicate"),
        "{line}"
    );
}

/// kubestr#145: a size without a unit silently meant something else. Refused, naming the field.
#[test]
fn bare_size_is_refused_naming_the_field() {
    let env = Env::new();
    let f = env.write(
        "bare.yaml",
        "classes:\n  - name: a\n    local: { loop: { fs: ext4, size: 1024 } }\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!("{f}:3: size:")) && line.contains("no unit"),
        "{line}"
    );
}

#[test]
fn bare_duration_is_refused_naming_the_field() {
    let env = Env::new();
    let f = env.write(
        "dur.yaml",
        "classes:\n  - name: a\n    local: { dir: /tmp }\n    timeouts:\n      upgrade: 600\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!("{f}:5: upgrade:")) && line.contains("no unit"),
        "{line}"
    );
}

#[test]
fn bad_class_name_is_refused() {
    let env = Env::new();
    let f = env.write(
        "name.yaml",
        "classes:\n  - name: Fast_SSD\n    local: { dir: /tmp }\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!("{f}:2")) && line.contains("name") && line.contains("a-z"),
        "{line}"
    );
}

#[test]
fn missing_class_file_is_refused() {
    let env = Env::new();
    let f = env.scratch.path().join("nope.yaml").display().to_string();
    let line = refused(&env, &["--classes", &f]);
    assert!(line.contains(&f) && line.contains("No such file"), "{line}");
}

#[test]
fn empty_class_file_is_refused() {
    let env = Env::new();
    let f = env.write("empty.yaml", "# nothing here\n\n");
    let line = refused(&env, &["--classes", &f]);
    assert!(line.contains(&f) && line.contains("empty"), "{line}");
    let f = env.write("none.yaml", "classes: []\n");
    let line = refused(&env, &["--classes", &f]);
    assert!(line.contains("no classes"), "{line}");
}

/// Relative paths are relative to the YAML file; a missing one names its line.
#[test]
fn missing_relative_path_is_resolved_against_the_file_and_refused() {
    let env = Env::new();
    let f = env.write(
        "rel.yaml",
        "classes:\n  - name: a\n    local:\n      dir: no/such/dir\n",
    );
    let line = refused(&env, &["--classes", &f]);
    let expected = env.scratch.path().join("no/such/dir").display().to_string();
    assert!(
        line.contains(&format!("{f}:4")) && line.contains(&expected),
        "{line}"
    );
}

#[test]
fn filter_matching_no_class_is_refused() {
    let env = Env::new();
    let line = refused(&env, &["no-such-class::"]);
    assert!(
        line.contains("matches no trial") && line.contains("tmpfs"),
        "{line}"
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let env = Env::new();
    let out = env.run(&["--no-such-flag"]);
    assert_exit(&out, 2);
}

/// A relative dir resolves against the YAML file's directory, not the current directory.
#[test]
fn relative_dir_resolves_against_the_class_file() {
    let env = Env::new();
    std::fs::create_dir(env.scratch.path().join("vols")).unwrap();
    let f = env.write(
        "ok.yaml",
        "classes:\n  - name: rel\n    local: { dir: vols }\n",
    );
    let out = env.run(&["--classes", &f, "--list"]);
    assert_exit(&out, 0);
    assert!(common::stdout(&out).contains("rel::provision: test"));
}

/// `disruption.kubelet`: an empty command, or a start without a stop, and an empty
/// `disruption.node_mounts`, are one line naming the file, the line and the field, before
/// anything runs.
#[test]
fn an_empty_or_missing_kubelet_command_is_refused_naming_the_field() {
    let env = Env::new();
    let f = env.write("kubelet.yaml",
        "classes:\n  - name: k\n    local: { dir: /tmp }\n    disruption:\n      kubelet:\n        stop: \"  \"\n        start: \"systemctl start kubelet\"\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!(
            "{f}:6: classes[0].disruption.kubelet.stop: is empty"
        )),
        "{line}"
    );
    let f = env.write("kubelet-half.yaml",
        "classes:\n  - name: k\n    local: { dir: /tmp }\n    disruption:\n      kubelet: { start: \"systemctl start kubelet\" }\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!("{f}:5")) && line.contains("stop"),
        "{line}"
    );
    let f = env.write("node-mounts.yaml",
        "classes:\n  - name: k\n    local: { dir: /tmp }\n    disruption:\n      node_mounts: \"\"\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!(
            "{f}:5: classes[0].disruption.node_mounts: is empty"
        )),
        "{line}"
    );
}

/// Issue 21: `backend:` empty, and `--parallel-classes 0`, are one line each, before anything runs.
#[test]
fn an_empty_backend_or_no_parallel_class_is_refused_naming_the_field() {
    let env = Env::new();
    let f = env.write(
        "backend.yaml",
        "classes:\n  - name: k\n    local: { dir: /tmp }\n    backend: \"\"\n",
    );
    let line = refused(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!("{f}:4: classes[0].backend: is empty")),
        "{line}"
    );
    let out = env.run(&["--classes", &f, "--list", "--parallel-classes", "0"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("--parallel-classes"),
        "{}",
        stderr(&out)
    );
}
