//! Every real ECS task definition in shared/realworld/taskdefs is validated, and the outcome
//! must match expected.tsv: registered, or refused with a message naming the expected field.

use std::path::PathBuf;

fn corpus() -> PathBuf {
    std::env::var_os("BERTH_REALWORLD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/realworld/taskdefs")
        })
}

#[test]
fn every_realworld_definition_meets_its_expectation() {
    let dir = corpus();
    let table = std::fs::read_to_string(dir.join("expected.tsv"))
        .unwrap_or_else(|e| panic!("{}: {e} (set BERTH_REALWORLD_DIR)", dir.display()));
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in table.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let mut cols = line.split('\t');
        let (file, expect) = (
            cols.next().unwrap_or_default(),
            cols.next().unwrap_or_default(),
        );
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let outcome = berth::spec::parse(&text);
        checked += 1;
        match (expect.strip_prefix("refuse:"), outcome) {
            (None, Ok(_)) => {}
            (None, Err(e)) => failures.push(format!("{file}: expected to register, refused: {e}")),
            (Some(names), Err(e)) => {
                let msg = e.to_string();
                if !names.split('|').any(|n| msg.contains(n)) {
                    failures.push(format!(
                        "{file}: refused, but the message names none of {names}: {msg}"
                    ));
                }
            }
            (Some(names), Ok(_)) => failures.push(format!(
                "{file}: expected refusal naming {names}, but it registered"
            )),
        }
    }
    assert!(
        checked >= 40,
        "only {checked} definitions listed in expected.tsv"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} definitions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
