//! The function-emission context every kernel writes through: typed helpers for loads,
//! stores, constants, vector width and loops, so kernels read as loop nests rather than
//! as Cranelift plumbing.
//!
//! Two rules from measuring Cranelift 0.135 are built in here:
//! - Loops are emitted **rotated** (test at the bottom), and since every trip count is a
//!   compile-time constant no guard is needed: a loop that runs 0 times is not emitted
//!   and one that runs once is emitted straight-line. Cranelift's LICM only hoists
//!   invariants out of this shape.
//! - Operands that a kernel never writes are loaded with `readonly + can_move`, which
//!   lets the e-graph hoist and schedule them; everything else is plain `notrap`.

use cranelift_codegen::ir::{
    self, AbiParam, Block, BlockArg, ConstantData, GlobalValue, InstBuilder, MemFlagsData, Type,
    Value, condcodes::FloatCC, condcodes::IntCC, types,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::FunctionBuilder;
use cranelift_module::DataId;
use edgecc_program::Buffer;

use crate::error::{Error, unsupported};

/// Vector width of an emitted computation: four f32 lanes (`f32x4`) or one scalar. Tails
/// and strided operands use `S1` with the very same code as the vector body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum W {
    V4,
    S1,
}

impl W {
    pub fn ty(self) -> Type {
        match self {
            W::V4 => types::F32X4,
            W::S1 => types::F32,
        }
    }
    pub fn ity(self) -> Type {
        match self {
            W::V4 => types::I32X4,
            W::S1 => types::I32,
        }
    }
    pub fn lanes(self) -> u64 {
        match self {
            W::V4 => 4,
            W::S1 => 1,
        }
    }
}

/// What the target offers the kernels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Features {
    /// `fma` is a single instruction (aarch64 always; x64 with AVX and FMA). Without it
    /// Cranelift would call `fmaf`, so kernels use `fmul` + `fadd` instead.
    pub fma: bool,
    pub aarch64: bool,
    /// aarch64 `sdot` (flag `has_dotprod`): the integer kernels' widening dot-product
    /// tree becomes one instruction.
    pub dotprod: bool,
}

pub(crate) const PTR: Type = types::I64;

/// The signature of every kernel function and of `<name>_run`'s three arguments:
/// `(inputs: *const *const u8, outputs: *const *mut u8, arena: *mut u8)`.
pub(crate) fn io_params(sig: &mut ir::Signature) {
    for _ in 0..3 {
        sig.params.push(AbiParam::new(PTR));
    }
}

pub(crate) struct Fx<'f, 'd> {
    pub b: FunctionBuilder<'f>,
    pub feat: Features,
    pub ins: Value,
    pub outs: Value,
    pub arena: Value,
    /// Every data object of the module (program constants first), by data index.
    data: &'d [Option<DataId>],
    data_gv: Vec<Option<GlobalValue>>,
    rw: MemFlagsData,
    ro: MemFlagsData,
    cfg: TargetFrontendConfig,
}

impl<'f, 'd> Fx<'f, 'd> {
    /// Starts a function whose entry block takes `(inputs, outputs, arena)`.
    pub fn new(
        mut b: FunctionBuilder<'f>,
        cfg: TargetFrontendConfig,
        feat: Features,
        data: &'d [Option<DataId>],
    ) -> Self {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let rw = MemFlagsData::new().with_notrap();
        Fx {
            b,
            feat,
            ins: p[0],
            outs: p[1],
            arena: p[2],
            data,
            data_gv: vec![None; data.len()],
            rw,
            ro: rw.with_readonly().with_can_move(),
            cfg,
        }
    }

    pub fn finish(mut self) {
        self.b.seal_all_blocks();
        self.b.finalize(self.cfg);
    }

    // ---- integers and pointers ----

    pub fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(PTR, v)
    }

    /// `p + bytes`.
    pub fn addp(&mut self, p: Value, bytes: i64) -> Value {
        if bytes == 0 {
            p
        } else {
            self.b.ins().iadd_imm_s(p, bytes)
        }
    }

    /// `p + i * bytes`.
    pub fn addp_scaled(&mut self, p: Value, i: Value, bytes: i64) -> Value {
        if bytes == 0 {
            return p;
        }
        let off = if bytes == 1 {
            i
        } else {
            self.b.ins().imul_imm_s(i, bytes)
        };
        self.b.ins().iadd(p, off)
    }

    /// Address of a data object (a constant or a packed copy of one).
    pub fn data_addr(&mut self, index: usize) -> Value {
        let gv = match self.data_gv[index] {
            Some(gv) => gv,
            None => {
                let id = self.data[index]
                    .expect("a kernel referenced a data object the module does not define");
                let name = self
                    .b
                    .func
                    .declare_imported_user_function(ir::UserExternalName {
                        namespace: 1,
                        index: id.as_u32(),
                    });
                let gv = self
                    .b
                    .func
                    .create_global_value(ir::GlobalValueData::Symbol {
                        name: ir::ExternalName::user(name),
                        offset: ir::immediates::Imm64::new(0),
                        colocated: true,
                        tls: false,
                    });
                self.data_gv[index] = Some(gv);
                gv
            }
        };
        self.b.ins().symbol_value(PTR, gv)
    }

    /// Base address of a kernel operand buffer.
    pub fn buf(&mut self, buf: Buffer) -> Value {
        match buf {
            Buffer::Arena { offset } => {
                let a = self.arena;
                self.addp(a, offset as i64)
            }
            Buffer::Input(i) => {
                let p = self.ins;
                let f = self.ro;
                self.b.ins().load(PTR, f, p, (8 * i) as i32)
            }
            Buffer::Output(i) => {
                let p = self.outs;
                let f = self.ro;
                self.b.ins().load(PTR, f, p, (8 * i) as i32)
            }
            Buffer::Const(c) => self.data_addr(c.0 as usize),
        }
    }

    /// Splits a byte offset into a pointer and an immediate that fits the load's 32 bits.
    fn addr(&mut self, p: Value, off: i64) -> (Value, i32) {
        match i32::try_from(off) {
            Ok(o) => (p, o),
            Err(_) => (self.addp(p, off), 0),
        }
    }

    // ---- memory ----

    /// Loads `ty` at `p + off`; `readonly` for memory the kernel never writes.
    pub fn load(&mut self, ty: Type, p: Value, off: i64, readonly: bool) -> Value {
        let (p, o) = self.addr(p, off);
        let f = if readonly { self.ro } else { self.rw };
        self.b.ins().load(ty, f, p, o)
    }

    /// Loads one byte at `p + off` as an `i32`, sign-extended when `signed`.
    pub fn load8(&mut self, signed: bool, p: Value, off: i64, readonly: bool) -> Value {
        let (p, o) = self.addr(p, off);
        let f = if readonly { self.ro } else { self.rw };
        if signed {
            self.b.ins().sload8(types::I32, f, p, o)
        } else {
            self.b.ins().uload8(types::I32, f, p, o)
        }
    }

    /// Loads 8 bytes at `p + off` sign-extended to `i16x8` (one `pmovsxbw` on x86_64).
    pub fn sload8x8(&mut self, p: Value, off: i64, readonly: bool) -> Value {
        let (p, o) = self.addr(p, off);
        let f = if readonly { self.ro } else { self.rw };
        self.b.ins().sload8x8(f, p, o)
    }

    /// Loads 8 bytes at `p + off` zero-extended to `i16x8`.
    pub fn uload8x8(&mut self, p: Value, off: i64, readonly: bool) -> Value {
        let (p, o) = self.addr(p, off);
        let f = if readonly { self.ro } else { self.rw };
        self.b.ins().uload8x8(f, p, o)
    }

    /// Stores the low byte of the integer `v` at `p + off`.
    pub fn store8(&mut self, v: Value, p: Value, off: i64) {
        let (p, o) = self.addr(p, off);
        let f = self.rw;
        self.b.ins().istore8(f, v, p, o);
    }

    pub fn store(&mut self, v: Value, p: Value, off: i64) {
        let (p, o) = self.addr(p, off);
        let f = self.rw;
        self.b.ins().store(f, v, p, o);
    }

    /// Loads `w` lanes from elements `off, off + stride, ...` (bytes): a vector load when
    /// the stride is 4 bytes, a splat when it is 0, lane inserts otherwise.
    pub fn load_w(&mut self, w: W, p: Value, off: i64, stride: i64, readonly: bool) -> Value {
        match w {
            W::S1 => self.load(types::F32, p, off, readonly),
            W::V4 if stride == 4 => self.load(types::F32X4, p, off, readonly),
            W::V4 if stride == 0 => {
                let s = self.load(types::F32, p, off, readonly);
                self.b.ins().splat(types::F32X4, s)
            }
            W::V4 => {
                let s = self.load(types::F32, p, off, readonly);
                let mut v = self.b.ins().scalar_to_vector(types::F32X4, s);
                for l in 1..4u8 {
                    let s = self.load(types::F32, p, off + l as i64 * stride, readonly);
                    v = self.b.ins().insertlane(v, s, l);
                }
                v
            }
        }
    }

    /// Stores `w` lanes to elements `off, off + stride, ...` (bytes).
    pub fn store_w(&mut self, w: W, v: Value, p: Value, off: i64, stride: i64) {
        if w == W::S1 || stride == 4 {
            return self.store(v, p, off);
        }
        for l in 0..4u8 {
            let s = self.b.ins().extractlane(v, l);
            self.store(s, p, off + l as i64 * stride);
        }
    }

    // ---- floats ----

    pub fn fconst(&mut self, w: W, c: f32) -> Value {
        match w {
            W::S1 => self.b.ins().f32const(c),
            W::V4 => self.vconst_bits(types::F32X4, [c.to_bits(); 4]),
        }
    }

    pub fn iconst_w(&mut self, w: W, c: i32) -> Value {
        match w {
            W::S1 => self.b.ins().iconst(types::I32, c as i64),
            W::V4 => self.vconst_bits(types::I32X4, [c as u32; 4]),
        }
    }

    /// A vector constant from the constant pool (one load on aarch64, instead of the
    /// `movz`/`movk`/`dup` a splat of a scalar constant costs there).
    fn vconst_bits(&mut self, ty: Type, lanes: [u32; 4]) -> Value {
        let bytes: Vec<u8> = lanes.iter().flat_map(|l| l.to_le_bytes()).collect();
        self.vconst_bytes(ty, bytes)
    }

    /// A 128-bit vector constant of type `ty` from its 16 little-endian bytes.
    pub fn vconst_bytes(&mut self, ty: Type, bytes: Vec<u8>) -> Value {
        let h = self.b.func.dfg.constants.insert(ConstantData::from(bytes));
        self.b.ins().vconst(ty, h)
    }

    /// An `i64x2` constant with both lanes `c`.
    pub fn i64x2_const(&mut self, c: i64) -> Value {
        let bytes: Vec<u8> = [c, c].iter().flat_map(|l| l.to_le_bytes()).collect();
        self.vconst_bytes(types::I64X2, bytes)
    }

    /// An `i32x4` constant with lanes `c`.
    pub fn i32x4_const(&mut self, c: [i32; 4]) -> Value {
        self.vconst_bits(types::I32X4, c.map(|x| x as u32))
    }

    pub fn splat(&mut self, w: W, s: Value) -> Value {
        match w {
            W::S1 => s,
            W::V4 => self.b.ins().splat(types::F32X4, s),
        }
    }

    /// Reinterprets float bits as integers of the same width, or back.
    pub fn bitcast(&mut self, to: Type, v: Value) -> Value {
        self.b.ins().bitcast(
            to,
            MemFlagsData::new().with_endianness(ir::Endianness::Little),
            v,
        )
    }

    /// `a < b ? b : a` chosen per lane: NaN in `a` gives `b`. On x64 this exact pattern
    /// lowers to one `maxps`; `fmax` (IEEE NaN handling) is 8 instructions there, while on
    /// aarch64 `fmax` is one.
    pub fn max(&mut self, w: W, a: Value, b: Value) -> Value {
        if self.feat.aarch64 {
            return self.b.ins().fmax(a, b);
        }
        let c = self.b.ins().fcmp(FloatCC::LessThan, b, a);
        self.pick(w, c, a, b)
    }

    /// `b < a ? b : a` per lane (`minps` on x64, `fmin` on aarch64).
    pub fn min(&mut self, w: W, a: Value, b: Value) -> Value {
        if self.feat.aarch64 {
            return self.b.ins().fmin(a, b);
        }
        let c = self.b.ins().fcmp(FloatCC::LessThan, a, b);
        self.pick(w, c, a, b)
    }

    /// Per-lane `c ? x : y` for a comparison result `c`.
    pub fn pick(&mut self, w: W, c: Value, x: Value, y: Value) -> Value {
        match w {
            W::S1 => self.b.ins().select(c, x, y),
            W::V4 => {
                let m = self.bitcast(types::F32X4, c);
                self.b.ins().bitselect(m, x, y)
            }
        }
    }

    /// `a * b + c`, fused where the target has a single instruction for it.
    pub fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.feat.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let m = self.b.ins().fmul(a, b);
            self.b.ins().fadd(m, c)
        }
    }

    /// Sum of the four lanes (scalar passes through).
    pub fn hsum(&mut self, w: W, v: Value) -> Value {
        if w == W::S1 {
            return v;
        }
        let l: Vec<Value> = (0..4u8).map(|i| self.b.ins().extractlane(v, i)).collect();
        let a = self.b.ins().fadd(l[0], l[1]);
        let c = self.b.ins().fadd(l[2], l[3]);
        self.b.ins().fadd(a, c)
    }

    /// Maximum of the four lanes.
    pub fn hmax(&mut self, w: W, v: Value) -> Value {
        if w == W::S1 {
            return v;
        }
        let l: Vec<Value> = (0..4u8).map(|i| self.b.ins().extractlane(v, i)).collect();
        let a = self.max(W::S1, l[0], l[1]);
        let c = self.max(W::S1, l[2], l[3]);
        self.max(W::S1, a, c)
    }

    // ---- control flow ----

    /// `for i in 0..n { carried = body(i, carried) }` as a rotated loop (see the module
    /// doc). `i` is an `i64`. Returns the final carried values.
    pub fn for_n(
        &mut self,
        n: u64,
        carried: &[Value],
        mut body: impl FnMut(&mut Self, Value, &[Value]) -> Vec<Value>,
    ) -> Vec<Value> {
        match n {
            0 => return carried.to_vec(),
            1 => {
                let i = self.iconst(0);
                return body(self, i, carried);
            }
            _ => {}
        }
        let tys: Vec<Type> = carried
            .iter()
            .map(|&v| self.b.func.dfg.value_type(v))
            .collect();
        let head = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(head, PTR);
        for &t in &tys {
            self.b.append_block_param(head, t);
            self.b.append_block_param(exit, t);
        }
        let zero = self.iconst(0);
        let args = block_args(zero, carried);
        self.b.ins().jump(head, &args);
        self.b.switch_to_block(head);
        let params = self.b.block_params(head).to_vec();
        let next = body(self, params[0], &params[1..]);
        let i1 = self.b.ins().iadd_imm_s(params[0], 1);
        let more = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, i1, n as i64);
        let back = block_args(i1, &next);
        let out: Vec<BlockArg> = next.iter().map(|&v| v.into()).collect();
        self.b.ins().brif(more, head, &back, exit, &out);
        self.b.switch_to_block(exit);
        self.b.block_params(exit).to_vec()
    }

    /// Like [`Fx::for_n`] for bodies that do not need the index: the count runs down to
    /// zero, so the loop's own cost is a subtract and a compare-and-branch on zero
    /// (`sub` + `cbnz` on aarch64) instead of an add, a compare and a branch. In a GEMM's
    /// K loop that is one instruction of every ~110.
    pub fn repeat_n(
        &mut self,
        n: u64,
        carried: &[Value],
        mut body: impl FnMut(&mut Self, &[Value]) -> Vec<Value>,
    ) -> Vec<Value> {
        match n {
            0 => return carried.to_vec(),
            1 => return body(self, carried),
            _ => {}
        }
        let tys: Vec<Type> = carried
            .iter()
            .map(|&v| self.b.func.dfg.value_type(v))
            .collect();
        let head = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(head, PTR);
        for &t in &tys {
            self.b.append_block_param(head, t);
            self.b.append_block_param(exit, t);
        }
        let count = self.iconst(n as i64);
        let args = block_args(count, carried);
        self.b.ins().jump(head, &args);
        self.b.switch_to_block(head);
        let params = self.b.block_params(head).to_vec();
        let next = body(self, &params[1..]);
        let left = self.b.ins().iadd_imm_s(params[0], -1);
        let back = block_args(left, &next);
        let out: Vec<BlockArg> = next.iter().map(|&v| v.into()).collect();
        self.b.ins().brif(left, head, &back, exit, &out);
        self.b.switch_to_block(exit);
        self.b.block_params(exit).to_vec()
    }

    /// Like [`Fx::for_n`], but tested at the top, with the exit taking the header's own
    /// parameters: each carried value the body computes then has exactly one use (the
    /// back edge). In the rotated form the last values are also the exit's arguments, and
    /// that second use makes Cranelift's lowering treat every instruction they depend on
    /// as used several times, so no load can fold into its single user (the x64
    /// `vbroadcastss mem` of the GEMM). LICM does not work in this shape (see the module
    /// doc): use it for loops without invariants to hoist.
    pub fn for_n_top(
        &mut self,
        n: u64,
        carried: &[Value],
        mut body: impl FnMut(&mut Self, Value, &[Value]) -> Vec<Value>,
    ) -> Vec<Value> {
        if n <= 1 {
            return self.for_n(n, carried, body);
        }
        let head = self.b.create_block();
        let inner = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(head, PTR);
        for &v in carried {
            let t = self.b.func.dfg.value_type(v);
            self.b.append_block_param(head, t);
        }
        let zero = self.iconst(0);
        let args = block_args(zero, carried);
        self.b.ins().jump(head, &args);
        self.b.switch_to_block(head);
        let params = self.b.block_params(head).to_vec();
        let more = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, params[0], n as i64);
        self.b.ins().brif(more, inner, &[], exit, &[]);
        self.b.switch_to_block(inner);
        let next = body(self, params[0], &params[1..]);
        let i1 = self.b.ins().iadd_imm_s(params[0], 1);
        let back = block_args(i1, &next);
        self.b.ins().jump(head, &back);
        self.b.switch_to_block(exit);
        params[1..].to_vec()
    }

    /// Like [`Fx::for_n`], but emits the body `n` times straight-line when `n <= max`
    /// (small windows, tails), with `i` a constant.
    pub fn for_n_unrolled(
        &mut self,
        n: u64,
        max: u64,
        carried: &[Value],
        mut body: impl FnMut(&mut Self, Value, &[Value]) -> Vec<Value>,
    ) -> Vec<Value> {
        if n > max {
            return self.for_n(n, carried, body);
        }
        let mut c = carried.to_vec();
        for i in 0..n {
            let iv = self.iconst(i as i64);
            c = body(self, iv, &c);
        }
        c
    }

    /// Emits `then` when `cond` (an integer) is non-zero at run time, else `otherwise`.
    pub fn if_else(
        &mut self,
        cond: Value,
        then: impl FnOnce(&mut Self),
        otherwise: impl FnOnce(&mut Self),
    ) {
        let t: Block = self.b.create_block();
        let e: Block = self.b.create_block();
        let j: Block = self.b.create_block();
        self.b.ins().brif(cond, t, &[], e, &[]);
        self.b.switch_to_block(t);
        then(self);
        self.b.ins().jump(j, &[]);
        self.b.switch_to_block(e);
        otherwise(self);
        self.b.ins().jump(j, &[]);
        self.b.switch_to_block(j);
    }
}

fn block_args(first: Value, rest: &[Value]) -> Vec<BlockArg> {
    std::iter::once(first)
        .chain(rest.iter().copied())
        .map(BlockArg::from)
        .collect()
}

/// Checks that an element offset or stride in bytes stays far from `i64` overflow.
pub(crate) fn bytes_of(elems: i64) -> Result<i64, Error> {
    elems
        .checked_mul(4)
        .filter(|b| b.unsigned_abs() < (1u64 << 48))
        .ok_or_else(|| unsupported(format!("element offset {elems} is out of range")))
}
