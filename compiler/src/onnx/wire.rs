//! A check of the protobuf wire format before decoding: every length-delimited field, at
//! every level of the ONNX message tree, must fit in the message that holds it.
//!
//! The decoder (rust-protobuf) reads a length prefix and reserves memory from it before it
//! finds out the bytes are not there: up to 10 MB for `bytes` and packed fixed-width fields
//! and 80 MB (ten million `int64`s) for packed varints, once per lying field. A file of a
//! hundred bytes must not cost that, so lengths are compared with what is really there
//! first. The check allocates nothing; it visits each byte once per message level.

/// The ONNX messages with message-typed fields (onnx.proto, IR version 10), and `Leaf` for
/// the rest (their length-delimited fields are strings, bytes or packed numbers).
#[derive(Clone, Copy, Debug)]
enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    ValueInfo,
    Type,
    /// `TypeProto.Tensor` and `TypeProto.SparseTensor`: `shape` is field 2.
    TypeWithShape,
    /// `TypeProto.Sequence` and `TypeProto.Optional`: `elem_type` (1) is a `TypeProto`.
    TypeOfElem,
    /// `TypeProto.Map`: `value_type` (2) is a `TypeProto`.
    TypeMap,
    Shape,
    Training,
    Function,
    Annotation,
    Leaf,
}

/// The message type of `field` in a `m`, if it is a message.
fn child(m: Msg, field: u64) -> Option<Msg> {
    use Msg::*;
    Some(match (m, field) {
        (Model, 8) => Leaf,      // opset_import
        (Model, 7) => Graph,     // graph
        (Model, 14) => Leaf,     // metadata_props
        (Model, 20) => Training, // training_info
        (Model, 25) => Function, // functions
        (Graph, 1) => Node,
        (Graph, 5) => Tensor,
        (Graph, 15) => SparseTensor,
        (Graph, 11..=13) => ValueInfo, // input, output, value_info
        (Graph, 14) => Annotation,
        (Graph, 16) => Leaf,
        (Node, 5) => Attribute,
        (Node, 9) => Leaf,
        (Attribute, 5 | 10) => Tensor,
        (Attribute, 6 | 11) => Graph,
        (Attribute, 22 | 23) => SparseTensor,
        (Attribute, 14 | 15) => Type,
        (Tensor, 3 | 13 | 16) => Leaf, // segment, external_data, metadata_props
        (SparseTensor, 1 | 2) => Tensor,
        (ValueInfo, 2) => Type,
        (ValueInfo, 4) => Leaf,
        (Type, 1 | 8) => TypeWithShape,
        (Type, 4 | 9) => TypeOfElem,
        (Type, 5) => TypeMap,
        (TypeWithShape, 2) => Shape,
        (TypeOfElem, 1) | (TypeMap, 2) => Type,
        (Shape, 1) => Leaf, // dim
        (Training, 1 | 2) => Graph,
        (Training, 3 | 4) => Leaf,
        (Function, 7) => Node,
        (Function, 11) => Attribute,
        (Function, 9 | 14) => Leaf,
        (Function, 12) => ValueInfo,
        (Annotation, 2) => Leaf,
        _ => return None,
    })
}

/// The decoder refuses messages nested deeper than 100; past this the check stops
/// descending, since the decoder stops before reading them.
const MAX_DEPTH: usize = 128;

/// Checks `bytes`, a `ModelProto`. The error says what is wrong and at which offset.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    scan(bytes, 0, Msg::Model, 0)
}

fn varint(b: &[u8], pos: &mut usize, base: usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = b.get(*pos) else {
            return Err(format!("truncated varint at offset {}", base + *pos));
        };
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(format!("malformed varint at offset {}", base + *pos))
}

/// Scans the fields of one `m` in `b`, which starts at file offset `base`.
fn scan(b: &[u8], base: usize, m: Msg, depth: usize) -> Result<(), String> {
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos, base)?;
        let remaining = |pos: usize| (b.len() - pos) as u64;
        let skip = |pos: &mut usize, n: u64| {
            if n > remaining(*pos) {
                return Err(format!(
                    "truncated: field {} at offset {} needs {n} bytes, {} remain",
                    key >> 3,
                    base + *pos,
                    remaining(*pos)
                ));
            }
            *pos += n as usize;
            Ok(())
        };
        match key & 7 {
            0 => {
                varint(b, &mut pos, base)?;
            }
            1 => skip(&mut pos, 8)?,
            5 => skip(&mut pos, 4)?,
            2 => {
                let len = varint(b, &mut pos, base)?;
                let start = pos;
                skip(&mut pos, len)?;
                if let Some(c) = child(m, key >> 3).filter(|_| depth < MAX_DEPTH) {
                    scan(&b[start..pos], base + start, c, depth + 1)?;
                }
            }
            w => {
                return Err(format!(
                    "wire type {w} (field {}) at offset {} is not used by ONNX",
                    key >> 3,
                    base + pos
                ));
            }
        }
    }
    Ok(())
}
