/* A qemu TCG plugin that counts the Hexagon packets and instructions a program executes
   (qemu-hexagon -plugin ./hexinsn.so -d plugin -D log ./prog).

   qemu translates Hexagon a packet at a time, so the plugin API's "instructions" are
   packets (up to four instructions issued together: the closest to cycles qemu offers).
   The instructions in a packet are counted from its disassembly, one word per line:
   constant extenders (`immext`) are not instructions, and a duplex word holds two
   (`A; B`). Both counters are inline adds per executed block, so counting costs little.

   The plugin API of qemu 7.2 (version 1) is declared here, not included, so this builds
   with any C compiler and nothing but Debian's qemu-user installed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

#define EXPORT __attribute__((visibility("default")))

EXPORT int qemu_plugin_version = 1;

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                           void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, void *),
                                    void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

static uint64_t packets, instructions;

/* Instructions in one packet's disassembly. */
static uint64_t count(const char *d) {
    uint64_t n = 0;
    for (const char *line = d; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, line, len);
        buf[len] = 0;
        if (!strstr(buf, "immext(")) {
            n++;
            for (const char *c = buf; (c = strchr(c, ';')); c++) n++;
        }
        line = end ? end + 1 : NULL;
    }
    return n;
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t insns = 0;
    for (size_t i = 0; i < n; i++) {
        char *d = qemu_plugin_insn_disas(qemu_plugin_tb_get_insn(tb, i));
        insns += count(d);
        free(d);
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &packets, n);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &instructions,
                                             insns);
}

static void done(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    char s[128];
    snprintf(s, sizeof s, "packets %llu instructions %llu\n", (unsigned long long)packets,
             (unsigned long long)instructions);
    qemu_plugin_outs(s);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc, char **argv) {
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    qemu_plugin_register_atexit_cb(id, done, NULL);
    return 0;
}
