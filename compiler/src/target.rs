//! The targets `--target` names: a Cranelift target (an object file, shared object or the
//! host JIT), or a Hexagon core (one C file for `clang --target=hexagon`).
//!
//! Hexagon names are edgecc's own (`hexagon`, `hexagon-v66` ... `hexagon-v73`), parsed
//! before anything else; every other name goes to target-lexicon through
//! [`edgecc_cranelift::Target`]. `--hvx` only means something for Hexagon, so it is
//! parsed here too and refused with any other target.

use std::fmt;

use edgecc_hexagon::Hvx;

use crate::Error;

/// A Hexagon core version: the `-m<cpu>` flag of clang. The list is what clang-19 accepts
/// with 128-byte HVX from v66 on (v66 is the baseline: every newer core runs its code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HexagonArch {
    V66,
    V67,
    V68,
    V69,
    V71,
    V73,
}

impl HexagonArch {
    /// Every version `--target hexagon-<v>` accepts, oldest first.
    pub const ALL: [HexagonArch; 6] = [
        HexagonArch::V66,
        HexagonArch::V67,
        HexagonArch::V68,
        HexagonArch::V69,
        HexagonArch::V71,
        HexagonArch::V73,
    ];

    /// The version as clang spells it after `-m` (`v66`).
    pub fn cpu(self) -> &'static str {
        match self {
            HexagonArch::V66 => "v66",
            HexagonArch::V67 => "v67",
            HexagonArch::V68 => "v68",
            HexagonArch::V69 => "v69",
            HexagonArch::V71 => "v71",
            HexagonArch::V73 => "v73",
        }
    }

    /// Whether qemu-hexagon can run code built for this version: Debian's qemu 7.2 knows
    /// only v66 and v67 ELF flags and refuses later ones ("unable to find CPU model").
    pub fn runs_under_qemu(self) -> bool {
        matches!(self, HexagonArch::V66 | HexagonArch::V67)
    }
}

/// A Hexagon target: the core version and whether the C uses HVX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hexagon {
    pub arch: HexagonArch,
    pub hvx: Hvx,
}

impl Hexagon {
    /// The flags clang needs to compile the emitted C for this target.
    pub fn clang_flags(&self) -> Vec<String> {
        let mut f = vec![
            "--target=hexagon".to_string(),
            format!("-m{}", self.arch.cpu()),
        ];
        if self.hvx == Hvx::B128 {
            f.extend(["-mhvx".to_string(), "-mhvx-length=128b".to_string()]);
        }
        f
    }

    /// The C file for `program`, with one error listing every kernel the Hexagon C does
    /// not cover.
    pub fn emit_c(&self, program: &edgecc_program::Program) -> Result<String, Error> {
        edgecc_hexagon::emit_c(program, &edgecc_hexagon::Options { hvx: self.hvx })
            .map_err(|e| Error::Target(format!("{}: {e}", self)))
    }
}

/// What `--target` (with `--hvx`) names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Cranelift(edgecc_cranelift::Target),
    Hexagon(Hexagon),
}

impl fmt::Display for Hexagon {
    /// `hexagon-v68+hvx128` or `hexagon-v68` (plain C): the name the header and manifest
    /// record, in the `+feature` style of `aarch64-neon+dotprod`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hexagon-{}", self.arch.cpu())?;
        if self.hvx == Hvx::B128 {
            f.write_str("+hvx128")?;
        }
        Ok(())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Cranelift(t) => t.fmt(f),
            Target::Hexagon(h) => h.fmt(f),
        }
    }
}

fn hexagon_names() -> String {
    let mut names = vec!["hexagon (= hexagon-v66)".to_string()];
    names.extend(
        HexagonArch::ALL
            .iter()
            .map(|a| format!("hexagon-{}", a.cpu())),
    );
    names.join(", ")
}

/// Parses `--hvx`: `off` or `128`. 64-byte HVX is refused: v68 and later
/// cores have only the 128-byte mode, and the Hexagon C is written for it.
pub fn parse_hvx(s: &str) -> Result<Hvx, Error> {
    match s {
        "off" => Ok(Hvx::Off),
        "128" => Ok(Hvx::B128),
        "64" => Err(Error::Target(
            "--hvx 64: only 128-byte HVX is supported (--hvx 128), or plain C (--hvx off)".into(),
        )),
        _ => Err(Error::Target(format!(
            "--hvx {s}: expected `128` (128-byte HVX) or `off` (plain C)"
        ))),
    }
}

/// Parses `--target` and `--hvx` (default 128 for Hexagon; an error for other targets).
pub fn parse(target: &str, hvx: Option<&str>) -> Result<Target, Error> {
    if let Some(rest) = target.strip_prefix("hexagon") {
        let arch = match rest {
            "" => Some(HexagonArch::V66),
            _ => rest
                .strip_prefix('-')
                .and_then(|v| HexagonArch::ALL.into_iter().find(|a| a.cpu() == v)),
        };
        let Some(arch) = arch else {
            return Err(Error::Target(format!(
                "unknown hexagon target `{target}`; expected one of: {}",
                hexagon_names()
            )));
        };
        let hvx = hvx.map(parse_hvx).transpose()?.unwrap_or(Hvx::B128);
        return Ok(Target::Hexagon(Hexagon { arch, hvx }));
    }
    if let Some(h) = hvx {
        return Err(Error::Target(format!(
            "--hvx {h} is for hexagon targets ({}), not {target}",
            hexagon_names()
        )));
    }
    target
        .parse::<edgecc_cranelift::Target>()
        .map(Target::Cranelift)
        .map_err(|e| Error::Target(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hexagon(t: &str, hvx: Option<&str>) -> Hexagon {
        match parse(t, hvx).unwrap() {
            Target::Hexagon(h) => h,
            other => panic!("{t}: parsed as {other}"),
        }
    }

    #[test]
    fn hexagon_names_parse_to_their_core_with_hvx_by_default() {
        let h = hexagon("hexagon", None);
        assert_eq!((h.arch, h.hvx), (HexagonArch::V66, Hvx::B128));
        assert_eq!(h.to_string(), "hexagon-v66+hvx128");
        for a in HexagonArch::ALL {
            let h = hexagon(&format!("hexagon-{}", a.cpu()), Some("off"));
            assert_eq!((h.arch, h.hvx), (a, Hvx::Off));
            assert_eq!(h.to_string(), format!("hexagon-{}", a.cpu()));
        }
        assert_eq!(
            hexagon("hexagon-v73", Some("128")).clang_flags(),
            ["--target=hexagon", "-mv73", "-mhvx", "-mhvx-length=128b"]
        );
        assert_eq!(
            hexagon("hexagon-v67", Some("off")).clang_flags(),
            ["--target=hexagon", "-mv67"]
        );
    }

    #[test]
    fn only_v66_and_v67_run_under_qemu() {
        let run: Vec<_> = HexagonArch::ALL
            .into_iter()
            .filter(|a| a.runs_under_qemu())
            .collect();
        assert_eq!(run, [HexagonArch::V66, HexagonArch::V67]);
    }

    #[test]
    fn cranelift_names_still_parse() {
        assert!(matches!(
            parse("x86_64", None).unwrap(),
            Target::Cranelift(_)
        ));
        assert!(matches!(
            parse("aarch64-neon+dotprod", None).unwrap(),
            Target::Cranelift(_)
        ));
    }

    #[test]
    fn bad_names_and_hvx_values_are_refused_clearly() {
        let e = parse("hexagon-v65", None).unwrap_err().to_string();
        assert!(
            e.contains("hexagon-v73") && e.contains("hexagon-v66"),
            "{e}"
        );
        let e = parse("hexagonv68", None).unwrap_err().to_string();
        assert!(e.contains("unknown hexagon target"), "{e}");
        let e = parse("hexagon", Some("64")).unwrap_err().to_string();
        assert!(e.contains("only 128-byte HVX"), "{e}");
        let e = parse("hexagon", Some("yes")).unwrap_err().to_string();
        assert!(e.contains("expected `128`"), "{e}");
        let e = parse("x86_64", Some("128")).unwrap_err().to_string();
        assert!(e.contains("for hexagon targets"), "{e}");
    }
}
