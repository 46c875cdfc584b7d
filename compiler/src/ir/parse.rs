//! Reads the text IR back into a [`Graph`]: the inverse of [`super::print`] and `Op`'s
//! `Display`, so pass filetests can be written as text and printed graphs round-trip.
//!
//! The format is line oriented, one statement per line, so a hand-written line scanner is
//! all it takes (a grammar crate would add a dependency and a second description of a
//! format whose authority is the printer):
//!
//! ```text
//! file    := { comment | blank } "graph" NAME "{" { stmt } "}"
//! stmt    := "input" NAME ":" TYPE
//!          | "const" NAME ":" TYPE [ "=" INIT ]
//!          | OUT { "," OUT } "=" OP [ "{" ATTR* "}" ] "(" [ NAME { "," NAME } ] ")" [ "#" NODE ]
//!          | "output" [ OUTNAME { "," OUTNAME } ]
//! OUT     := NAME ":" TYPE                     (checked against shape inference)
//! OUTNAME := NAME | MODELNAME "=" NAME          (a model output name that differs)
//! TYPE    := DTYPE "[" [ DIM { "," DIM } ] "]"    e.g. f32[2,8], i64[], bool[1,16]
//! INIT    := "[" NUM { "," NUM } "]"           all elements, row-major
//!          | "random(" SEED ")"                 see [`random_tensor`]
//!          | "zeros" | "splat(" NUM ")"
//! ATTR    := KEY "=" VALUE | FLAG              e.g. alpha=1.0 trans_b axes=[0,1] axes=all
//! ```
//!
//! Lines starting with `;` are comments (filetest headers live there); a node's `# NODE`
//! name runs to the end of the line and defaults to `n<index>`. Names are any run of
//! characters without whitespace, `,`, `(`, `)`, `[`, `]`, `{`, `}`, `=` or `#`, and
//! without a `:` that is followed by whitespace (`onnx::MatMul_3` and `/m/Add:0` are
//! names). Attributes the ONNX operator gives a default may be left out (`Gemm` is
//! `alpha=1.0 beta=1.0`, a window's strides and dilations are 1, its pads 0).

use std::collections::HashMap;

use super::{
    Act, AutoPad, Binary, Cmp, DType, Data, Equation, Graph, Logic, Op, PadMode, QBinaryAttrs,
    QBinaryOp, ReduceKind, Requant, Tensor, Unary, ValueId, WindowAttrs,
};
use crate::Error;

/// What to do with a `const` line that has no initializer (the printer writes the data
/// only for constants of at most 8 elements).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingConsts {
    /// An error: a filetest must say what its constants hold.
    #[default]
    Error,
    /// Zeros, for round trips of printed models whose weights the text does not hold.
    Fill,
}

/// How [`parse_with`] treats the text.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParseOptions {
    pub missing_consts: MissingConsts,
}

/// The most elements the constants of one text may generate (`random`, `zeros`, `splat`,
/// and [`MissingConsts::Fill`]) in all, 2^24: a line of text must not allocate gigabytes.
/// Literals hold their elements in the text.
pub const MAX_GENERATED: usize = 1 << 24;

/// Parses a graph in the text IR; constants must have initializers.
pub fn parse(text: &str) -> Result<Graph, Error> {
    parse_with(text, ParseOptions::default())
}

/// Parses a graph in the text IR.
pub fn parse_with(text: &str, opts: ParseOptions) -> Result<Graph, Error> {
    Parser {
        opts,
        generated: MAX_GENERATED,
        graph: None,
        names: HashMap::new(),
        outputs_seen: false,
        closed: false,
    }
    .run(text)
}

/// A deterministic tensor for `random(SEED)` initializers and the filetest harness's
/// inputs. The generator is SplitMix64 seeded with `seed`; element `i` takes the top 24
/// bits `u` of the i-th draw. Floats are `u / 2^23 - 1`, uniform on a 2^-23 grid in
/// [-1, 1); integers are `u mod 8 - 4` (signed) or `u mod 8` (unsigned), so small enough
/// to be indices of most dims; bools are `u` odd. Other dtypes are refused.
pub fn random_tensor(dtype: DType, shape: Vec<usize>, seed: u64) -> Result<Tensor, String> {
    let mut state = seed;
    let n: usize = shape.iter().product();
    let draws: Vec<u32> = (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as u32
        })
        .collect();
    let float = |u: u32| u as f64 / (1u32 << 23) as f64 - 1.0;
    let signed = |u: u32| (u % 8) as f64 - 4.0;
    let unsigned = |u: u32| (u % 8) as f64;
    let vals: Vec<f64> = match dtype {
        DType::F32 | DType::F64 => draws.iter().map(|&u| float(u)).collect(),
        DType::I64 | DType::I32 | DType::I16 | DType::I8 => {
            draws.iter().map(|&u| signed(u)).collect()
        }
        DType::U64 | DType::U32 | DType::U16 | DType::U8 => {
            draws.iter().map(|&u| unsigned(u)).collect()
        }
        DType::Bool => draws.iter().map(|&u| (u & 1) as f64).collect(),
        _ => return Err(format!("random initializers of {dtype} are not supported")),
    };
    tensor_from_f64s(dtype, shape, &vals)
}

/// A tensor of `dtype` from f64 element values (integers saturate, bools are `!= 0`).
fn tensor_from_f64s(dtype: DType, shape: Vec<usize>, v: &[f64]) -> Result<Tensor, String> {
    let data = match dtype {
        DType::F32 => Data::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F64 => Data::F64(v.to_vec()),
        DType::I64 => Data::I64(v.iter().map(|&x| x as i64).collect()),
        DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
        DType::I16 => Data::I16(v.iter().map(|&x| x as i16).collect()),
        DType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
        DType::U64 => Data::U64(v.iter().map(|&x| x as u64).collect()),
        DType::U32 => Data::U32(v.iter().map(|&x| x as u32).collect()),
        DType::U16 => Data::U16(v.iter().map(|&x| x as u16).collect()),
        DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
        DType::Bool => Data::Bool(v.iter().map(|&x| x != 0.0).collect()),
        DType::Complex64 => Data::C64(v.iter().map(|&x| [x as f32, 0.0]).collect()),
        DType::Complex128 => Data::C128(v.iter().map(|&x| [x, 0.0]).collect()),
        // The small float and sub-byte formats: only zero (code 0) is written here.
        DType::String => return Err("string constants have no text form".into()),
        _ if v.iter().all(|&x| x == 0.0) => Data::Codes(vec![0; v.len()]),
        _ => return Err(format!("only zero initializers are supported for {dtype}")),
    };
    Ok(Tensor { dtype, shape, data })
}

struct Parser {
    opts: ParseOptions,
    /// Elements still allowed in generated constants ([`MAX_GENERATED`]).
    generated: usize,
    graph: Option<Graph>,
    names: HashMap<String, ValueId>,
    outputs_seen: bool,
    closed: bool,
}

/// A parse error at a line: "line 3: expected a type such as f32[2,8], found 'f32(2)'".
fn err(line: usize, msg: impl Into<String>) -> Error {
    Error::Parse {
        line,
        msg: msg.into(),
    }
}

/// Whether `c` can be part of a name (see the module doc).
fn name_char(s: &str, i: usize, c: char) -> bool {
    if c.is_whitespace() || ",()[]{}=#".contains(c) {
        return false;
    }
    c != ':'
        || s[i + 1..]
            .chars()
            .next()
            .is_some_and(|n| !n.is_whitespace())
}

/// A cursor over one line.
struct Line<'a> {
    no: usize,
    s: &'a str,
    at: usize,
}

impl<'a> Line<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.at..]
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.at += r.len() - r.trim_start().len();
    }

    fn found(&self) -> String {
        let r = self.rest().trim();
        if r.is_empty() {
            "the end of the line".into()
        } else {
            let short: String = r.chars().take(24).collect();
            format!("'{short}'")
        }
    }

    fn expected(&self, what: &str) -> Error {
        err(self.no, format!("expected {what}, found {}", self.found()))
    }

    /// Consumes `tok` (after optional whitespace) if it is next.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(tok) {
            self.at += tok.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &str) -> Result<(), Error> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.expected(&format!("'{tok}'")))
        }
    }

    fn name(&mut self, what: &str) -> Result<&'a str, Error> {
        self.skip_ws();
        let r = self.rest();
        let len = r
            .char_indices()
            .find(|&(i, c)| !name_char(r, i, c))
            .map_or(r.len(), |(i, _)| i);
        if len == 0 {
            return Err(self.expected(what));
        }
        self.at += len;
        Ok(&r[..len])
    }

    /// A run of characters up to whitespace or one of `stop`.
    fn word(&mut self, stop: &str) -> &'a str {
        self.skip_ws();
        let r = self.rest();
        let len = r
            .find(|c: char| c.is_whitespace() || stop.contains(c))
            .unwrap_or(r.len());
        self.at += len;
        &r[..len]
    }

    fn end(&mut self) -> Result<(), Error> {
        self.skip_ws();
        if self.rest().is_empty() {
            Ok(())
        } else {
            Err(self.expected("the end of the line"))
        }
    }

    /// `f32[2,8]`.
    fn ty(&mut self) -> Result<(DType, Vec<usize>), Error> {
        let what = "a type such as f32[2,8]";
        let d = self.word("[");
        let dtype = DType::from_name(d).ok_or_else(|| {
            err(
                self.no,
                format!("expected {what}, found '{d}' (not a dtype)"),
            )
        })?;
        if !self.eat("[") {
            return Err(self.expected(what));
        }
        let body = self.word("]");
        self.expect("]")?;
        let dims = split_list(body)
            .map(|x| {
                x.parse::<usize>()
                    .map_err(|_| err(self.no, format!("'{x}' is not a dimension in {what}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if super::checked_elements(&dims).is_none() {
            return Err(err(
                self.no,
                format!(
                    "{d}{dims:?} has more than 2^{} elements",
                    super::MAX_ELEMENTS.trailing_zeros()
                ),
            ));
        }
        Ok((dtype, dims))
    }
}

/// The items of a comma-separated list body (empty for an empty body).
fn split_list(body: &str) -> impl Iterator<Item = &str> {
    body.split(',')
        .map(str::trim)
        .filter(move |_| !body.trim().is_empty())
}

impl Parser {
    fn run(mut self, text: &str) -> Result<Graph, Error> {
        let mut last = 0;
        for (i, raw) in text.lines().enumerate() {
            let no = i + 1;
            last = no;
            let s = raw.trim();
            if s.is_empty() || s.starts_with(';') {
                continue;
            }
            if self.closed {
                return Err(err(no, "text after the graph's closing '}'"));
            }
            let mut line = Line { no, s, at: 0 };
            if self.graph.is_none() {
                line.expect("graph")?;
                let name = line.word("{");
                line.expect("{")?;
                line.end()?;
                self.graph = Some(Graph::new(name));
                continue;
            }
            if s == "}" {
                self.closed = true;
                continue;
            }
            if self.outputs_seen {
                return Err(err(no, "expected '}' after the output line"));
            }
            if let Some(r) = s.strip_prefix("input ") {
                self.input(Line { no, s: r, at: 0 })?;
            } else if let Some(r) = s.strip_prefix("const ") {
                self.konst(Line { no, s: r, at: 0 })?;
            } else if s == "output" || s.starts_with("output ") {
                self.output(Line {
                    no,
                    s: &s[6..],
                    at: 0,
                })?;
            } else {
                self.node(line)?;
            }
        }
        let Some(g) = self.graph else {
            return Err(err(last.max(1), "expected 'graph NAME {'"));
        };
        if !self.closed {
            return Err(err(last, "expected '}' closing the graph"));
        }
        if !self.outputs_seen {
            return Err(err(last, "the graph has no 'output' line"));
        }
        Ok(g)
    }

    fn g(&mut self) -> &mut Graph {
        self.graph.as_mut().expect("graph line seen")
    }

    fn define(&mut self, no: usize, name: &str, v: ValueId) -> Result<(), Error> {
        if self.names.insert(name.to_string(), v).is_some() {
            return Err(err(no, format!("'{name}' is defined twice")));
        }
        Ok(())
    }

    fn lookup(&self, no: usize, name: &str) -> Result<ValueId, Error> {
        self.names.get(name).copied().ok_or_else(|| {
            err(
                no,
                format!("'{name}' is not defined (values are defined before they are used)"),
            )
        })
    }

    fn input(&mut self, mut l: Line) -> Result<(), Error> {
        let name = l.name("an input name")?;
        l.expect(":")?;
        let (dtype, shape) = l.ty()?;
        l.end()?;
        let v = self.g().add_input(name, dtype, shape);
        self.g().inputs.push(v);
        self.define(l.no, name, v)
    }

    fn konst(&mut self, mut l: Line) -> Result<(), Error> {
        let name = l.name("a constant name")?;
        l.expect(":")?;
        let (dtype, shape) = l.ty()?;
        let n: usize = shape.iter().product();
        let t = if l.eat("=") {
            let t = init(&mut l, dtype, shape, &mut self.generated)?;
            l.end()?;
            t
        } else {
            l.end()?;
            if self.opts.missing_consts == MissingConsts::Error {
                return Err(err(
                    l.no,
                    format!(
                        "constant '{name}' has no initializer (write `= [..]`, `= random(SEED)`, `= zeros` or `= splat(V)`)"
                    ),
                ));
            }
            generate(&mut self.generated, n, l.no)?;
            tensor_from_f64s(dtype, shape, &vec![0.0; n]).map_err(|m| err(l.no, m))?
        };
        let v = self.g().add_const(name, t);
        self.define(l.no, name, v)
    }

    fn output(&mut self, mut l: Line) -> Result<(), Error> {
        let mut outs = Vec::new();
        let mut model_names = Vec::new();
        let mut renamed = false;
        l.skip_ws();
        while !l.rest().is_empty() {
            let first = l.name("an output name")?;
            let value = if l.eat("=") {
                renamed = true;
                l.name("the value a model output names")?
            } else {
                first
            };
            outs.push(self.lookup(l.no, value)?);
            model_names.push(first.to_string());
            if !l.eat(",") {
                break;
            }
        }
        l.end()?;
        let g = self.g();
        g.outputs = outs;
        if renamed {
            g.output_names = model_names;
        }
        self.outputs_seen = true;
        Ok(())
    }

    fn node(&mut self, mut l: Line) -> Result<(), Error> {
        let mut outs = Vec::new();
        loop {
            let name = l.name("a node output name")?;
            l.expect(":")?;
            let ty = l.ty()?;
            outs.push((name, ty));
            if !l.eat(",") {
                break;
            }
        }
        l.expect("=")?;
        let op_name = l.name("an op name")?;
        let attrs = if l.eat("{") {
            let body = l.word("}");
            let mut body = body.to_string();
            // Attribute values never contain '}' but may be separated by spaces.
            while !l.eat("}") {
                if l.rest().is_empty() {
                    return Err(l.expected("'}' closing the attributes"));
                }
                body.push(' ');
                body.push_str(l.word("}"));
            }
            body
        } else {
            String::new()
        };
        let op = parse_op(l.no, op_name, &attrs)?;
        l.expect("(")?;
        let mut inputs = Vec::new();
        if !l.eat(")") {
            loop {
                let n = l.name("an input name")?;
                inputs.push(self.lookup(l.no, n)?);
                if l.eat(")") {
                    break;
                }
                l.expect(",")?;
            }
        }
        let node_name = if l.eat("#") {
            l.rest().trim().to_string()
        } else {
            l.end()?;
            format!("n{}", self.g().node_count())
        };
        if node_name.is_empty() {
            return Err(l.expected("a node name after '#'"));
        }
        let (_, values) = self
            .g()
            .add_node(node_name.as_str(), op, inputs)
            .map_err(|e| err(l.no, e.to_string()))?;
        if values.len() != outs.len() {
            return Err(err(
                l.no,
                format!(
                    "{op_name} has {} output(s) here, the text names {}",
                    values.len(),
                    outs.len()
                ),
            ));
        }
        for (&v, (name, (dtype, shape))) in values.iter().zip(&outs) {
            let value = self.g().value_mut(v);
            if value.dtype != *dtype || value.shape != *shape {
                let want = format!("{}{:?}", value.dtype, value.shape).replace(' ', "");
                return Err(err(
                    l.no,
                    format!(
                        "'{name}' is written as {dtype}{}, shape inference says {want}",
                        format!("{shape:?}").replace(' ', "")
                    ),
                ));
            }
            value.name = name.to_string();
            self.define(l.no, name, v)?;
        }
        Ok(())
    }
}

/// The initializer after `=`.
/// Takes `n` elements from the budget of generated constants.
fn generate(budget: &mut usize, n: usize, no: usize) -> Result<(), Error> {
    *budget = budget.checked_sub(n).ok_or_else(|| {
        err(
            no,
            format!(
                "generated constants hold more than 2^{} elements in all; write fewer or smaller",
                MAX_GENERATED.trailing_zeros()
            ),
        )
    })?;
    Ok(())
}

fn init(
    l: &mut Line,
    dtype: DType,
    shape: Vec<usize>,
    budget: &mut usize,
) -> Result<Tensor, Error> {
    let n: usize = shape.iter().product();
    let no = l.no;
    let t = if l.eat("[") {
        let body = l.word("]");
        l.expect("]")?;
        let vals = split_list(body)
            .map(|x| number(x).ok_or_else(|| err(no, format!("'{x}' is not a number"))))
            .collect::<Result<Vec<_>, _>>()?;
        if vals.len() != n {
            return Err(err(
                no,
                format!(
                    "the literal has {} elements, {dtype}{:?} needs {n}",
                    vals.len(),
                    shape
                ),
            ));
        }
        if let Some(exact) = exact_literal(body, dtype, &shape) {
            return Ok(exact);
        }
        tensor_from_f64s(dtype, shape, &vals)
    } else if l.eat("random(") {
        let s = l.word(")");
        l.expect(")")?;
        let seed = s
            .parse::<u64>()
            .map_err(|_| err(no, format!("'{s}' is not a seed (an unsigned integer)")))?;
        generate(budget, n, no)?;
        random_tensor(dtype, shape, seed)
    } else if l.eat("splat(") {
        let s = l.word(")");
        l.expect(")")?;
        let v = number(s).ok_or_else(|| err(no, format!("'{s}' is not a number")))?;
        generate(budget, n, no)?;
        if dtype == DType::F32 {
            // Straight to f32, as literals (see `exact_literal`).
            let v: f32 = s
                .parse()
                .map_err(|_| err(no, format!("'{s}' is not an f32")))?;
            return Ok(Tensor::f32(shape, vec![v; n]));
        }
        tensor_from_f64s(dtype, shape, &vec![v; n])
    } else if l.eat("zeros") {
        generate(budget, n, no)?;
        tensor_from_f64s(dtype, shape, &vec![0.0; n])
    } else {
        return Err(l.expected("an initializer: [..], random(SEED), zeros or splat(V)"));
    };
    t.map_err(|m| err(no, m))
}

/// Literals parsed straight into their type where going through f64 could change them:
/// i64 past 2^53, and f32 (decimal → f64 → f32 can round twice; the printer's f32 values
/// are exact in f64, so both paths agree on printed text).
fn exact_literal(body: &str, dtype: DType, shape: &[usize]) -> Option<Tensor> {
    match dtype {
        DType::I64 => {
            let v: Option<Vec<i64>> = split_list(body).map(|x| x.parse().ok()).collect();
            Some(Tensor::i64(shape.to_vec(), v?))
        }
        DType::F32 => {
            let v: Option<Vec<f32>> = split_list(body).map(|x| x.parse().ok()).collect();
            Some(Tensor::f32(shape.to_vec(), v?))
        }
        _ => None,
    }
}

/// A number as the printer writes it (`1`, `-0.5`, `1e-5`, `inf`, `-inf`, `NaN`).
fn number(s: &str) -> Option<f64> {
    match s {
        "true" => Some(1.0),
        "false" => Some(0.0),
        _ => s.parse::<f64>().ok(),
    }
}

/// Attributes of one op: `key=value` items and bare flags, each consumed once.
struct Attrs<'a> {
    no: usize,
    op: &'a str,
    items: Vec<(&'a str, Option<&'a str>, bool)>,
}

impl<'a> Attrs<'a> {
    fn new(no: usize, op: &'a str, body: &'a str) -> Result<Self, Error> {
        let mut items: Vec<(&str, Option<&str>, bool)> = Vec::new();
        for item in body.split_whitespace() {
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            if items.iter().any(|(key, ..)| *key == k) {
                return Err(err(no, format!("{op}: attribute '{k}' is given twice")));
            }
            items.push((k, v, false));
        }
        Ok(Attrs { no, op, items })
    }

    fn fail(&self, msg: String) -> Error {
        err(self.no, format!("{}: {msg}", self.op))
    }

    /// The raw value of `key`, if present.
    fn raw(&mut self, key: &str) -> Result<Option<&'a str>, Error> {
        let Some(item) = self.items.iter_mut().find(|(k, ..)| *k == key) else {
            return Ok(None);
        };
        item.2 = true;
        match item.1 {
            Some(v) => Ok(Some(v)),
            None => Err(err(
                self.no,
                format!("{}: attribute '{key}' needs a value ({key}=...)", self.op),
            )),
        }
    }

    fn flag(&mut self, key: &str) -> Result<bool, Error> {
        let Some(item) = self.items.iter_mut().find(|(k, ..)| *k == key) else {
            return Ok(false);
        };
        item.2 = true;
        match item.1 {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(err(
                self.no,
                format!("{}: flag '{key}' takes no value, found '{v}'", self.op),
            )),
        }
    }

    fn scalar<T: std::str::FromStr>(&mut self, key: &str, what: &str) -> Result<Option<T>, Error> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) => v
                .parse::<T>()
                .map(Some)
                .map_err(|_| self.fail(format!("{key}={v}: expected {what}"))),
        }
    }

    fn req<T: std::str::FromStr>(&mut self, key: &str, what: &str) -> Result<T, Error> {
        self.scalar(key, what)?
            .ok_or_else(|| self.fail(format!("missing attribute {key}=<{what}>")))
    }

    fn list<T: std::str::FromStr>(
        &mut self,
        key: &str,
        what: &str,
    ) -> Result<Option<Vec<T>>, Error> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        let body = v
            .strip_prefix('[')
            .and_then(|b| b.strip_suffix(']'))
            .ok_or_else(|| self.fail(format!("{key}={v}: expected a list [{what},...]")))?;
        split_list(body)
            .map(|x| {
                x.parse::<T>()
                    .map_err(|_| self.fail(format!("{key}: '{x}' is not {what}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn req_list<T: std::str::FromStr>(&mut self, key: &str, what: &str) -> Result<Vec<T>, Error> {
        self.list(key, what)?
            .ok_or_else(|| self.fail(format!("missing attribute {key}=[..]")))
    }

    /// Errors on any attribute the op did not take.
    /// The requantization of a QGemm/QConv (`to=u8 shift=.. zero_point=.. lo=.. hi=..`),
    /// absent for int32 results.
    fn requant(&mut self) -> Result<Option<Requant>, Error> {
        let Some(to) = self.raw("to")? else {
            return Ok(None);
        };
        let to = DType::from_name(to).ok_or_else(|| self.fail(format!("to={to}: not a dtype")))?;
        let mut need = |key: &str| -> Result<i64, Error> {
            self.scalar(key, INT)?
                .ok_or_else(|| self.fail(format!("missing attribute {key}")))
        };
        let (shift, zero_point, lo, hi) = (
            need("shift")?,
            need("zero_point")?,
            need("lo")?,
            need("hi")?,
        );
        let int = |v: i64| i32::try_from(v).ok();
        match (u32::try_from(shift).ok(), int(zero_point), int(lo), int(hi)) {
            (Some(shift), Some(zero_point), Some(lo), Some(hi)) => Ok(Some(Requant {
                to,
                shift,
                zero_point,
                lo,
                hi,
            })),
            _ => Err(self.fail("requantization parameters out of range".into())),
        }
    }

    /// The parameters of a QAdd (`ma=.. mb=..`) or QMul (`m=..`), then `a_zero=.. b_zero=..
    /// shift=.. to=<dtype> zero_point=.. lo=.. hi=..`, every one required.
    fn qbinary(&mut self, add: bool) -> Result<QBinaryAttrs, Error> {
        let mut need = |key: &str| -> Result<i64, Error> {
            self.scalar(key, INT)?
                .ok_or_else(|| self.fail(format!("missing attribute {key}")))
        };
        let i32_of = |v: i64| i32::try_from(v).ok();
        let op = if add {
            let (ma, mb) = (need("ma")?, need("mb")?);
            i32_of(ma)
                .zip(i32_of(mb))
                .map(|(ma, mb)| QBinaryOp::Add { ma, mb })
        } else {
            i32_of(need("m")?).map(|m| QBinaryOp::Mul { m })
        };
        let (a_zero, b_zero, shift) = (need("a_zero")?, need("b_zero")?, need("shift")?);
        let (zero_point, lo, hi) = (need("zero_point")?, need("lo")?, need("hi")?);
        let to = self
            .raw("to")?
            .ok_or_else(|| self.fail("missing attribute to=<dtype>".into()))?;
        let to = DType::from_name(to).ok_or_else(|| self.fail(format!("to={to}: not a dtype")))?;
        let int = |v: i64| i32::try_from(v).ok();
        match (
            op,
            int(a_zero),
            int(b_zero),
            u32::try_from(shift).ok(),
            int(zero_point),
            int(lo),
            int(hi),
        ) {
            (
                Some(op),
                Some(a_zero),
                Some(b_zero),
                Some(shift),
                Some(zero_point),
                Some(lo),
                Some(hi),
            ) => Ok(QBinaryAttrs {
                op,
                a_zero,
                b_zero,
                shift,
                to,
                zero_point,
                lo,
                hi,
            }),
            _ => Err(self.fail("quantized Add/Mul parameters out of range".into())),
        }
    }

    fn finish(self) -> Result<(), Error> {
        match self.items.iter().find(|(_, _, used)| !used) {
            None => Ok(()),
            Some((k, ..)) => Err(err(
                self.no,
                format!("{}: unknown attribute '{k}'", self.op),
            )),
        }
    }

    fn window(&mut self) -> Result<WindowAttrs, Error> {
        let kernel: Vec<usize> = self.req_list("kernel", "a size")?;
        let r = kernel.len();
        let strides = self.list("strides", "a size")?.unwrap_or(vec![1; r]);
        let dilations = self.list("dilations", "a size")?.unwrap_or(vec![1; r]);
        let pads = self.list("pads", "a size")?.unwrap_or(vec![0; 2 * r]);
        if strides.len() != r || dilations.len() != r || pads.len() != 2 * r {
            return Err(self.fail(format!(
                "a window of rank {r} needs {r} strides and dilations and {} pads",
                2 * r
            )));
        }
        let auto_pad = match self.raw("auto_pad")? {
            None => AutoPad::NotSet,
            Some("same_upper") => AutoPad::SameUpper,
            Some("same_lower") => AutoPad::SameLower,
            Some("valid") => AutoPad::Valid,
            Some(v) => {
                return Err(self.fail(format!(
                    "auto_pad={v}: expected same_upper, same_lower or valid"
                )));
            }
        };
        let ceil_mode = self.flag("ceil_mode")?;
        Ok(WindowAttrs {
            kernel,
            strides,
            dilations,
            pads,
            auto_pad,
            ceil_mode,
        })
    }
}

const INT: &str = "an integer";
const FLOAT: &str = "a number";
const SIZE: &str = "a size";

/// An op from its name and attribute text (the inverse of `Op`'s `Display`).
fn parse_op(no: usize, name: &str, body: &str) -> Result<Op, Error> {
    let mut a = Attrs::new(no, name, body)?;
    let simple = match name {
        "Relu" => Some(Op::Unary(Unary::Relu)),
        "Sigmoid" => Some(Op::Unary(Unary::Sigmoid)),
        "Tanh" => Some(Op::Unary(Unary::Tanh)),
        "Exp" => Some(Op::Unary(Unary::Exp)),
        "Neg" => Some(Op::Unary(Unary::Neg)),
        "Abs" => Some(Op::Unary(Unary::Abs)),
        "Sqrt" => Some(Op::Unary(Unary::Sqrt)),
        "Reciprocal" => Some(Op::Unary(Unary::Reciprocal)),
        "Erf" => Some(Op::Unary(Unary::Erf)),
        "Log" => Some(Op::Unary(Unary::Log)),
        "Add" => Some(Op::Binary(Binary::Add)),
        "Sub" => Some(Op::Binary(Binary::Sub)),
        "Mul" => Some(Op::Binary(Binary::Mul)),
        "Div" => Some(Op::Binary(Binary::Div)),
        "Max" => Some(Op::Binary(Binary::Max)),
        "Min" => Some(Op::Binary(Binary::Min)),
        "Pow" => Some(Op::Binary(Binary::Pow)),
        "Equal" => Some(Op::Compare(Cmp::Equal)),
        "Less" => Some(Op::Compare(Cmp::Less)),
        "LessOrEqual" => Some(Op::Compare(Cmp::LessOrEqual)),
        "Greater" => Some(Op::Compare(Cmp::Greater)),
        "GreaterOrEqual" => Some(Op::Compare(Cmp::GreaterOrEqual)),
        "And" => Some(Op::Logic(Logic::And)),
        "Or" => Some(Op::Logic(Logic::Or)),
        "Xor" => Some(Op::Logic(Logic::Xor)),
        "Not" => Some(Op::Not),
        "Where" => Some(Op::Where),
        "MatMul" => Some(Op::MatMul),
        "MatMulInteger" => Some(Op::MatMulInteger),
        "DynamicQuantizeLinear" => Some(Op::DynamicQuantizeLinear),
        "GlobalAveragePool" => Some(Op::GlobalAveragePool),
        "Identity" => Some(Op::Identity),
        _ => None,
    };
    let op = match (simple, name) {
        (Some(op), _) => op,
        (None, "Clip") => Op::Clip {
            min: a.scalar("min", FLOAT)?.unwrap_or(f32::NEG_INFINITY),
            max: a.scalar("max", FLOAT)?.unwrap_or(f32::INFINITY),
        },
        (None, "Gemm") => Op::Gemm {
            alpha: a.scalar("alpha", FLOAT)?.unwrap_or(1.0),
            beta: a.scalar("beta", FLOAT)?.unwrap_or(1.0),
            trans_a: a.flag("trans_a")?,
            trans_b: a.flag("trans_b")?,
        },
        (None, "Conv") => Op::Conv {
            window: a.window()?,
            group: a.scalar("group", SIZE)?.unwrap_or(1),
        },
        (None, "ConvInteger") => Op::ConvInteger {
            window: a.window()?,
            group: a.scalar("group", SIZE)?.unwrap_or(1),
        },
        (None, "FusedConv") => Op::FusedConv {
            window: a.window()?,
            group: a.scalar("group", SIZE)?.unwrap_or(1),
            bias: a.flag("bias")?,
            residual: a.flag("residual")?,
            act: a
                .scalar("act", "an activation (relu, clip(LO,HI), gelu, ...)")?
                .unwrap_or(Act::None),
        },
        (None, "MaxPool") => Op::MaxPool {
            window: a.window()?,
        },
        (None, "AveragePool") => Op::AveragePool {
            window: a.window()?,
            count_include_pad: a
                .scalar("count_include_pad", "true or false")?
                .unwrap_or(false),
        },
        (None, "BatchNormalization") => Op::BatchNorm {
            epsilon: a.scalar("epsilon", FLOAT)?.unwrap_or(1e-5),
        },
        (None, "Flatten") => Op::Flatten {
            axis: a.scalar("axis", INT)?.unwrap_or(1),
        },
        (None, "Reshape") => Op::Reshape {
            shape: a.req_list("shape", INT)?,
            allowzero: a.flag("allowzero")?,
        },
        (None, "Transpose") => Op::Transpose {
            perm: a.req_list("perm", SIZE)?,
        },
        (None, "Concat") => Op::Concat {
            axis: a.req("axis", INT)?,
        },
        (None, "Softmax") => Op::Softmax {
            axis: a.scalar("axis", INT)?.unwrap_or(-1),
            coerce_2d: a.flag("coerce_2d")?,
        },
        (None, "FusedMatMul") => Op::FusedMatMul {
            alpha: a.scalar("alpha", FLOAT)?.unwrap_or(1.0),
            trans_a: a.flag("trans_a")?,
            trans_b: a.flag("trans_b")?,
            bias: a.flag("bias")?,
            residual: a.flag("residual")?,
            act: a
                .scalar("act", "an activation (relu, clip(LO,HI), gelu, ...)")?
                .unwrap_or(Act::None),
        },
        (None, "HardSigmoid") => Op::HardSigmoid {
            alpha: a.scalar("alpha", FLOAT)?.unwrap_or(0.2),
            beta: a.scalar("beta", FLOAT)?.unwrap_or(0.5),
        },
        (None, "HardSwish") => Op::HardSwish,
        (None, "AttentionSoftmax") => Op::AttentionSoftmax {
            scale: a.scalar("scale", FLOAT)?.unwrap_or(1.0),
        },
        (None, "Gelu") => Op::Gelu {
            tanh: a.flag("tanh")?,
        },
        (None, "LayerNormalization") => Op::LayerNorm {
            axis: a.scalar("axis", INT)?.unwrap_or(-1),
            epsilon: a.scalar("epsilon", FLOAT)?.unwrap_or(1e-5),
            stats: a.flag("stats")?,
        },
        (None, "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd") => {
            let kind = match name {
                "ReduceSum" => ReduceKind::Sum,
                "ReduceMean" => ReduceKind::Mean,
                "ReduceMax" => ReduceKind::Max,
                "ReduceMin" => ReduceKind::Min,
                _ => ReduceKind::Prod,
            };
            let axes = if a
                .items
                .iter()
                .any(|(k, v, _)| *k == "axes" && *v == Some("all"))
            {
                a.raw("axes")?;
                None
            } else {
                Some(a.req_list("axes", INT)?)
            };
            Op::Reduce {
                kind,
                axes,
                keepdims: a.flag("keepdims")?,
            }
        }
        (None, "Cast") => {
            let to = a
                .raw("to")?
                .ok_or_else(|| a.fail("missing attribute to=<dtype>".into()))?;
            Op::Cast {
                to: DType::from_name(to).ok_or_else(|| a.fail(format!("to={to}: not a dtype")))?,
            }
        }
        (None, "QuantizeLinear") => {
            let to = a
                .raw("to")?
                .ok_or_else(|| a.fail("missing attribute to=<dtype>".into()))?;
            Op::QuantizeLinear {
                axis: a.scalar("axis", INT)?.unwrap_or(1),
                to: DType::from_name(to).ok_or_else(|| a.fail(format!("to={to}: not a dtype")))?,
            }
        }
        (None, "DequantizeLinear") => Op::DequantizeLinear {
            axis: a.scalar("axis", INT)?.unwrap_or(1),
        },
        (None, "QGemm") => Op::QGemm {
            requant: a.requant()?,
        },
        (None, "QConv") => Op::QConv {
            window: a.window()?,
            group: a.scalar("group", SIZE)?.unwrap_or(1),
            requant: a.requant()?,
        },
        (None, "QAdd") => Op::QBinary(a.qbinary(true)?),
        (None, "QMul") => Op::QBinary(a.qbinary(false)?),
        (None, "Shape") => Op::Shape {
            start: a.scalar("start", INT)?.unwrap_or(0),
            end: a.scalar("end", INT)?,
        },
        (None, "Gather") => Op::Gather {
            axis: a.scalar("axis", INT)?.unwrap_or(0),
        },
        (None, "GatherElements") => Op::GatherElements {
            axis: a.scalar("axis", INT)?.unwrap_or(0),
        },
        (None, "GatherND") => Op::GatherND {
            batch_dims: a.scalar("batch_dims", SIZE)?.unwrap_or(0),
        },
        (None, "Slice") => {
            let starts: Vec<i64> = a.req_list("starts", INT)?;
            let ends: Vec<i64> = a.req_list("ends", INT)?;
            let n = starts.len() as i64;
            Op::Slice {
                axes: a.list("axes", INT)?.unwrap_or_else(|| (0..n).collect()),
                steps: a.list("steps", INT)?.unwrap_or_else(|| vec![1; n as usize]),
                starts,
                ends,
            }
        }
        (None, "Unsqueeze") => Op::Unsqueeze {
            axes: a.req_list("axes", INT)?,
        },
        (None, "Squeeze") => Op::Squeeze {
            axes: a.list("axes", INT)?,
        },
        (None, "Expand") => Op::Expand {
            shape: a.req_list("shape", INT)?,
        },
        (None, "Split") => Op::Split {
            axis: a.scalar("axis", INT)?.unwrap_or(0),
            sizes: a.req_list("sizes", SIZE)?,
        },
        (None, "Tile") => Op::Tile {
            repeats: a.req_list("repeats", SIZE)?,
        },
        (None, "Pad") => Op::Pad {
            pads: a.req_list("pads", INT)?,
            mode: match a.raw("mode")? {
                None | Some("Constant") => PadMode::Constant,
                Some("Reflect") => PadMode::Reflect,
                Some("Edge") => PadMode::Edge,
                Some("Wrap") => PadMode::Wrap,
                Some(m) => {
                    return Err(a.fail(format!(
                        "mode={m}: expected Constant, Reflect, Edge or Wrap"
                    )));
                }
            },
            value: a.scalar("value", FLOAT)?.unwrap_or(0.0),
        },
        (None, "Einsum") => {
            let eq = a
                .raw("equation")?
                .ok_or_else(|| a.fail("missing attribute equation=<ab,bc->ac>".into()))?;
            Op::Einsum(Equation::parse(eq).map_err(|m| a.fail(m))?)
        }
        (None, "CumSum") => Op::CumSum {
            axis: a.req("axis", INT)?,
            exclusive: a.flag("exclusive")?,
            reverse: a.flag("reverse")?,
        },
        (None, _) => return Err(err(no, format!("unknown op '{name}'"))),
    };
    a.finish()?;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::print::print;

    fn round_trip(text: &str) {
        let g = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(print(&g), text);
    }

    fn round_trip_filled(text: &str) {
        let fill = ParseOptions {
            missing_consts: MissingConsts::Fill,
        };
        let g = parse_with(text, fill).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(print(&g), text);
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("parsed:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    /// One node of each op form over an input of `ty`, printed back byte for byte.
    fn op_case(inputs: &[(&str, &str)], consts: &[&str], node: &str) {
        let mut text = String::from("graph t {\n");
        for (n, ty) in inputs {
            text += &format!("  input {n}: {ty}\n");
        }
        for c in consts {
            text += &format!("  const {c}\n");
        }
        text += &format!("  {node}  # n\n  output y\n}}\n");
        round_trip_filled(&text);
    }

    #[test]
    fn every_op_form_round_trips() {
        let x = [("x", "f32[2,3]")];
        for u in [
            "Relu",
            "Sigmoid",
            "Tanh",
            "Exp",
            "Neg",
            "Abs",
            "Sqrt",
            "Reciprocal",
            "Erf",
            "Log",
            "Identity",
        ] {
            op_case(&x, &[], &format!("y: f32[2,3] = {u}(x)"));
        }
        for b in ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"] {
            op_case(
                &x,
                &["c: f32[3] = [1,2,3]"],
                &format!("y: f32[2,3] = {b}(x, c)"),
            );
        }
        // The integer Add/Mul of fold-requant, at the ends of every parameter's range,
        // with a broadcast operand.
        let q = [("a", "u8[2,3]"), ("b", "i8[3]")];
        op_case(
            &q,
            &[],
            "y: i8[2,3] = QAdd{ma=-1073741824 mb=1073741823 a_zero=255 b_zero=-128 shift=46 \
             to=i8 zero_point=-128 lo=-128 hi=127}(a, b)",
        );
        op_case(
            &q,
            &[],
            "y: u8[2,3] = QMul{m=7 a_zero=0 b_zero=127 shift=16 to=u8 zero_point=255 lo=3 \
             hi=200}(a, b)",
        );
        // Parameters the contract refuses are refused by shape inference, named.
        for (bad, what) in [
            ("m=1 shift=15", "shift"),
            ("m=1 shift=47", "shift"),
            ("m=1073741824 shift=30", "multiplier"),
            ("m=-1073741825 shift=30", "multiplier"),
        ] {
            let text = format!(
                "graph t {{\n  input a: u8[2]\n  input b: u8[2]\n  y: u8[2] = QMul{{{bad} \
                 a_zero=0 b_zero=0 to=u8 zero_point=0 lo=0 hi=255}}(a, b)  # n\n  \
                 output y\n}}\n"
            );
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains("QMul") && e.contains(what), "{e}");
        }
        for c in ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"] {
            op_case(
                &x,
                &["c: f32[] = [0.5]"],
                &format!("y: bool[2,3] = {c}(x, c)"),
            );
        }
        let bb = [("p", "bool[4]"), ("q", "bool[4]")];
        for l in ["And", "Or", "Xor"] {
            op_case(&bb, &[], &format!("y: bool[4] = {l}(p, q)"));
        }
        op_case(&bb, &[], "y: bool[4] = Not(p)");
        op_case(
            &[("p", "bool[2,3]"), ("x", "f32[2,3]")],
            &["c: f32[] = [0]"],
            "y: f32[2,3] = Where(p, x, c)",
        );
        op_case(&x, &[], "y: f32[2,3] = Clip{min=0.0 max=6.0}(x)");
        op_case(&x, &[], "y: f32[2,3] = Clip{min=-inf max=inf}(x)");
        op_case(
            &[("a", "f32[2,3,4]"), ("b", "f32[4,5]")],
            &[],
            "y: f32[2,3,5] = MatMul(a, b)",
        );
        op_case(
            &[("a", "f32[4,2]"), ("b", "f32[5,4]")],
            &["c: f32[5] = [1,2,3,4,5]"],
            "y: f32[2,5] = Gemm{alpha=0.5 beta=2.0 trans_a trans_b}(a, b, c)",
        );
        op_case(
            &[("a", "f32[2,4]"), ("b", "f32[4,5]")],
            &[],
            "y: f32[2,5] = Gemm{alpha=1.0 beta=1.0}(a, b)",
        );
        let img = [("x", "f32[1,2,5,5]")];
        let w = ["w: f32[4,1,3,3]", "b: f32[4] = [0,0,0,0]"];
        op_case(
            &img,
            &w,
            "y: f32[1,4,3,3] = Conv{kernel=[3,3] strides=[2,2] dilations=[1,1] pads=[1,1,1,1] group=2}(x, w, b)",
        );
        op_case(
            &img,
            &w[..1],
            "y: f32[1,4,3,3] = Conv{kernel=[3,3] strides=[2,2] dilations=[1,1] pads=[0,0,0,0] auto_pad=same_upper group=2}(x, w)",
        );
        op_case(
            &img,
            &[],
            "y: f32[1,2,3,3] = MaxPool{kernel=[2,2] strides=[2,2] dilations=[1,1] pads=[0,0,0,0] ceil_mode}(x)",
        );
        op_case(
            &img,
            &[],
            "y: f32[1,2,5,5] = MaxPool{kernel=[3,3] strides=[1,1] dilations=[1,1] pads=[0,0,0,0] auto_pad=same_lower}(x)",
        );
        op_case(
            &img,
            &[],
            "y: f32[1,2,3,3] = AveragePool{kernel=[3,3] strides=[1,1] dilations=[1,1] pads=[0,0,0,0] auto_pad=valid count_include_pad=true}(x)",
        );
        op_case(&img, &[], "y: f32[1,2,1,1] = GlobalAveragePool(x)");
        op_case(
            &img,
            &[
                "s: f32[2] = [1,2]",
                "b: f32[2] = [0,0]",
                "m: f32[2] = [0,1]",
                "v: f32[2] = [1,1]",
            ],
            "y: f32[1,2,5,5] = BatchNormalization{epsilon=1e-5}(x, s, b, m, v)",
        );
        op_case(&img, &[], "y: f32[2,25] = Flatten{axis=2}(x)");
        op_case(&x, &[], "y: f32[3,2] = Reshape{shape=[3,-1]}(x)");
        op_case(&x, &[], "y: f32[3,2] = Reshape{shape=[3,2] allowzero}(x)");
        op_case(&x, &[], "y: f32[3,2] = Transpose{perm=[1,0]}(x)");
        op_case(&x, &[], "y: f32[4,3] = Concat{axis=0}(x, x)");
        op_case(&x, &[], "y: f32[2,3] = Softmax{axis=-1}(x)");
        op_case(&x, &[], "y: f32[2,3] = Softmax{axis=1 coerce_2d}(x)");
        op_case(&x, &[], "y: f32[2,3] = Gelu(x)");
        op_case(&x, &[], "y: f32[2,3] = Gelu{tanh}(x)");
        op_case(
            &x,
            &["s: f32[3] = [1,1,1]"],
            "y: f32[2,3] = LayerNormalization{axis=-1 epsilon=1e-12}(x, s)",
        );
        op_case(
            &x,
            &["s: f32[3] = [1,1,1]", "b: f32[3] = [0,0,0]"],
            "y: f32[2,3], y1: f32[2,1], y2: f32[2,1] = LayerNormalization{axis=1 epsilon=1e-5 stats}(x, s, b)",
        );
        for r in [
            "ReduceSum",
            "ReduceMean",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
        ] {
            op_case(
                &x,
                &[],
                &format!("y: f32[2,1] = {r}{{axes=[-1] keepdims}}(x)"),
            );
            op_case(&x, &[], &format!("y: f32[] = {r}{{axes=all}}(x)"));
            op_case(
                &x,
                &[],
                &format!("y: f32[1,1] = {r}{{axes=all keepdims}}(x)"),
            );
        }
        op_case(&x, &[], "y: i64[2,3] = Cast{to=i64}(x)");
        op_case(&x, &[], "y: i64[2] = Shape(x)");
        op_case(&x, &[], "y: i64[1] = Shape{start=1}(x)");
        op_case(&x, &[], "y: i64[1] = Shape{start=0 end=-1}(x)");
        op_case(
            &x,
            &["i: i64[2] = [1,0]"],
            "y: f32[2,2] = Gather{axis=1}(x, i)",
        );
        op_case(
            &x,
            &["i: i64[2,1] = [1,0]"],
            "y: f32[2,1] = GatherElements{axis=1}(x, i)",
        );
        op_case(
            &x,
            &["i: i64[1,2] = [1,2]"],
            "y: f32[1] = GatherND{batch_dims=0}(x, i)",
        );
        op_case(
            &x,
            &[],
            "y: f32[2,2] = Slice{starts=[3] ends=[-9223372036854775807] axes=[1] steps=[-2]}(x)",
        );
        op_case(&x, &[], "y: f32[2,1,3] = Unsqueeze{axes=[1]}(x)");
        op_case(
            &[("x", "f32[2,1,3]")],
            &[],
            "y: f32[2,3] = Squeeze{axes=[1]}(x)",
        );
        op_case(&[("x", "f32[2,1,3]")], &[], "y: f32[2,3] = Squeeze(x)");
        op_case(&x, &[], "y: f32[4,2,3] = Expand{shape=[4,1,1]}(x)");
        op_case(
            &x,
            &[],
            "y: f32[2,1], y1: f32[2,2] = Split{axis=1 sizes=[1,2]}(x)",
        );
        op_case(&x, &[], "y: f32[4,3] = Tile{repeats=[2,1]}(x)");
        op_case(
            &x,
            &[],
            "y: f32[2,5] = Pad{pads=[0,1,0,1] mode=Constant value=0.5}(x)",
        );
        op_case(
            &x,
            &[],
            "y: f32[2,5] = Pad{pads=[0,1,0,1] mode=Reflect value=0.0}(x)",
        );
        op_case(
            &x,
            &[],
            "y: f32[2,4] = Pad{pads=[0,0,0,1] mode=Edge value=0.0}(x)",
        );
        op_case(
            &x,
            &[],
            "y: f32[2,4] = Pad{pads=[0,0,0,1] mode=Wrap value=0.0}(x)",
        );
        op_case(
            &[("a", "f32[2,3]"), ("b", "f32[3,4]")],
            &[],
            "y: f32[2,4] = Einsum{equation=ij,jk->ik}(a, b)",
        );
        op_case(
            &[("a", "f32[5,2,2]")],
            &[],
            "y: f32[5,2] = Einsum{equation=...ii->...i}(a)",
        );
        op_case(&x, &[], "y: f32[2,3] = CumSum{axis=1}(x)");
        op_case(&x, &[], "y: f32[2,3] = CumSum{axis=0 exclusive reverse}(x)");
    }

    #[test]
    fn initializers_and_dtypes() {
        round_trip(
            "graph t {\n  input x: i64[2]\n  const a: i64[2] = [-3,9007199254740993]\n  y: i64[2] = Add(x, a)  # add\n  output y\n}\n",
        );
        let g = parse(
            "graph t {\n  input x: f32[2,2]\n  const r: f32[2,2] = random(7)\n  const z: f32[2] = zeros\n  const s: f32[2] = splat(2.5)\n  const b: bool[3] = [1,0,1]\n  const i: i32[2] = [4,-5]\n  y: f32[2,2] = Add(x, r)  # a\n  w: f32[2,2] = Mul(y, s)  # m\n  v: f32[2,2] = Sub(w, z)  # s\n  output v, b, i\n}\n",
        )
        .unwrap();
        let by_name = |n: &str| {
            g.values()
                .find(|(_, v)| v.name == n)
                .and_then(|(_, v)| v.konst.clone())
                .unwrap()
        };
        let r = by_name("r");
        let rv = r.as_f32().unwrap();
        assert!(rv.iter().all(|&v| (-1.0..1.0).contains(&v)), "{rv:?}");
        assert_eq!(r, random_tensor(DType::F32, vec![2, 2], 7).unwrap());
        assert_ne!(r, random_tensor(DType::F32, vec![2, 2], 8).unwrap());
        assert_eq!(by_name("z"), Tensor::f32(vec![2], vec![0.0, 0.0]));
        assert_eq!(by_name("s"), Tensor::f32(vec![2], vec![2.5, 2.5]));
        assert_eq!(by_name("b"), Tensor::bool(vec![3], vec![true, false, true]));
        assert_eq!(by_name("i").data, Data::I32(vec![4, -5]));
        // A decimal between two f32s is rounded once, to the nearer one.
        let g = parse(
            "graph t {\n  const c: f32[2] = [1.00000005960464477539062500001,0.1]\n  output c\n}\n",
        )
        .unwrap();
        assert_eq!(
            g.konst(g.outputs[0]).unwrap().as_f32().unwrap(),
            // Just above the midpoint of 1 and 1 + 2^-23: f64 would round it to the
            // midpoint, then f32 to even (1.0).
            &[1.0 + f32::EPSILON, 0.1f32]
        );
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let cases = [
            ("", "line 1: expected 'graph NAME {'"),
            ("graph g {\n  input x f32[2]\n}", "line 2: expected ':'"),
            ("graph g {\n  input x: f33[2]\n}", "line 2: expected a type"),
            (
                "graph g {\n  input x: f32[2,a]\n}",
                "'a' is not a dimension",
            ),
            (
                "graph g {\n  const c: f32[2]\n  output c\n}",
                "line 2: constant 'c' has no initializer",
            ),
            (
                "graph g {\n  const c: f32[2] = [1]\n}",
                "the literal has 1 elements",
            ),
            (
                "graph g {\n  const c: f32[2] = ones\n}",
                "expected an initializer",
            ),
            (
                "graph g {\n  input x: f32[2]\n  y: f32[3] = Relu(x)  # r\n  output y\n}",
                "line 3: 'y' is written as f32[3], shape inference says f32[2]",
            ),
            (
                "graph g {\n  input x: f32[2]\n  y: f32[2] = Frob(x)  # r\n}",
                "line 3: unknown op 'Frob'",
            ),
            (
                "graph g {\n  input x: f32[2]\n  y: f32[2] = Relu(z)  # r\n}",
                "line 3: 'z' is not defined",
            ),
            (
                "graph g {\n  input x: f32[2]\n  y: f32[2] = Softmax{axis=-1 bogus}(x)  # r\n}",
                "Softmax: unknown attribute 'bogus'",
            ),
            (
                "graph g {\n  input x: f32[2]\n  y: f32[2] = Softmax{axis=a}(x)  # r\n}",
                "axis=a: expected an integer",
            ),
            (
                "graph g {\n  input x: f32[2]\n  y: f32[2] = Relu(x  # r\n}",
                "line 3: expected ','",
            ),
            (
                "graph g {\n  input x: f32[2]\n  input x: f32[2]\n}",
                "line 3: 'x' is defined twice",
            ),
            (
                "graph g {\n  input x: f32[2]\n  output x\n",
                "expected '}' closing the graph",
            ),
            ("graph g {\n  input x: f32[2]\n}", "no 'output' line"),
            (
                "graph g {\n  input x: f32[2,3]\n  y: f32[3,2] = Reshape{shape=[4,-1]}(x)  # r\n}",
                "line 3: ",
            ),
            // Ops that index a dim refuse scalars (these panicked in shape inference).
            (
                "graph g {\n  input x: f32[]\n  y: f32[] = Concat{axis=0}(x, x)  # c\n}",
                "line 3: node 'c' (Concat): axis 0: the input is a scalar",
            ),
            (
                "graph g {\n  input x: f32[]\n  input i: i64[1]\n  y: f32[1] = Gather{axis=0}(x, i)  # g\n}",
                "line 4: node 'g' (Gather): axis 0: the input is a scalar",
            ),
            (
                "graph g {\n  input x: f32[2]\n  y: f32[2], z: f32[2] = Relu(x)  # r\n}",
                "Relu has 1 output(s) here, the text names 2",
            ),
        ];
        for (text, want) in cases {
            let got = error(text);
            assert!(got.contains(want), "{text:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn missing_consts_fill_zeros_on_request() {
        let text = "graph g {\n  const c: f32[2,8]\n  output c\n}\n";
        let g = parse_with(
            text,
            ParseOptions {
                missing_consts: MissingConsts::Fill,
            },
        )
        .unwrap();
        assert_eq!(g.konst(g.outputs[0]).unwrap().as_f32().unwrap(), &[0.0; 16]);
        assert_eq!(print(&g), text);
    }

    #[test]
    fn model_output_names_and_defaults() {
        round_trip(
            "graph g {\n  input x: f32[2]\n  y: f32[2] = Relu(x)  # r\n  output logits=y, x\n}\n",
        );
        // Attributes with ONNX defaults may be left out; the node name defaults to n<i>.
        let g = parse(
            "graph g {\n  input a: f32[2,4]\n  input b: f32[4,3]\n  y: f32[2,3] = Gemm(a, b)\n  output y\n}\n",
        )
        .unwrap();
        assert_eq!(
            print(&g),
            "graph g {\n  input a: f32[2,4]\n  input b: f32[4,3]\n  y: f32[2,3] = Gemm{alpha=1.0 beta=1.0}(a, b)  # n0\n  output y\n}\n"
        );
    }

    use proptest::prelude::*;

    fn small_i64s() -> impl Strategy<Value = Vec<i64>> {
        proptest::collection::vec(-6i64..6, 0..5)
    }

    fn sizes() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0usize..5, 0..5)
    }

    /// A float attribute: finite values of every magnitude and the infinities (the printer
    /// writes `{:?}`, which round-trips exactly).
    fn float() -> impl Strategy<Value = f32> {
        prop_oneof![
            proptest::num::f32::NORMAL | proptest::num::f32::SUBNORMAL | proptest::num::f32::ZERO,
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
        ]
    }

    fn requant() -> impl Strategy<Value = Requant> {
        (
            any::<bool>(),
            1u32..63,
            -200i32..200,
            -200i32..200,
            -200i32..200,
        )
            .prop_map(|(u8, shift, zero_point, lo, hi)| Requant {
                to: if u8 { DType::U8 } else { DType::I8 },
                shift,
                zero_point,
                lo,
                hi,
            })
    }

    fn window() -> impl Strategy<Value = WindowAttrs> {
        (1usize..3, 0usize..4, any::<bool>(), sizes(), sizes()).prop_map(
            |(r, pad_kind, ceil_mode, a, b)| {
                let pick = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
                WindowAttrs {
                    kernel: (0..r).map(|i| pick(&a, i) + 1).collect(),
                    strides: (0..r).map(|i| pick(&b, i) + 1).collect(),
                    dilations: (0..r).map(|i| pick(&a, i + 2)).collect(),
                    pads: (0..2 * r).map(|i| pick(&b, i + 1)).collect(),
                    auto_pad: [
                        AutoPad::NotSet,
                        AutoPad::SameUpper,
                        AutoPad::SameLower,
                        AutoPad::Valid,
                    ][pad_kind],
                    ceil_mode,
                }
            },
        )
    }

    /// Every `Op` variant with random attributes (valid or not: the op is only printed
    /// and parsed, not applied).
    fn any_op() -> impl Strategy<Value = Op> {
        let dtype = proptest::sample::select(DType::ALL.to_vec());
        prop_oneof![
            (float(), float()).prop_map(|(min, max)| Op::Clip { min, max }),
            (float(), float(), any::<bool>(), any::<bool>()).prop_map(
                |(alpha, beta, trans_a, trans_b)| Op::Gemm {
                    alpha,
                    beta,
                    trans_a,
                    trans_b
                }
            ),
            (window(), 1usize..9).prop_map(|(window, group)| Op::Conv { window, group }),
            window().prop_map(|window| Op::MaxPool { window }),
            (window(), any::<bool>()).prop_map(|(window, count_include_pad)| Op::AveragePool {
                window,
                count_include_pad
            }),
            float().prop_map(|epsilon| Op::BatchNorm { epsilon }),
            (-4i64..4).prop_map(|axis| Op::Flatten { axis }),
            (small_i64s(), any::<bool>())
                .prop_map(|(shape, allowzero)| Op::Reshape { shape, allowzero }),
            sizes().prop_map(|perm| Op::Transpose { perm }),
            (-4i64..4).prop_map(|axis| Op::Concat { axis }),
            (-4i64..4, any::<bool>()).prop_map(|(axis, coerce_2d)| Op::Softmax { axis, coerce_2d }),
            any::<bool>().prop_map(|tanh| Op::Gelu { tanh }),
            float().prop_map(|scale| Op::AttentionSoftmax { scale }),
            (float(), float()).prop_map(|(alpha, beta)| Op::HardSigmoid { alpha, beta }),
            Just(Op::HardSwish),
            (
                float(),
                any::<[bool; 4]>(),
                prop_oneof![
                    Just(Act::None),
                    Just(Act::Relu),
                    Just(Act::Sigmoid),
                    Just(Act::Tanh),
                    Just(Act::HardSwish),
                    any::<bool>().prop_map(|tanh| Act::Gelu { tanh }),
                    (float(), float()).prop_map(|(min, max)| Act::Clip { min, max }),
                ]
            )
                .prop_map(|(alpha, [trans_a, trans_b, bias, residual], act)| {
                    Op::FusedMatMul {
                        alpha,
                        trans_a,
                        trans_b,
                        bias,
                        residual,
                        act,
                    }
                }),
            (
                window(),
                1usize..9,
                any::<[bool; 2]>(),
                prop_oneof![
                    Just(Act::None),
                    Just(Act::Relu),
                    Just(Act::Sigmoid),
                    Just(Act::Tanh),
                    Just(Act::HardSwish),
                    any::<bool>().prop_map(|tanh| Act::Gelu { tanh }),
                    (float(), float()).prop_map(|(min, max)| Act::Clip { min, max }),
                ]
            )
                .prop_map(|(window, group, [bias, residual], act)| Op::FusedConv {
                    window,
                    group,
                    bias,
                    residual,
                    act,
                }),
            (-4i64..4, float(), any::<bool>()).prop_map(|(axis, epsilon, stats)| Op::LayerNorm {
                axis,
                epsilon,
                stats
            }),
            (0usize..5, proptest::option::of(small_i64s()), any::<bool>()).prop_map(
                |(k, axes, keepdims)| Op::Reduce {
                    kind: [
                        ReduceKind::Sum,
                        ReduceKind::Mean,
                        ReduceKind::Max,
                        ReduceKind::Min,
                        ReduceKind::Prod
                    ][k],
                    axes,
                    keepdims,
                }
            ),
            dtype.prop_map(|to| Op::Cast { to }),
            (-4i64..4, proptest::bool::ANY).prop_map(|(axis, s)| Op::QuantizeLinear {
                axis,
                to: if s { DType::I8 } else { DType::U8 },
            }),
            (-4i64..4).prop_map(|axis| Op::DequantizeLinear { axis }),
            proptest::option::of(requant()).prop_map(|requant| Op::QGemm { requant }),
            (window(), 1usize..9, proptest::option::of(requant())).prop_map(
                |(window, group, requant)| Op::QConv {
                    window,
                    group,
                    requant
                }
            ),
            (
                any::<bool>(),
                any::<[i32; 2]>(),
                any::<[i32; 6]>(),
                any::<u32>(),
                any::<bool>()
            )
                .prop_map(
                    |(add, [m0, m1], [a_zero, b_zero, zero_point, lo, hi, _], shift, u8)| {
                        Op::QBinary(QBinaryAttrs {
                            op: if add {
                                QBinaryOp::Add { ma: m0, mb: m1 }
                            } else {
                                QBinaryOp::Mul { m: m0 }
                            },
                            a_zero,
                            b_zero,
                            shift,
                            to: if u8 { DType::U8 } else { DType::I8 },
                            zero_point,
                            lo,
                            hi,
                        })
                    }
                ),
            Just(Op::DynamicQuantizeLinear),
            Just(Op::MatMulInteger),
            (window(), 1usize..9).prop_map(|(window, group)| Op::ConvInteger { window, group }),
            (-4i64..4, proptest::option::of(-4i64..4))
                .prop_map(|(start, end)| Op::Shape { start, end }),
            (-4i64..4).prop_map(|axis| Op::Gather { axis }),
            (-4i64..4).prop_map(|axis| Op::GatherElements { axis }),
            (0usize..4).prop_map(|batch_dims| Op::GatherND { batch_dims }),
            (
                small_i64s(),
                small_i64s(),
                small_i64s(),
                small_i64s(),
                any::<i64>()
            )
                .prop_map(|(mut starts, ends, axes, steps, big)| {
                    starts.push(big);
                    Op::Slice {
                        starts,
                        ends,
                        axes,
                        steps,
                    }
                }),
            small_i64s().prop_map(|axes| Op::Unsqueeze { axes }),
            proptest::option::of(small_i64s()).prop_map(|axes| Op::Squeeze { axes }),
            small_i64s().prop_map(|shape| Op::Expand { shape }),
            (-4i64..4, sizes()).prop_map(|(axis, sizes)| Op::Split { axis, sizes }),
            sizes().prop_map(|repeats| Op::Tile { repeats }),
            (small_i64s(), 0usize..4, any::<f64>())
                .prop_filter("NaN != NaN", |(_, _, v)| !v.is_nan())
                .prop_map(|(pads, m, value)| Op::Pad {
                    pads,
                    mode: [
                        PadMode::Constant,
                        PadMode::Reflect,
                        PadMode::Edge,
                        PadMode::Wrap
                    ][m],
                    value,
                }),
            proptest::sample::select(vec![
                "ij,jk->ik",
                "bhqd,bhkd->bhqk",
                "...ii->...i",
                "i,i->",
                "ab->ba",
                "...j,j->..."
            ])
            .prop_map(|e| Op::Einsum(Equation::parse(e).unwrap())),
            (-4i64..4, any::<bool>(), any::<bool>()).prop_map(|(axis, exclusive, reverse)| {
                Op::CumSum {
                    axis,
                    exclusive,
                    reverse,
                }
            }),
        ]
    }

    proptest! {
        /// `Op`'s Display parses back to the same op, for every variant.
        #[test]
        fn op_display_parses_back(op in any_op()) {
            let text = op.to_string();
            let (name, body) = match text.split_once('{') {
                Some((n, b)) => (n, b.strip_suffix('}').unwrap()),
                None => (text.as_str(), ""),
            };
            let back = parse_op(1, name, body).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(back, op, "{}", text);
        }

        /// Random attributes on real inputs: the parser (and the shape inference it runs)
        /// returns an error or a graph, never panics.
        #[test]
        fn odd_ops_are_errors_not_panics(op in any_op(), dims in proptest::collection::vec(1usize..4, 0..5), n_in in 1usize..4) {
            let shape: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            let ty = format!("f32[{}]", shape.join(","));
            let ins: Vec<String> = (0..n_in).map(|i| format!("x{i}")).collect();
            let mut text = String::from("graph t {\n");
            for i in &ins {
                text += &format!("  input {i}: {ty}\n");
            }
            text += &format!("  y: f32[] = {op}({})  # n\n  output y\n}}\n", ins.join(", "));
            let _ = parse(&text);
        }

        /// Any edit of a valid text is parsed or refused, never a panic.
        #[test]
        fn mangled_text_is_an_error_not_a_panic(at in 0usize..400, cut in 0usize..6, insert in "[ -~\n]{0,4}") {
            let text = "; pass: x\ngraph g {\n  input x: f32[2,3]\n  const w: f32[3,2] = random(1)\n  const b: i64[2] = [1,-2]\n  h: f32[2,2] = MatMul(x, w)  # mm\n  s: f32[2,2] = Softmax{axis=-1 coerce_2d}(h)  # sm\n  p: f32[2,1], q: f32[2,1] = Split{axis=1 sizes=[1,1]}(s)  # split\n  output s, out=p\n}\n";
            let at = at.min(text.len());
            let end = (at + cut).min(text.len());
            let mangled = format!("{}{insert}{}", &text[..at], &text[end..]);
            let _ = parse(&mangled);
        }
    }
}
