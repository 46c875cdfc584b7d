/*
 * The Hexagon counterpart of embed.c for qemu-hexagon: links the C that
 * `edgecc compile --target hexagon --name minilm` writes, reads token records from stdin and
 * writes each last_hidden_state to stdout. There is no Hexagon libc here, so this file is
 * freestanding like edgecc's own `run` harness (compiler/src/run_hexagon.rs): its own
 * _start, Linux system calls through trap0(#1) (read 63, write 64, exit 93). On a device
 * the same minilm_run_checked call sits in a FastRPC skeleton instead (docs/pipeline.md).
 *
 *   edgecc compile model.onnx --target hexagon --name minilm -o build/minilm.c
 *   clang-19 --target=hexagon -mv66 -mhvx -mhvx-length=128b -O2 -ffreestanding -c \
 *       build/minilm.c -o build/minilm.hexagon.o
 *   clang-19 --target=hexagon -mv66 -mhvx -mhvx-length=128b -O2 -ffreestanding -nostdlib \
 *       -fuse-ld=lld -static -Ibuild examples/pipeline/embed_hexagon.c build/minilm.hexagon.o \
 *       -o build/embed.elf
 *   qemu-hexagon build/embed.elf < tokens.bin > hidden.bin
 *
 * Exit status: 0, the model's status (a negative EDGECC_ERR_* as its low byte), 120 for a
 * record cut short, 122 when writing fails.
 */
#include "minilm.h"

static long sys(long n, long a, long b, long c) {
    register long r0 asm("r0") = a;
    register long r1 asm("r1") = b;
    register long r2 asm("r2") = c;
    register long r6 asm("r6") = n;
    asm volatile("trap0(#1)" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r6) : "memory");
    return r0;
}

/* Static buffers sized from minilm.h; 128-byte alignment suits HVX (and covers
 * MINILM_ARENA_ALIGN). */
static uint8_t arena[MINILM_ARENA_SIZE + 1] __attribute__((aligned(128)));
static minilm_input_input_ids_t ids __attribute__((aligned(128)));
static minilm_input_attention_mask_t mask __attribute__((aligned(128)));
static minilm_output_last_hidden_state_t hidden __attribute__((aligned(128)));

static __attribute__((noreturn)) void finish(long status) {
    sys(93, status, 0, 0);
    for (;;) {
    }
}

/* Reads (63) or writes (64) n bytes; returns how many were moved before end of file. */
static unsigned long transfer(long nr, long fd, uint8_t *p, unsigned long n) {
    unsigned long done = 0;
    while (done < n) {
        long k = sys(nr, fd, (long)(p + done), (long)(n - done));
        if (k <= 0)
            break;
        done += (unsigned long)k;
    }
    return done;
}

void _start(void) {
    const void *inputs[MINILM_NUM_INPUTS];
    void *outputs[MINILM_NUM_OUTPUTS];
    inputs[MINILM_INPUT_INPUT_IDS_INDEX] = ids;
    inputs[MINILM_INPUT_ATTENTION_MASK_INDEX] = mask;
    outputs[MINILM_OUTPUT_LAST_HIDDEN_STATE_INDEX] = hidden;
    for (;;) {
        int32_t status;
        unsigned long got = transfer(63, 0, (uint8_t *)ids, sizeof ids);
        if (got == 0)
            finish(0);
        if (got != sizeof ids || transfer(63, 0, (uint8_t *)mask, sizeof mask) != sizeof mask)
            finish(120);
        status = minilm_run_checked(inputs, outputs, arena, sizeof arena);
        if (status != EDGECC_OK)
            finish(status);
        if (transfer(64, 1, (uint8_t *)hidden, sizeof hidden) != sizeof hidden)
            finish(122);
    }
}
