//! Constant and run-time tensor values: a dtype, a static shape and typed element data.

use super::DType;

/// Element storage, one variant per family of representations.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    U64(Vec<u64>),
    U32(Vec<u32>),
    U16(Vec<u16>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
    Str(Vec<Vec<u8>>),
    C64(Vec<[f32; 2]>),
    C128(Vec<[f64; 2]>),
    /// Bit patterns of the types Rust has no native type for (f16, bf16, the float8 and
    /// float4/float6 formats, and the 4- and 2-bit integers), one element per entry. Sub-byte
    /// integers are stored as their raw two's-complement code.
    Codes(Vec<u16>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I16(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::U64(v) => v.len(),
            Data::U32(v) => v.len(),
            Data::U16(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::Str(v) => v.len(),
            Data::C64(v) => v.len(),
            Data::C128(v) => v.len(),
            Data::Codes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor with a static shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        Tensor {
            dtype: DType::F32,
            shape,
            data: Data::F32(v),
        }
    }

    pub fn i64(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        Tensor {
            dtype: DType::I64,
            shape,
            data: Data::I64(v),
        }
    }

    pub fn bool(shape: Vec<usize>, v: Vec<bool>) -> Tensor {
        Tensor {
            dtype: DType::Bool,
            shape,
            data: Data::Bool(v),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The f32 elements, if this is an f32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Integer elements widened to i64 (for shape-like inputs such as Reshape's shape).
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// Every numeric element as f64 (real part for complex, 1/0 for bool), decoding the
    /// small float formats. `None` for strings.
    pub fn to_f64s(&self) -> Option<Vec<f64>> {
        Some(match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U16(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
            Data::C64(v) => v.iter().map(|x| x[0] as f64).collect(),
            Data::C128(v) => v.iter().map(|x| x[0]).collect(),
            Data::Codes(v) => v.iter().map(|&c| decode_code(self.dtype, c)).collect(),
            Data::Str(_) => return None,
        })
    }

    /// Little-endian bytes of the element data, for the dtypes the lowered program carries.
    pub fn to_le_bytes(&self) -> Option<Vec<u8>> {
        Some(match &self.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
            Data::U8(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&x| x as u8).collect(),
            _ => return None,
        })
    }

    /// Builds a tensor of a program dtype from little-endian bytes (the inverse of
    /// [`Tensor::to_le_bytes`]).
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Option<Tensor> {
        let n: usize = shape.iter().product();
        if bytes.len() != n * dtype.bits() / 8 {
            return None;
        }
        let data = match dtype {
            DType::F32 => Data::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DType::I32 => Data::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DType::I64 => Data::I64(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DType::I8 => Data::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::U8 => Data::U8(bytes.to_vec()),
            DType::Bool => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
            _ => return None,
        };
        Some(Tensor { dtype, shape, data })
    }
}

/// Decodes one element code of the formats kept in [`Data::Codes`].
pub fn decode_code(dtype: DType, c: u16) -> f64 {
    match dtype {
        DType::F16 => decode_minifloat(c as u32, 5, 10, Flavor::Ieee),
        DType::BF16 => f32::from_bits((c as u32) << 16) as f64,
        DType::F8E4M3FN => decode_minifloat(c as u32, 4, 3, Flavor::Fn),
        DType::F8E4M3FNUZ => decode_minifloat(c as u32, 4, 3, Flavor::Fnuz),
        DType::F8E5M2 => decode_minifloat(c as u32, 5, 2, Flavor::Ieee),
        DType::F8E5M2FNUZ => decode_minifloat(c as u32, 5, 2, Flavor::Fnuz),
        DType::F4E2M1 => decode_minifloat(c as u32, 2, 1, Flavor::NoSpecials),
        DType::F6E2M3 => decode_minifloat(c as u32, 2, 3, Flavor::NoSpecials),
        DType::F6E3M2 => decode_minifloat(c as u32, 3, 2, Flavor::NoSpecials),
        DType::F8E8M0 => {
            if c == 0xff {
                f64::NAN
            } else {
                2f64.powi(c as i32 - 127)
            }
        }
        DType::U4 | DType::U2 => c as f64,
        DType::I4 => (((c as u8) << 4) as i8 >> 4) as f64,
        DType::I2 => (((c as u8) << 6) as i8 >> 6) as f64,
        _ => f64::NAN,
    }
}

/// How a small float format spends its special encodings.
#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    /// IEEE-like: the all-ones exponent is infinity/NaN.
    Ieee,
    /// "Finite": no infinities, only the all-ones exponent and mantissa is NaN (e4m3fn).
    Fn,
    /// "Finite, unsigned zero": no infinities, negative zero's code is the only NaN, and the
    /// exponent bias is one larger.
    Fnuz,
    /// No infinities and no NaN (float4 e2m1).
    NoSpecials,
}

fn decode_minifloat(code: u32, ebits: u32, mbits: u32, flavor: Flavor) -> f64 {
    let sign = (code >> (ebits + mbits)) & 1;
    let exp = (code >> mbits) & ((1 << ebits) - 1);
    let man = code & ((1 << mbits) - 1);
    let emax = (1 << ebits) - 1;
    let mut bias = (1i32 << (ebits - 1)) - 1;
    match flavor {
        Flavor::Ieee if exp == emax => {
            return if man == 0 {
                if sign == 1 {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            } else {
                f64::NAN
            };
        }
        Flavor::Fn if exp == emax && man == (1 << mbits) - 1 => return f64::NAN,
        Flavor::Fnuz => {
            if sign == 1 && exp == 0 && man == 0 {
                return f64::NAN;
            }
            bias += 1;
        }
        _ => {}
    }
    let frac = man as f64 / (1u32 << mbits) as f64;
    let mag = if exp == 0 {
        frac * 2f64.powi(1 - bias)
    } else {
        (1.0 + frac) * 2f64.powi(exp as i32 - bias)
    };
    if sign == 1 { -mag } else { mag }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minifloats_decode_known_values() {
        // f16 1.0 = 0x3c00, -2.0 = 0xc000, smallest subnormal 2^-24.
        assert_eq!(decode_code(DType::F16, 0x3c00), 1.0);
        assert_eq!(decode_code(DType::F16, 0xc000), -2.0);
        assert_eq!(decode_code(DType::F16, 0x0001), 2f64.powi(-24));
        assert!(decode_code(DType::F16, 0x7c00).is_infinite());
        // e4m3fn: 0x7e = 448 (max), 0x7f = NaN.
        assert_eq!(decode_code(DType::F8E4M3FN, 0x7e), 448.0);
        assert!(decode_code(DType::F8E4M3FN, 0x7f).is_nan());
        // e4m3fnuz: 0x80 = NaN, 0x7f = 240.
        assert!(decode_code(DType::F8E4M3FNUZ, 0x80).is_nan());
        assert_eq!(decode_code(DType::F8E4M3FNUZ, 0x7f), 240.0);
        // e5m2: 0x7b = 57344 (max), 0x7c = inf.
        assert_eq!(decode_code(DType::F8E5M2, 0x7b), 57344.0);
        // float4 e2m1: 0b0111 = 6.0, 0b0001 = 0.5.
        assert_eq!(decode_code(DType::F4E2M1, 0b0111), 6.0);
        assert_eq!(decode_code(DType::F4E2M1, 0b0001), 0.5);
        assert_eq!(decode_code(DType::I4, 0xf), -1.0);
        assert_eq!(decode_code(DType::F8E8M0, 127), 1.0);
    }
}
