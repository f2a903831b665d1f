//! SECURITY.md publishes the table of the attack suite: every attack of the
//! catalogue has its row, with its test's name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rempart_attacks::ATTACKS;

#[test]
fn security_md_lists_every_attack() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../SECURITY.md")).unwrap();
    for attack in ATTACKS {
        let row = format!("| {} |", attack.number);
        let line = text
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("SECURITY.md has no row {}", attack.number));
        assert!(
            line.contains(&format!("`{}`", attack.test)),
            "row {} of SECURITY.md names the test `{}`: {line}",
            attack.number,
            attack.test
        );
    }
}
