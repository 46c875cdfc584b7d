//! Linking an object into a shared library with the system's C compiler driver.

use std::path::Path;
use std::process::Command;

use crate::{Error, Target};

/// Links `object` into the shared library `out` with `cc -shared` (x86_64) or
/// `aarch64-linux-gnu-gcc -shared` (aarch64 from another host). The object must have
/// been compiled with `pic: true`.
pub fn link_shared(object: &Path, out: &Path, target: &Target) -> Result<(), Error> {
    let tool = target.linker();
    let output = Command::new(tool)
        .arg("-shared")
        .arg("-o")
        .arg(out)
        .arg(object)
        .output()
        .map_err(|e| {
            Error::Link(format!(
                "cannot run `{tool}` (is it installed and on PATH?): {e}"
            ))
        })?;
    if !output.status.success() {
        return Err(Error::Link(format!(
            "`{tool} -shared` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}
