//! Reading and writing tensors: `.npy` (written with `npyz`) and ONNX `TensorProto` `.pb` files,
//! the format of the ONNX test data.

use std::path::Path;

use npyz::WriterBuilder;
use onnx_protobuf::{Message, TensorProto};

use crate::Error;
use crate::ir::{DType, Data, Tensor};
use crate::onnx::{DataDir, tensor};

/// Reads a tensor from `.npy` or `.pb` (chosen by extension; anything else is tried as npy).
pub fn read_tensor(path: &Path) -> Result<Tensor, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let format = if path.extension().is_some_and(|e| e == "pb") {
        TensorFormat::Pb
    } else {
        TensorFormat::Npy
    };
    decode_tensor(&bytes, format).map_err(|e| match e {
        Error::Input(m) => Error::Input(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// The file formats [`decode_tensor`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorFormat {
    /// NumPy's `.npy`.
    Npy,
    /// A serialized ONNX `TensorProto` (the ONNX test-data `.pb` files); external data is
    /// refused, since the bytes have no folder.
    Pb,
}

/// Decodes a tensor file's bytes. Sizes in a header are checked against the data before
/// anything is allocated for them.
pub fn decode_tensor(bytes: &[u8], format: TensorFormat) -> Result<Tensor, Error> {
    match format {
        TensorFormat::Pb => {
            let t = TensorProto::parse_from_bytes(bytes)
                .map_err(|e| Error::Input(format!("not a TensorProto: {e}")))?;
            tensor::decode(&t, DataDir { base: None })
        }
        TensorFormat::Npy => read_npy(bytes).map_err(Error::Input),
    }
}

/// Reads a `.npy` file (format versions 1 to 3, C order, the dtypes below). Parsed here
/// rather than by npyz's reader, which allocates the header length and the shape's
/// element count a file states before checking them against the file (70 bytes could ask
/// for 4 GiB) and multiplies the dims unchecked.
fn read_npy(bytes: &[u8]) -> Result<Tensor, String> {
    let bad = |m: String| format!("not a .npy file: {m}");
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or_else(|| bad("it does not start with \\x93NUMPY".into()))?;
    let (len, header_at) = match rest {
        [1, _, a, b, ..] => (u16::from_le_bytes([*a, *b]) as usize, 10),
        [2 | 3, _, a, b, c, d, ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, 12),
        [v, ..] if !(1..=3).contains(v) => {
            return Err(bad(format!(
                "format version {v} is not supported (1, 2 and 3 are)"
            )));
        }
        _ => return Err(bad("the file ends inside the preamble".into())),
    };
    let rest = &bytes[header_at..];
    if len > rest.len() {
        return Err(bad(format!(
            "the header is {len} bytes long, but only {} bytes follow",
            rest.len()
        )));
    }
    let (header, data) = rest.split_at(len);
    let header = std::str::from_utf8(header).map_err(|_| bad("the header is not text".into()))?;
    let Lit::Dict(entries) = Literal::parse(header).map_err(|m| bad(format!("header: {m}")))?
    else {
        return Err(bad("the header is not a dict".into()));
    };
    // Python keeps the last of repeated keys.
    let get = |key: &str| {
        entries
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, Lit::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| bad(format!("the header has no '{key}'")))
    };
    let descr = match get("descr")? {
        Lit::Str(s) => s.as_str(),
        Lit::List => return Err("structured arrays are not supported".into()),
        _ => return Err(bad("'descr' is not a string".into())),
    };
    match get("fortran_order")? {
        Lit::Bool(false) => {}
        Lit::Bool(true) => {
            return Err(
                "Fortran-order arrays are not supported; save with np.ascontiguousarray".into(),
            );
        }
        _ => return Err(bad("'fortran_order' is not True or False".into())),
    }
    let Lit::Tuple(dims) = get("shape")? else {
        return Err(bad("'shape' is not a tuple".into()));
    };
    let shape = dims
        .iter()
        .map(|d| match d {
            Lit::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad(format!("'shape' {dims:?} is not a tuple of dimensions")))?;
    let n = crate::ir::checked_elements(&shape).ok_or_else(|| {
        format!(
            "shape {shape:?} has more than 2^{} elements",
            crate::ir::MAX_ELEMENTS.trailing_zeros()
        )
    })?;
    let (dtype, size) = match descr.trim_start_matches(['<', '|', '=']) {
        "f4" => (DType::F32, 4),
        "f8" => (DType::F64, 8),
        "i8" => (DType::I64, 8),
        "i4" => (DType::I32, 4),
        "i1" => (DType::I8, 1),
        "u1" => (DType::U8, 1),
        "b1" => (DType::Bool, 1),
        other => {
            return Err(format!(
                "dtype '{other}' is not supported (f4, f8, i8, i4, i1, u1, b1 are)"
            ));
        }
    };
    // Bytes past the data are ignored, as numpy does.
    let data = data.get(..n * size).ok_or_else(|| {
        format!(
            "shape {shape:?} needs {} bytes of {descr} data, the file has {}",
            n * size,
            data.len()
        )
    })?;
    fn le<const W: usize, T>(b: &[u8], f: fn([u8; W]) -> T) -> Vec<T> {
        b.chunks_exact(W)
            .map(|c| f(c.try_into().expect("exact chunk")))
            .collect()
    }
    let data = match dtype {
        DType::F32 => Data::F32(le(data, f32::from_le_bytes)),
        DType::F64 => Data::F64(le(data, f64::from_le_bytes)),
        DType::I64 => Data::I64(le(data, i64::from_le_bytes)),
        DType::I32 => Data::I32(le(data, i32::from_le_bytes)),
        DType::I8 => Data::I8(data.iter().map(|&b| b as i8).collect()),
        DType::U8 => Data::U8(data.to_vec()),
        _ => Data::Bool(
            data.iter()
                .map(|&b| match b {
                    0 | 1 => Ok(b == 1),
                    _ => Err(format!("invalid value for bool: {b}")),
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Tensor { dtype, shape, data })
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug)]
enum Lit {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    /// A list's items are parsed but never needed (a structured dtype is refused).
    List,
    Dict(Vec<(Lit, Lit)>),
}

/// A parser of [`Lit`]s: `ast.literal_eval` for what numpy writes in a header.
struct Literal<'a> {
    s: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Literal<'a> {
    /// Nesting deeper than this is refused (a structured dtype nests a few levels).
    const MAX_DEPTH: usize = 32;

    fn parse(s: &'a str) -> Result<Lit, String> {
        let mut p = Literal { s, at: 0, depth: 0 };
        let v = p.value()?;
        p.ws();
        if p.at != s.len() {
            return Err(format!("unexpected text at byte {}", p.at));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        let r = &self.s[self.at..];
        self.at += r.len() - r.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.s[self.at..].starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Lit, String> {
        self.ws();
        let r = &self.s[self.at..];
        let Some(c) = r.chars().next() else {
            return Err("the header ends early".into());
        };
        match c {
            '(' | '[' | '{' => {
                self.depth += 1;
                if self.depth > Self::MAX_DEPTH {
                    return Err(format!("nested deeper than {}", Self::MAX_DEPTH));
                }
                self.at += 1;
                let v = match c {
                    '(' => self.items(')').map(Lit::Tuple),
                    '[' => self.items(']').map(|_| Lit::List),
                    _ => self.dict(),
                };
                self.depth -= 1;
                v
            }
            '\'' | '"' => {
                let body = &r[1..];
                let mut out = String::new();
                let mut chars = body.char_indices();
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '\\' => match chars.next() {
                            Some((_, e)) => out.push(e),
                            None => break,
                        },
                        _ if ch == c => {
                            self.at += 1 + i + 1;
                            return Ok(Lit::Str(out));
                        }
                        _ => out.push(ch),
                    }
                }
                Err("a string is not closed".into())
            }
            _ => {
                let len = r
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-' || ch == '+'))
                    .unwrap_or(r.len());
                let word = &r[..len];
                self.at += len;
                match word {
                    "True" => Ok(Lit::Bool(true)),
                    "False" => Ok(Lit::Bool(false)),
                    "None" => Ok(Lit::None),
                    _ => word
                        // Python 2's long integers (`3L`) in old files.
                        .trim_end_matches(['L', 'l'])
                        .parse()
                        .map(Lit::Int)
                        .map_err(|_| format!("'{word}' is not a literal")),
                }
            }
        }
    }

    /// Comma-separated values up to `close` (a trailing comma allowed).
    fn items(&mut self, close: char) -> Result<Vec<Lit>, String> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(out);
            }
            out.push(self.value()?);
            if !self.eat(',') {
                return if self.eat(close) {
                    Ok(out)
                } else {
                    Err(format!("expected ',' or '{close}'"))
                };
            }
        }
    }

    fn dict(&mut self) -> Result<Lit, String> {
        let mut out = Vec::new();
        loop {
            if self.eat('}') {
                return Ok(Lit::Dict(out));
            }
            let k = self.value()?;
            if !self.eat(':') {
                return Err("expected ':' in a dict".into());
            }
            out.push((k, self.value()?));
            if !self.eat(',') {
                return if self.eat('}') {
                    Ok(Lit::Dict(out))
                } else {
                    Err("expected ',' or '}'".into())
                };
            }
        }
    }
}

/// Writes a tensor as `.npy`.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), Error> {
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let io = |e: std::io::Error| Error::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    macro_rules! put {
        ($v:expr) => {{
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut w)
                .begin_nd()
                .map_err(io)?;
            writer.extend($v.iter().copied()).map_err(io)?;
            writer.finish().map_err(io)?;
        }};
    }
    match &t.data {
        Data::F32(v) => put!(v),
        Data::F64(v) => put!(v),
        Data::I64(v) => put!(v),
        Data::I32(v) => put!(v),
        Data::I8(v) => put!(v),
        Data::U8(v) => put!(v),
        Data::Bool(v) => put!(v),
        _ => {
            return Err(Error::Input(format!(
                "cannot write {} tensors as .npy",
                t.dtype
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.as_bytes().to_vec();
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h);
        out.extend(data);
        out
    }

    #[test]
    fn npy_files_npyz_writes_read_back() {
        let dir = tempfile::tempdir().unwrap();
        for t in [
            Tensor::f32(vec![2, 3], vec![1.0, -2.5, 3.0, 0.0, f32::MAX, 7.0]),
            Tensor::i64(vec![3], vec![i64::MIN, 0, i64::MAX]),
            Tensor::bool(vec![1, 2], vec![true, false]),
            Tensor {
                dtype: DType::U8,
                shape: vec![0, 4],
                data: Data::U8(vec![]),
            },
            Tensor {
                dtype: DType::F64,
                shape: vec![],
                data: Data::F64(vec![0.25]),
            },
        ] {
            let p = dir.path().join("t.npy");
            write_npy(&p, &t).unwrap();
            let back = read_tensor(&p).unwrap();
            assert_eq!(
                (back.dtype, &back.shape, &back.data),
                (t.dtype, &t.shape, &t.data)
            );
        }
    }

    #[test]
    fn npy_headers_are_checked_against_the_file() {
        let read = |b: &[u8]| read_npy(b).unwrap_err();
        let ok = |h: &str, d: &[u8]| read_npy(&npy(h, d)).unwrap();
        let t = ok(
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
            &[1, 0, 0, 0, 2, 0, 0, 0, 9],
        );
        assert_eq!(t.data, Data::I32(vec![1, 2]));
        // Python 2 longs, double quotes, no trailing comma, repeated keys (the last wins).
        let t = ok(
            r#"{"descr": "|u1", "shape": (1L, 2L), "fortran_order": False, "shape": (2,)}"#,
            &[7, 8],
        );
        assert_eq!(t.shape, [2]);
        for (bytes, want) in [
            (
                b"\x93NUMPY\x01\x00\xff\xff{".to_vec(),
                "the header is 65535 bytes long, but only 1 bytes follow",
            ),
            (
                b"\x93NUMPY\x02\x00\xff\xff\xff\xf0{}".to_vec(),
                "the header is 4043309055 bytes long",
            ),
            (
                b"\x93NUMPY\x04\x00".to_vec(),
                "format version 4 is not supported",
            ),
            (b"\x93NUMP".to_vec(), "does not start with"),
            (
                npy(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                    &[],
                ),
                "shape [4294967296, 4294967296] has more than 2^40 elements",
            ),
            (
                npy(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824, 64), }",
                    &[0; 16],
                ),
                "needs 274877906944 bytes of <f4 data, the file has 16",
            ),
            (
                npy(
                    &format!(
                        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}0{}, }}",
                        "(".repeat(40),
                        ")".repeat(40)
                    ),
                    &[],
                ),
                "nested deeper than 32",
            ),
            (
                npy(
                    "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
                    &[0; 4],
                ),
                "Fortran-order",
            ),
            (
                npy(
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                    &[0; 4],
                ),
                "structured arrays",
            ),
            (
                npy(
                    "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
                    &[0; 4],
                ),
                "dtype '>f4' is not supported",
            ),
            (
                npy(
                    "{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }",
                    &[2],
                ),
                "invalid value for bool: 2",
            ),
            (
                npy(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
                    &[],
                ),
                "is not a tuple of dimensions",
            ),
            (
                npy("{'descr': '<f4', 'fortran_order': False, }", &[]),
                "the header has no 'shape'",
            ),
            (
                npy(
                    "{'descr': '<f4', 'shape': (1,) 'fortran_order': False}",
                    &[],
                ),
                "expected ',' or '}'",
            ),
        ] {
            let e = read(&bytes);
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
