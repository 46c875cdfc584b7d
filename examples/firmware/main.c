/*
 * A firmware-style program that links an edgecc object file: no heap, buffers sized at
 * compile time from the generated header, the checked call, outputs printed.
 *
 *   edgecc compile examples/models/cnn/model.onnx --target aarch64-neon --name cnn -o build/cnn.o
 *   aarch64-linux-gnu-gcc -std=c99 -Wall -Wextra -Werror -O2 -static -Ibuild \
 *       -DMODEL_HEADER='"cnn.h"' examples/firmware/main.c build/cnn.o -o build/firmware
 *   qemu-aarch64 build/firmware
 *
 * The macros below name the model 'cnn'; to use another model, compile it with
 * --name cnn or change the three MODEL_ macros.
 */
#include <stdint.h>
#include <stdio.h>

#ifndef MODEL_HEADER
#define MODEL_HEADER "cnn.h"
#endif
#include MODEL_HEADER

#define MODEL_ARENA_SIZE CNN_ARENA_SIZE
#define MODEL_ARENA_ALIGN CNN_ARENA_ALIGN
#define MODEL_RUN cnn_run_checked

/* Every buffer is static: the memory map is fixed when the firmware is linked. */
static uint8_t arena[MODEL_ARENA_SIZE + 1] __attribute__((aligned(MODEL_ARENA_ALIGN)));
static cnn_input_0_t input;
static cnn_output_0_t logits;
static cnn_output_1_t probs;

int main(void) {
    uint32_t i;
    int32_t status;
    const void *inputs[CNN_NUM_INPUTS];
    void *outputs[CNN_NUM_OUTPUTS];

    /* A deterministic test pattern in [-1, 1) that the tests reproduce exactly. */
    for (i = 0; i < CNN_INPUT_0_ELEMENTS; i++)
        input[i] = (float)((i * 7919u) % 256u) / 128.0f - 1.0f;

    inputs[CNN_INPUT_IMAGE_INDEX] = input;
    outputs[CNN_OUTPUT_LOGITS_INDEX] = logits;
    outputs[CNN_OUTPUT_PROBS_INDEX] = probs;
    status = MODEL_RUN(inputs, outputs, arena, sizeof arena);
    if (status != EDGECC_OK) {
        printf("model refused the call: status %d\n", (int)status);
        return 1;
    }
    printf("model %s, arena %u bytes\n", cnn_model.name, (unsigned)MODEL_ARENA_SIZE);
    for (i = 0; i < CNN_OUTPUT_LOGITS_ELEMENTS; i++)
        printf("logits[%u] = %.9g\n", (unsigned)i, (double)logits[i]);
    for (i = 0; i < CNN_OUTPUT_PROBS_ELEMENTS; i++)
        printf("probs[%u] = %.9g\n", (unsigned)i, (double)probs[i]);

    /* The checked call refuses an arena that is too small, without running anything. */
    status = MODEL_RUN(inputs, outputs, arena, MODEL_ARENA_SIZE - 1);
    printf("short arena: status %d\n", (int)status);
    return status == EDGECC_ERR_ARENA_SIZE ? 0 : 1;
}
