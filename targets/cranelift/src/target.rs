//! Which machine code is generated for: a triple plus explicit ISA flags.
//!
//! Flags are always set one by one, never through Cranelift's CPU presets: the notes in
//! `/work/shared/cranelift-notes.md` show that `x86-64-v3` and the `znver*` presets leave
//! `has_avx` off, which silently turns every vector `fma` into four `fmaf` libcalls.
//!
//! Accepted spellings (`+feature` suffixes add flags, e.g. `x86_64+avx+fma`):
//! - `x86_64`: `x86_64-unknown-linux-gnu` with `has_sse3`, `has_ssse3`, `has_sse41`,
//!   `has_sse42` and `has_popcnt`. SSSE3 is required because a shuffle without it is a call to
//!   `__cranelift_x86_pshufb`, which no libc has; SSE4.1 gives `roundps`, `pmulld`, `pmin`.
//!   No AVX, so no FMA: GEMM uses `fmul` + `fadd`.
//! - `aarch64-neon` / `aarch64`: `aarch64-unknown-linux-gnu`; NEON and `fmla` are
//!   baseline, no optional flag is set. `aarch64-neon+dotprod` (`has_dotprod`, ARMv8.2
//!   cores such as Cortex-A55/A76) makes the integer kernels' dot products one `sdot`
//!   each; without it they use the widening `smull`/`saddlp` form, which every ARMv8
//!   core runs.
//! - A full triple via `target-lexicon` (`aarch64-unknown-linux-gnu`,
//!   `x86_64-unknown-linux-gnu`, ...). `aarch64-unknown-none` is mapped to
//!   `aarch64-unknown-none-elf`, because Cranelift can only emit objects for a triple
//!   with a binary format.
//! - [`Target::host`]: the host triple with every feature `cranelift_native` detects
//!   (on an AVX machine that includes `has_avx` and `has_fma`).

use std::str::FromStr;

use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use target_lexicon::{Architecture, BinaryFormat, OperatingSystem, Triple};

use crate::Error;

/// The architectures the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// A code generation target. Build one with [`str::parse`] or [`Target::host`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    triple: Triple,
    arch: Arch,
    /// Cranelift ISA flags enabled on top of the architecture's baseline, in order.
    flags: Vec<String>,
    /// Take the flags from the running CPU (`cranelift_native`) instead of `flags`.
    native: bool,
}

const X64_BASELINE: &[&str] = &[
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
];

impl Target {
    /// The machine this process runs on, with every ISA feature it has.
    pub fn host() -> Result<Target, Error> {
        let triple = Triple::host();
        let arch = arch_of(&triple)?;
        Ok(Target {
            triple,
            arch,
            flags: Vec::new(),
            native: true,
        })
    }

    pub fn triple(&self) -> &Triple {
        &self.triple
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The ISA flags this target enables explicitly (empty for [`Target::host`], whose
    /// flags come from CPU detection).
    pub fn flags(&self) -> &[String] {
        &self.flags
    }

    /// Whether this is [`Target::host`] (flags detected from the running CPU).
    pub fn is_host(&self) -> bool {
        self.native
    }

    /// The linker driver for shared objects on this target.
    pub fn linker(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "cc",
            Arch::Aarch64 => {
                if cfg!(target_arch = "aarch64") {
                    "cc"
                } else {
                    "aarch64-linux-gnu-gcc"
                }
            }
        }
    }

    /// Builds the Cranelift ISA. `pic` selects position-independent code (required for
    /// shared objects; the JIT needs it off).
    pub(crate) fn isa(&self, pic: bool) -> Result<OwnedTargetIsa, Error> {
        let mut fb = settings::builder();
        let set = |fb: &mut settings::Builder, k: &str, v: &str| {
            fb.set(k, v)
                .map_err(|e| Error::Codegen(format!("setting {k}={v}: {e}")))
        };
        set(&mut fb, "opt_level", "speed")?;
        set(&mut fb, "is_pic", if pic { "true" } else { "false" })?;
        // The verifier catches generator bugs before they become wrong code; it costs a
        // few percent of compile time, which is small next to the kernels themselves.
        set(&mut fb, "enable_verifier", "true")?;
        let flags = settings::Flags::new(fb);
        let mut ib = if self.native {
            cranelift_native::builder().map_err(|e| Error::Target(e.to_string()))?
        } else {
            isa::lookup(self.triple.clone())
                .map_err(|e| Error::Target(format!("{}: {e}", self.triple)))?
        };
        if !self.native {
            if self.arch == Arch::X86_64 {
                for f in X64_BASELINE {
                    ib.enable(f)
                        .map_err(|e| Error::Target(format!("{f}: {e}")))?;
                }
            }
            for f in &self.flags {
                ib.enable(f)
                    .map_err(|e| Error::Target(format!("unknown ISA flag `{f}`: {e}")))?;
            }
        }
        let isa = ib.finish(flags).map_err(|e| Error::Target(e.to_string()))?;
        Ok(isa)
    }
}

fn arch_of(triple: &Triple) -> Result<Arch, Error> {
    match triple.architecture {
        Architecture::X86_64 => Ok(Arch::X86_64),
        Architecture::Aarch64(_) => Ok(Arch::Aarch64),
        other => Err(Error::Target(format!(
            "architecture `{other}` of `{triple}` is not supported (x86_64 and aarch64 are)"
        ))),
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Target, Error> {
        let mut parts = s.split('+');
        let base = parts.next().unwrap_or_default().trim();
        let extra: Vec<String> = parts
            .map(|f| {
                let f = f.trim();
                if f.starts_with("has_") {
                    f.to_string()
                } else {
                    format!("has_{f}")
                }
            })
            .collect();
        let triple_str = match base {
            "x86_64" | "x64" => "x86_64-unknown-linux-gnu",
            "aarch64-neon" | "aarch64" | "arm64" => "aarch64-unknown-linux-gnu",
            "aarch64-unknown-none" => "aarch64-unknown-none-elf",
            "host" => {
                let mut t = Target::host()?;
                if !extra.is_empty() {
                    return Err(Error::Target("`host` takes no +features".into()));
                }
                t.flags.clear();
                return Ok(t);
            }
            other => other,
        };
        let mut triple = Triple::from_str(triple_str)
            .map_err(|e| Error::Target(format!("`{s}` is not a target triple: {e}")))?;
        if triple.operating_system == OperatingSystem::None_
            && triple.binary_format == BinaryFormat::Unknown
        {
            triple.binary_format = BinaryFormat::Elf;
        }
        if triple.binary_format != BinaryFormat::Elf
            && triple.binary_format != BinaryFormat::Unknown
        {
            return Err(Error::Target(format!(
                "`{triple}`: only ELF objects are supported"
            )));
        }
        let arch = arch_of(&triple)?;
        let target = Target {
            triple,
            arch,
            flags: extra,
            native: false,
        };
        // Reject unknown flags now rather than at the first compile.
        target.isa(true)?;
        Ok(target)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.native {
            return write!(f, "host ({})", self.triple);
        }
        write!(f, "{}", self.triple)?;
        for fl in &self.flags {
            write!(f, "+{}", fl.trim_start_matches("has_"))?;
        }
        Ok(())
    }
}
