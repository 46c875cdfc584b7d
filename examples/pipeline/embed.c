/*
 * A device-side program for the pipeline example: links an edgecc object of the MiniLM
 * encoder (compiled with --name minilm), runs it on token ids read from a file, and turns
 * each last_hidden_state into a sentence embedding (mean over the real tokens, L2-
 * normalised), as sentence-transformers does. No heap: every buffer is static and sized
 * from the macros of the generated minilm.h.
 *
 *   edgecc compile model.onnx --target aarch64-neon+dotprod --name minilm -o build/minilm.o
 *   aarch64-linux-gnu-gcc -std=c99 -O2 -Wall -Wextra -Werror -static -Ibuild \
 *       examples/pipeline/embed.c build/minilm.o -lm -o build/embed
 *   qemu-aarch64 build/embed tokens.bin hidden.bin embeddings.bin
 *
 * tokens.bin: N records of input_ids then attention_mask, each MINILM_INPUT_*_BYTES bytes
 * (int64, little-endian). hidden.bin gets N last_hidden_state tensors (f32), embeddings.bin
 * N embeddings of the hidden size (f32).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "minilm.h"

#define SEQ (MINILM_INPUT_INPUT_IDS_ELEMENTS)
#define HIDDEN (MINILM_OUTPUT_LAST_HIDDEN_STATE_ELEMENTS / SEQ)

/* The build fails here if the model's signature is not the one this program expects. */
typedef char check_inputs[(MINILM_NUM_INPUTS == 2 && MINILM_NUM_OUTPUTS == 1) ? 1 : -1];
typedef char check_ids[(MINILM_INPUT_INPUT_IDS_DTYPE == EDGECC_DTYPE_I64) ? 1 : -1];
typedef char check_mask[(MINILM_INPUT_ATTENTION_MASK_DTYPE == EDGECC_DTYPE_I64) ? 1 : -1];
typedef char check_out[(MINILM_OUTPUT_LAST_HIDDEN_STATE_DTYPE == EDGECC_DTYPE_F32) ? 1 : -1];

static uint8_t arena[MINILM_ARENA_SIZE + 1] __attribute__((aligned(MINILM_ARENA_ALIGN)));
static minilm_input_input_ids_t ids;
static minilm_input_attention_mask_t mask;
static minilm_output_last_hidden_state_t hidden;
static float embedding[HIDDEN];

static void sentence_embedding(void) {
    uint32_t t, j;
    float count = 0.0f;
    double norm = 0.0;
    for (j = 0; j < HIDDEN; j++)
        embedding[j] = 0.0f;
    for (t = 0; t < SEQ; t++) {
        if (mask[t] == 0)
            continue;
        count += 1.0f;
        for (j = 0; j < HIDDEN; j++)
            embedding[j] += hidden[t * HIDDEN + j];
    }
    for (j = 0; j < HIDDEN; j++) {
        embedding[j] /= count > 0.0f ? count : 1.0f;
        norm += (double)embedding[j] * embedding[j];
    }
    norm = sqrt(norm);
    for (j = 0; j < HIDDEN; j++)
        embedding[j] = (float)(embedding[j] / (norm > 1e-12 ? norm : 1e-12));
}

int main(int argc, char **argv) {
    FILE *in, *out_h, *out_e;
    const void *inputs[MINILM_NUM_INPUTS];
    void *outputs[MINILM_NUM_OUTPUTS];
    unsigned n = 0;
    if (argc != 4) {
        fprintf(stderr, "usage: %s tokens.bin hidden.bin embeddings.bin\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    out_h = fopen(argv[2], "wb");
    out_e = fopen(argv[3], "wb");
    if (!in || !out_h || !out_e) {
        fprintf(stderr, "cannot open the files\n");
        return 2;
    }
    inputs[MINILM_INPUT_INPUT_IDS_INDEX] = ids;
    inputs[MINILM_INPUT_ATTENTION_MASK_INDEX] = mask;
    outputs[MINILM_OUTPUT_LAST_HIDDEN_STATE_INDEX] = hidden;
    while (fread(ids, 1, sizeof ids, in) == sizeof ids) {
        int32_t status;
        if (fread(mask, 1, sizeof mask, in) != sizeof mask) {
            fprintf(stderr, "tokens.bin: record %u is short\n", n);
            return 2;
        }
        status = minilm_run_checked(inputs, outputs, arena, sizeof arena);
        if (status != EDGECC_OK) {
            fprintf(stderr, "model refused the call: status %d\n", (int)status);
            return 1;
        }
        sentence_embedding();
        if (fwrite(hidden, 1, sizeof hidden, out_h) != sizeof hidden
            || fwrite(embedding, 1, sizeof embedding, out_e) != sizeof embedding) {
            fprintf(stderr, "write failed\n");
            return 2;
        }
        n++;
    }
    fclose(in);
    fclose(out_h);
    fclose(out_e);
    printf("%s: %u inferences, arena %u bytes, hidden %u\n", minilm_model.name, n,
           (unsigned)MINILM_ARENA_SIZE, (unsigned)HIDDEN);
    return 0;
}
