//! The ladder's faces on the command line: a lesson binary's `--ladder` and `--ladder-svg`,
//! and `tcplab ladder FILE` on a saved report, alone and beside the model's ladder.
//!
//! The runs capture (as root on the host's `lo`, otherwise in a namespace of the lesson's
//! own), so the ladders hold segments as well as states.

mod common;

use std::process::Command;

use tcplab_core::ladder::wire;

fn tcplab(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .args(args)
        .output()
        .expect("run tcplab");
    assert!(
        out.status.success(),
        "tcplab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_lesson_prints_and_draws_its_ladder() {
    let dir = std::env::temp_dir().join(format!("tcplab-ladder-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("02.svg");
    let out = Command::new(common::binary_path("02-four-way-close"))
        .args(["--ladder", "--ladder-svg"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let ladder = text
        .split("the ladder of this run")
        .nth(1)
        .unwrap_or_else(|| panic!("no ladder in the narration:\n{text}"));
    // The client's FIN goes right (to the server), the server's comes back left.
    let fin_c = ladder
        .lines()
        .find(|l| l.contains("FIN+ACK seq=7"))
        .unwrap();
    assert!(fin_c.trim_end().ends_with('>'), "{ladder}");
    // Beside its FIN with the tracepoint (root); polling may only infer it, on a row of its own.
    assert!(ladder.contains("FIN_WAIT1"), "{ladder}");
    assert!(
        ladder
            .lines()
            .any(|l| l.contains("<") && l.contains("FIN+ACK seq=1")),
        "{ladder}"
    );
    assert!(ladder.contains("= TIME_WAIT (timer running)"), "{ladder}");
    let picture = std::fs::read_to_string(&svg).unwrap();
    let normal = wire::desc_of(&picture).unwrap();
    assert!(
        normal.starts_with("wire: >SYN <SYN+ACK >FIN+ACK <FIN+ACK |"),
        "{normal}"
    );

    // The same run saved as JSON, drawn again by the runner, and beside the model.
    let report = dir.join("02.json");
    let out = Command::new(common::binary_path("02-four-way-close"))
        .args(["--json", "--ladder"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&report, &out.stdout).unwrap();
    let path = report.to_str().unwrap();
    // Another run: the same segments (its states may differ where polling inferred them).
    let again = tcplab(&["ladder", "--normal", path]);
    assert_eq!(again.split(" | ").next(), normal.split(" | ").next());
    assert!(again.trim_end().ends_with("[1/1]"), "{again}");
    let beside = tcplab(&["ladder", path, "--beside", "client-close"]);
    let head = beside.lines().next().unwrap();
    assert!(
        head.contains("client 10.0.0.1:40000") && head.contains("| "),
        "{head}"
    );
    assert!(head.contains("client 127.0.0.1:"), "{head}");
    let both = tcplab(&["ladder", path, "--svg", "--beside", "client-close"]);
    assert_eq!(both.matches("<svg").count(), 3, "two pictures in one");
    let _ = std::fs::remove_dir_all(&dir);
}
