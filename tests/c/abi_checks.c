/*
 * Every refusal of the checked C entry points, against a real compiled model: the encoder
 * example compiled with `--name enc` (inputs input_ids and attention_mask, int64[1,16];
 * output last_hidden_state, float[1,16,32]; a vocabulary of 100 token ids).
 *
 * compiler/tests/cli.rs builds it three ways and requires exit status 0:
 *   - x86_64 with -fsanitize=address,undefined, and again plain under valgrind: buffers
 *     are heap blocks of exactly the model's sizes (short ones where a test says so), so
 *     a read or write past any of them by the checks or the model is reported;
 *   - -DEXPECT_OTHER_ABI with a header edited to another EDGECC_ABI_VERSION: the artifact
 *     is then of another ABI version, and every checked call must refuse it;
 *   - -DOVERRUN_CONTROL, under valgrind, which must then report an error: the unchecked
 *     enc_run writing into a short output buffer, so the valgrind runs are known to see
 *     the model's own accesses;
 *   - -DFREESTANDING for Hexagon (the model's C from `--target hexagon`), run under
 *     qemu-hexagon: no libc, a static pool for buffers, Linux system calls for output.
 *
 * After every refused call the output buffer and the arena must still hold the bytes
 * written into them before the call: the model did not run.
 */
#ifndef FREESTANDING
#define _POSIX_C_SOURCE 200112L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#endif

#include "enc.h"

#ifdef FREESTANDING
static long sys(long n, long a, long b, long c) {
    register long r0 asm("r0") = a;
    register long r1 asm("r1") = b;
    register long r2 asm("r2") = c;
    register long r6 asm("r6") = n;
    asm volatile("trap0(#1)" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r6) : "memory");
    return r0;
}
static void say(const char *s) {
    long n = 0;
    while (s[n])
        n++;
    sys(64, 1, (long)s, n);
}
static void say_int(long v) {
    char b[24];
    int i = 23;
    int neg = v < 0;
    unsigned long u = neg ? 0ul - (unsigned long)v : (unsigned long)v;
    b[i] = 0;
    do {
        b[--i] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    if (neg)
        b[--i] = '-';
    say(b + i);
}
/* Buffers from a static pool, each 128-byte aligned. */
static uint8_t pool[4 * ENC_ARENA_SIZE + 16384] __attribute__((aligned(128)));
static size_t pool_used;
static void *buffer(size_t n, size_t align) {
    uint8_t *p = pool + pool_used;
    (void)align;
    pool_used += (n + 127u) & ~(size_t)127u;
    if (pool_used > sizeof pool) {
        say("pool exhausted\n");
        sys(93, 3, 0, 0);
    }
    return p;
}
#else
static void say(const char *s) { fputs(s, stdout); }
static void say_int(long v) { printf("%ld", v); }
/* Exactly n bytes on the heap, so that ASan and valgrind see any access past them. */
static void *allocated[16];
static int num_allocated;
static void *buffer(size_t n, size_t align) {
    void *p = NULL;
    if (num_allocated == 16
        || posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, n ? n : 1) != 0) {
        say("out of memory\n");
        exit(3);
    }
    return allocated[num_allocated++] = p;
}
#endif

static int failures, checks;

static void check(int ok, const char *what, long got, long want) {
    checks++;
    if (ok)
        return;
    failures++;
    say("FAIL ");
    say(what);
    say(": got ");
    say_int(got);
    say(", want ");
    say_int(want);
    say("\n");
}

static void fill(uint8_t *p, size_t n, uint8_t v) {
    size_t i;
    for (i = 0; i < n; i++)
        ((volatile uint8_t *)p)[i] = v;
}

static int all(const uint8_t *p, size_t n, uint8_t v) {
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

#ifndef EXPECT_OTHER_ABI
static int same(const uint8_t *a, const uint8_t *b, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}
#endif

static uint8_t *out, *arena;

/* The model's descriptor, member by member (a struct copy may become a memcpy call, which a
   freestanding Hexagon link does not have). */
static void copy_desc(edgecc_model_desc *d) {
    d->magic = enc_model.magic;
    d->abi_version = enc_model.abi_version;
    d->name = enc_model.name;
    d->arena_size = enc_model.arena_size;
    d->arena_align = enc_model.arena_align;
    d->num_inputs = enc_model.num_inputs;
    d->num_outputs = enc_model.num_outputs;
    d->inputs = enc_model.inputs;
    d->outputs = enc_model.outputs;
    d->run = enc_model.run;
}

/* A call that must be refused with `want`: its status, and the untouched canaries. */
static void refused(const char *what, int32_t got, int32_t want) {
    check(got == want, what, got, want);
    check(all(out, ENC_OUTPUT_0_BYTES, 0xA5) && all(arena, ENC_ARENA_SIZE, 0x5A), what, -1000,
          0);
}

static void canaries(void) {
    fill(out, ENC_OUTPUT_0_BYTES, 0xA5);
    fill(arena, ENC_ARENA_SIZE, 0x5A);
}

#define EXPECT(what, call, want) \
    do {                         \
        canaries();              \
        refused(what, call, want); \
    } while (0)

int run_checks(void) {
    int64_t *ids = buffer(ENC_INPUT_0_BYTES, 8);
    int64_t *mask = buffer(ENC_INPUT_1_BYTES, 8);
    uint8_t *first = buffer(ENC_OUTPUT_0_BYTES, 8);
    /* Room to misalign within: the arena and I/O at an offset of a larger block. */
    uint8_t *wide_arena = buffer(ENC_ARENA_SIZE + ENC_ARENA_ALIGN, ENC_ARENA_ALIGN);
    uint8_t *wide_ids = buffer(ENC_INPUT_0_BYTES + 8, 8);
    uint8_t *wide_out = buffer(ENC_OUTPUT_0_BYTES + 8, 8);
    /* Buffers shorter than the model's: only their own sizes are theirs. */
    uint8_t *short_ids = buffer(ENC_INPUT_0_BYTES - 8, 8);
    uint8_t *short_out = buffer(ENC_OUTPUT_0_BYTES - 4, 8);
    const void *ins[ENC_NUM_INPUTS];
    void *outs[ENC_NUM_OUTPUTS];
    size_t in_sizes[ENC_NUM_INPUTS] = {ENC_INPUT_0_BYTES, ENC_INPUT_1_BYTES};
    size_t out_sizes[ENC_NUM_OUTPUTS] = {ENC_OUTPUT_0_BYTES};
    edgecc_model_desc other;
    uint32_t i;
    int32_t st;

    out = buffer(ENC_OUTPUT_0_BYTES, 8);
    arena = buffer(ENC_ARENA_SIZE, ENC_ARENA_ALIGN);
    for (i = 0; i < ENC_INPUT_0_ELEMENTS; i++) {
        ids[i] = (int64_t)((i * 37u) % 100u);
        mask[i] = i < 12u;
    }
    ins[0] = ids;
    ins[1] = mask;
    outs[0] = out;

#if defined(OVERRUN_CONTROL)
    /* What the checks prevent: the unchecked entry point writes the whole output. */
    outs[0] = short_out;
    st = enc_run(ins, outs, arena);
    check(st == EDGECC_OK, "unchecked run", st, EDGECC_OK);
    (void)first, (void)wide_arena, (void)wide_ids, (void)wide_out, (void)short_ids;
    (void)other, (void)copy_desc, (void)in_sizes, (void)out_sizes, (void)same, (void)refused;
    (void)canaries;
#elif defined(EXPECT_OTHER_ABI)
    /* The header speaks another ABI version than the artifact: nothing runs. */
    EXPECT("other ABI: run_checked_io",
           enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena, ENC_ARENA_SIZE),
           EDGECC_ERR_ABI);
    EXPECT("other ABI: run_checked", enc_run_checked(ins, outs, arena, ENC_ARENA_SIZE),
           EDGECC_ERR_ABI);
    (void)first, (void)wide_arena, (void)wide_ids, (void)wide_out, (void)short_ids;
    (void)short_out, (void)other, (void)st, (void)copy_desc;
#else
    /* Correct calls run, and agree. */
    canaries();
    st = enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena, ENC_ARENA_SIZE);
    check(st == EDGECC_OK, "run_checked_io", st, EDGECC_OK);
    check(!all(out, ENC_OUTPUT_0_BYTES, 0xA5), "run_checked_io wrote the output", 0, 1);
    for (i = 0; i < ENC_OUTPUT_0_BYTES; i++)
        first[i] = out[i];
    canaries();
    st = enc_run_checked(ins, outs, arena, ENC_ARENA_SIZE);
    check(st == EDGECC_OK && same(out, first, ENC_OUTPUT_0_BYTES), "run_checked", st, 0);
    canaries();
    st = enc_run_checked_io(ins, in_sizes, outs, out_sizes, wide_arena, ENC_ARENA_SIZE + 1);
    check(st == EDGECC_OK && same(out, first, ENC_OUTPUT_0_BYTES), "larger arena", st, 0);

    /* An artifact of another ABI version, or no descriptor at all. */
    copy_desc(&other);
    other.abi_version = EDGECC_ABI_VERSION + 1u;
    EXPECT("abi version", edgecc_run_checked_io(&other, ins, in_sizes, 2, outs, out_sizes, 1,
                                                arena, ENC_ARENA_SIZE),
           EDGECC_ERR_ABI);
    EXPECT("abi version (run_checked)",
           edgecc_run_checked(&other, ins, 2, outs, 1, arena, ENC_ARENA_SIZE), EDGECC_ERR_ABI);
    copy_desc(&other);
    other.magic = 0;
    EXPECT("magic", edgecc_run_checked_io(&other, ins, in_sizes, 2, outs, out_sizes, 1, arena,
                                          ENC_ARENA_SIZE),
           EDGECC_ERR_ABI);

    /* NULL pointers, each on its own. */
    EXPECT("null descriptor", edgecc_run_checked_io(NULL, ins, in_sizes, 2, outs, out_sizes, 1,
                                                    arena, ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null descriptor (run_checked)",
           edgecc_run_checked(NULL, ins, 2, outs, 1, arena, ENC_ARENA_SIZE), EDGECC_ERR_NULL);
    EXPECT("null inputs", enc_run_checked_io(NULL, in_sizes, outs, out_sizes, arena,
                                             ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null outputs", enc_run_checked_io(ins, in_sizes, NULL, out_sizes, arena,
                                              ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null inputs (run_checked)", enc_run_checked(NULL, outs, arena, ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null outputs (run_checked)", enc_run_checked(ins, NULL, arena, ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null input sizes", enc_run_checked_io(ins, NULL, outs, out_sizes, arena,
                                                  ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null output sizes", enc_run_checked_io(ins, in_sizes, outs, NULL, arena,
                                                   ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null arena", enc_run_checked_io(ins, in_sizes, outs, out_sizes, NULL,
                                            ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null arena (run_checked)", enc_run_checked(ins, outs, NULL, ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    ins[1] = NULL;
    EXPECT("null input 1", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                              ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null input 1 (run_checked)", enc_run_checked(ins, outs, arena, ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    ins[1] = mask;
    outs[0] = NULL;
    EXPECT("null output 0", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                               ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    EXPECT("null output 0 (run_checked)", enc_run_checked(ins, outs, arena, ENC_ARENA_SIZE),
           EDGECC_ERR_NULL);
    outs[0] = out;

    /* Counts. */
    EXPECT("one input", edgecc_run_checked_io(&enc_model, ins, in_sizes, 1, outs, out_sizes, 1,
                                              arena, ENC_ARENA_SIZE),
           EDGECC_ERR_IO_COUNT);
    EXPECT("two outputs", edgecc_run_checked(&enc_model, ins, 2, outs, 2, arena, ENC_ARENA_SIZE),
           EDGECC_ERR_IO_COUNT);

    /* The arena: too small, misaligned; the order of checks (size before buffers). */
    EXPECT("arena one byte short", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                                      ENC_ARENA_SIZE - 1),
           EDGECC_ERR_ARENA_SIZE);
    EXPECT("arena size 0", enc_run_checked(ins, outs, arena, 0), EDGECC_ERR_ARENA_SIZE);
    in_sizes[0] = 0;
    EXPECT("arena before sizes", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                                    ENC_ARENA_SIZE - 1),
           EDGECC_ERR_ARENA_SIZE);
    in_sizes[0] = ENC_INPUT_0_BYTES;
    EXPECT("arena misaligned", enc_run_checked_io(ins, in_sizes, outs, out_sizes,
                                                  wide_arena + 1, ENC_ARENA_SIZE),
           EDGECC_ERR_ARENA_ALIGN);
    EXPECT("arena misaligned (run_checked)",
           enc_run_checked(ins, outs, wide_arena + ENC_ARENA_ALIGN / 2, ENC_ARENA_SIZE),
           EDGECC_ERR_ARENA_ALIGN);

    /* Byte sizes: too short, too long, zero, absurd; and buffers that really are short. */
    in_sizes[0] = ENC_INPUT_0_BYTES - 1;
    EXPECT("input 0 short", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                               ENC_ARENA_SIZE),
           EDGECC_ERR_INPUT_SIZE);
    in_sizes[0] = ENC_INPUT_0_BYTES + 1;
    EXPECT("input 0 long", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                              ENC_ARENA_SIZE),
           EDGECC_ERR_INPUT_SIZE);
    in_sizes[0] = ENC_INPUT_0_BYTES;
    in_sizes[1] = 0;
    EXPECT("input 1 empty", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                               ENC_ARENA_SIZE),
           EDGECC_ERR_INPUT_SIZE);
    in_sizes[1] = (size_t)-1;
    EXPECT("input 1 huge", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                              ENC_ARENA_SIZE),
           EDGECC_ERR_INPUT_SIZE);
    in_sizes[1] = ENC_INPUT_1_BYTES;
    out_sizes[0] = ENC_OUTPUT_0_BYTES - 4;
    EXPECT("output short", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                              ENC_ARENA_SIZE),
           EDGECC_ERR_OUTPUT_SIZE);
    out_sizes[0] = ENC_OUTPUT_0_BYTES;
    ins[0] = short_ids;
    in_sizes[0] = ENC_INPUT_0_BYTES - 8;
    EXPECT("short input buffer", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                                    ENC_ARENA_SIZE),
           EDGECC_ERR_INPUT_SIZE);
    ins[0] = ids;
    in_sizes[0] = ENC_INPUT_0_BYTES;
    {
        void *short_outs[1];
        size_t short_size[1] = {ENC_OUTPUT_0_BYTES - 4};
        short_outs[0] = short_out;
        fill(short_out, ENC_OUTPUT_0_BYTES - 4, 0xA5);
        st = enc_run_checked_io(ins, in_sizes, short_outs, short_size, arena, ENC_ARENA_SIZE);
        check(st == EDGECC_ERR_OUTPUT_SIZE && all(short_out, ENC_OUTPUT_0_BYTES - 4, 0xA5),
              "short output buffer", st, EDGECC_ERR_OUTPUT_SIZE);
    }

    /* Alignment to the element size: int64 inputs to 8, the float output to 4. */
    ins[0] = wide_ids + 4;
    EXPECT("input 0 misaligned", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                                    ENC_ARENA_SIZE),
           EDGECC_ERR_IO_ALIGN);
    EXPECT("input 0 misaligned (run_checked)", enc_run_checked(ins, outs, arena, ENC_ARENA_SIZE),
           EDGECC_ERR_IO_ALIGN);
    ins[0] = ids;
    ins[1] = wide_ids + 1;
    EXPECT("input 1 misaligned", enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena,
                                                    ENC_ARENA_SIZE),
           EDGECC_ERR_IO_ALIGN);
    ins[1] = mask;
    outs[0] = wide_out + 2;
    fill(wide_out, ENC_OUTPUT_0_BYTES + 8, 0xA5);
    st = enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena, ENC_ARENA_SIZE);
    check(st == EDGECC_ERR_IO_ALIGN && all(wide_out, ENC_OUTPUT_0_BYTES + 8, 0xA5),
          "output misaligned", st, EDGECC_ERR_IO_ALIGN);
    st = enc_run_checked(ins, outs, arena, ENC_ARENA_SIZE);
    check(st == EDGECC_ERR_IO_ALIGN, "output misaligned (run_checked)", st, EDGECC_ERR_IO_ALIGN);
    outs[0] = out;

    /* The model's own status: a token id outside the vocabulary is refused by the model,
       with status 1, without reading outside the embedding table. */
    {
        static const int64_t bad[3] = {100, -101, (int64_t)1 << 40};
        for (i = 0; i < 3; i++) {
            ids[5] = bad[i];
            st = enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena, ENC_ARENA_SIZE);
            check(st == 1, "token id out of range", st, 1);
        }
        ids[5] = -1; /* ONNX Gather counts negative indices from the end */
        st = enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena, ENC_ARENA_SIZE);
        check(st == EDGECC_OK, "token id -1", st, EDGECC_OK);
        ids[5] = (int64_t)((5u * 37u) % 100u);
    }

    /* And after all that, a correct call still gives the first result. */
    st = enc_run_checked_io(ins, in_sizes, outs, out_sizes, arena, ENC_ARENA_SIZE);
    check(st == EDGECC_OK && same(out, first, ENC_OUTPUT_0_BYTES), "rerun", st, EDGECC_OK);
#endif
    say("abi checks: ");
    say_int(checks - failures);
    say(" of ");
    say_int(checks);
    say(" passed\n");
    return failures != 0;
}

#ifdef FREESTANDING
void _start(void) {
    sys(93, run_checks(), 0, 0);
    for (;;) {
    }
}
#else
int main(void) {
    int st = run_checks();
    while (num_allocated > 0)
        free(allocated[--num_allocated]);
    return st;
}
#endif
