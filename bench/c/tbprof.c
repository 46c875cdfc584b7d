/*
 * qemu TCG plugin: guest instructions executed per translation block, for attributing an
 * instruction count to functions (`a64insn --profile` maps the addresses with nm).
 *
 *   cc -O2 -shared -fPIC -I $A64_HOME/qemu/qemu-7.2.0/include/qemu tbprof.c -o libtbprof.so
 *   qemu-aarch64 -plugin ./libtbprof.so,out=blocks.txt ./program args
 *
 * At exit, writes one line per translated block that ran: `0x<start address> <instructions
 * executed in it>` (block length times executions; a block translated twice appears twice).
 * Counting is inline (no callbacks), single-vCPU (a single-threaded user-mode program).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

typedef struct {
    uint64_t pc;
    uint64_t n_insns;
    uint64_t execs;
} block;

#define MAX_BLOCKS (1u << 20)
static block *blocks;
static size_t n_blocks;
static size_t dropped;
static const char *out_path = "tbprof.txt";

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    if (n_blocks == MAX_BLOCKS) {
        dropped++;
        return;
    }
    block *b = &blocks[n_blocks++];
    b->pc = qemu_plugin_tb_vaddr(tb);
    b->n_insns = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    FILE *f = fopen(out_path, "w");
    if (!f) {
        perror(out_path);
        return;
    }
    for (size_t i = 0; i < n_blocks; i++) {
        if (blocks[i].execs) fprintf(f, "0x%" PRIx64 " %" PRIu64 "\n", blocks[i].pc, blocks[i].n_insns * blocks[i].execs);
    }
    if (dropped) fprintf(stderr, "tbprof: table full, %zu blocks not counted\n", dropped);
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) out_path = strdup(argv[i] + 4);
    }
    blocks = calloc(MAX_BLOCKS, sizeof *blocks);
    if (!blocks) return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
