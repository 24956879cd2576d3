//! The book's diagrams are generated from core::model by `scripts/gen-diagrams`; this test
//! fails when a committed SVG no longer matches what the model draws, so the book can never
//! show a diagram the code disagrees with.

use std::path::Path;
use std::process::Command;

use tcplab_core::model::Scenario;

fn generated(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "tcplab {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn check(file: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../book/src/diagrams")
        .join(file);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/gen-diagrams", path.display()));
    assert!(
        committed == generated(args),
        "{} is out of date: run scripts/gen-diagrams and commit the result",
        path.display()
    );
}

#[test]
fn state_diagram_is_up_to_date() {
    check("state-diagram.svg", &["diagram", "--svg"]);
}

#[test]
fn every_scenario_ladder_is_up_to_date() {
    for scenario in Scenario::ALL {
        let name = scenario.name();
        check(&format!("{name}.svg"), &["model", name, "--svg"]);
    }
}
