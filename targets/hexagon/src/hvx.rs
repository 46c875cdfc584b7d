//! int8 kernels in HVX intrinsics (128-byte vectors).

use edgecc_program::Kernel;

use crate::Error;

/// HVX declarations, after the common prelude.
pub(crate) const PRELUDE: &str = r#"
#if !defined(__HVX__) || __HVX_LENGTH__ != 128
#error "this file uses 128-byte HVX: compile with -mhvx -mhvx-length=128b (or emit it with --hvx off)"
#endif
#include <hexagon_types.h>
#include <hvx_hexagon_protos.h>
"#;

/// Emits `k` with HVX and returns true, or returns false for the plain-C fallback.
pub(crate) fn kernel(_s: &mut String, _k: &Kernel) -> Result<bool, Error> {
    Ok(false)
}
