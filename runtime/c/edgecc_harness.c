/*
 * Generic test harness for an edgecc artifact: runs one inference on raw binary files.
 *
 * Nothing in it is model-specific except the descriptor symbol, chosen at build time:
 *
 *   aarch64-linux-gnu-gcc -static -O2 -DEDGECC_MODEL=mynet_model \
 *       edgecc_harness.c mynet.o -o harness
 *   qemu-aarch64 ./harness in0.bin in1.bin -- out0.bin
 *   qemu-aarch64 ./harness in0.bin in1.bin -- out0.bin 100   # run 100 times
 *
 * The optional run count is how the aarch64 instruction counter (count.py `exe`) passes
 * it: the program runs with 1 and with 1+K runs, so nothing per run prints or reads
 * timers; outputs are written once, after the last run.
 *
 * Every input file must hold exactly the byte size its descriptor states; every output
 * is written raw (little-endian, as the model stores it). The descriptor structures
 * mirror runtime/src/lib.rs (64-bit targets: TensorDesc is 88 bytes, ModelDesc 64).
 *
 * Exit status: 0 success, 2 usage, 3 file error, 4 not an edgecc descriptor or wrong
 * ABI version, 5 allocation failure, 6 the model returned a non-zero status.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EDGECC_MODEL
#error "define EDGECC_MODEL as the descriptor symbol, e.g. -DEDGECC_MODEL=model_model"
#endif

#define EDGECC_ABI_MAGIC 0x43474445u /* "EDGC" little-endian */
#define EDGECC_ABI_VERSION 1u
#define EDGECC_MAX_RANK 8

typedef struct {
    const char *name;
    uint32_t dtype;
    uint32_t rank;
    uint64_t byte_size;
    uint64_t shape[EDGECC_MAX_RANK];
} edgecc_tensor_desc;

typedef int32_t (*edgecc_run_fn)(const uint8_t *const *inputs, uint8_t *const *outputs, uint8_t *arena);

typedef struct {
    uint32_t magic;
    uint32_t abi_version;
    const char *name;
    uint64_t arena_size;
    uint64_t arena_align;
    uint32_t num_inputs;
    uint32_t num_outputs;
    const edgecc_tensor_desc *inputs;
    const edgecc_tensor_desc *outputs;
    edgecc_run_fn run;
} edgecc_model_desc;

_Static_assert(sizeof(edgecc_tensor_desc) == 88, "TensorDesc layout");
_Static_assert(sizeof(edgecc_model_desc) == 64, "ModelDesc layout");

extern const edgecc_model_desc EDGECC_MODEL;

static void *read_exact(const char *path, uint64_t size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    /* One spare byte so that an over-long file is detected. */
    uint8_t *buf = malloc(size + 1);
    size_t got = buf ? fread(buf, 1, size + 1, f) : 0;
    fclose(f);
    if (!buf || got != size) {
        fprintf(stderr, "%s: expected exactly %llu bytes, read %zu\n", path, (unsigned long long)size, got);
        free(buf);
        return NULL;
    }
    return buf;
}

int main(int argc, char **argv) {
    const edgecc_model_desc *d = &EDGECC_MODEL;
    if (d->magic != EDGECC_ABI_MAGIC || d->abi_version != EDGECC_ABI_VERSION) {
        fprintf(stderr, "not an edgecc v%u descriptor (magic %#x, version %u)\n", EDGECC_ABI_VERSION, d->magic,
                d->abi_version);
        return 4;
    }
    int sep = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            sep = i;
            break;
        }
    }
    /* An optional run count after the output files (for instruction counting). */
    long runs = 1;
    int extra = sep < 0 ? 0 : argc - sep - 1 - (int)d->num_outputs;
    if (extra == 1) {
        char *end = NULL;
        runs = strtol(argv[argc - 1], &end, 10);
        if (!end || *end != '\0') runs = 0;
    }
    if (sep < 0 || (uint32_t)(sep - 1) != d->num_inputs || (extra != 0 && extra != 1) || runs < 1) {
        fprintf(stderr, "usage: %s <%u input files> -- <%u output files> [RUNS]   (model %s)\n", argv[0],
                d->num_inputs, d->num_outputs, d->name);
        return 2;
    }
    const uint8_t **ins = calloc(d->num_inputs + 1, sizeof *ins);
    uint8_t **outs = calloc(d->num_outputs + 1, sizeof *outs);
    if (!ins || !outs) return 5;
    for (uint32_t i = 0; i < d->num_inputs; i++) {
        ins[i] = read_exact(argv[1 + i], d->inputs[i].byte_size);
        if (!ins[i]) return 3;
    }
    for (uint32_t i = 0; i < d->num_outputs; i++) {
        outs[i] = malloc(d->outputs[i].byte_size ? d->outputs[i].byte_size : 1);
        if (!outs[i]) return 5;
    }
    uint64_t align = d->arena_align < 16 ? 16 : d->arena_align;
    uint64_t size = (d->arena_size + align - 1) / align * align;
    uint8_t *arena = aligned_alloc(align, size ? size : align);
    if (!arena) return 5;

    for (long r = 0; r < runs; r++) {
        int32_t status = d->run(ins, outs, arena);
        if (status != 0) {
            fprintf(stderr, "%s_run returned %d (run %ld)\n", d->name, status, r);
            return 6;
        }
    }
    for (uint32_t i = 0; i < d->num_outputs; i++) {
        const char *path = argv[sep + 1 + i];
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(outs[i], 1, d->outputs[i].byte_size, f) != d->outputs[i].byte_size) {
            perror(path);
            return 3;
        }
        fclose(f);
    }
    return 0;
}
