//! Text IR (the filetests' format) through `ir::parse`: a parsed graph must verify, and
//! must print to text that parses back to the same print (`docs/architecture.md`, "The
//! text IR parses back"). A panic, a mismatch, or memory out of proportion to the text is
//! a finding.
#![no_main]

use edgecc::ir::parse::{MissingConsts, ParseOptions, parse_with};
use edgecc::ir::print::print;
use libfuzzer_sys::fuzz_target;

const FILL: ParseOptions = ParseOptions {
    missing_consts: MissingConsts::Fill,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(g) = parse_with(text, FILL) else {
        return;
    };
    if let Err(e) = edgecc::ir::verify::verify(&g) {
        panic!("a parsed graph does not verify: {e}");
    }
    let printed = print(&g);
    let again = match parse_with(&printed, FILL) {
        Ok(g) => g,
        Err(e) => panic!("the printed graph does not parse: {e}\n{printed}"),
    };
    let reprinted = print(&again);
    assert_eq!(printed, reprinted, "print does not round-trip");
});
