/* libFuzzer target: model files from untrusted bytes.
 *
 * Every input is loaded twice with mlp_load_buffer: as it is, and with its
 * last 4 bytes replaced by the correct CRC-32 of the bytes before them, so
 * mutations get past the checksum and reach the parser. A model that loads
 * is run (mlp_predict on a zero input), saved again with mlp_save_buffer and
 * reloaded; its bytes must equal the input's and the reload must predict
 * the same status and bits. Anything else — a crash, a sanitizer report, a leak, a status
 * the API does not document, a write to *out on failure — aborts.
 *
 * Build and run (clang only):
 *   CC=clang meson setup build-fuzz -Dfuzzing=enabled
 *   ninja -C build-fuzz tests/fuzz/fuzz_load
 *   cp -r tests/fuzz/corpus/load /tmp/corpus-load   # keep the seeds small
 *   ./build-fuzz/tests/fuzz/fuzz_load -max_total_time=600 -print_final_stats=1 \
 *       /tmp/corpus-load tests/fuzz/corpus/load
 * A crash leaves crash-<sha1> in the working directory; replay it with
 *   ./build-fuzz/tests/fuzz/fuzz_load crash-<sha1>
 */
#include "mlp.h"

#include "../crc32_reference.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stands for "*out was never written". */
static max_align_t sentinel_object;
#define SENTINEL_NET ((mlp *)(void *)&sentinel_object)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* The statuses mlp_load_buffer documents, for built-in activations and no
 * options: no INVALID, no IO. */
static int load_status_ok(mlp_status st)
{
    return st == MLP_OK || st == MLP_ERR_FORMAT || st == MLP_ERR_ACTIVATION || st == MLP_ERR_NOMEM;
}

/* Zero input, one sample; y receives the outputs. Finite parameters can
 * still overflow an output: MLP_ERR_NONFINITE, with y written. */
static mlp_status predict_zero(const mlp *net, float *y)
{
    size_t n_in = mlp_inputs(net);
    float *x = calloc(n_in, sizeof *x);
    CHECK(x);
    mlp_status st = mlp_predict(net, 1, x, y);
    free(x);
    CHECK(st == MLP_OK || st == MLP_ERR_NONFINITE || st == MLP_ERR_NOMEM);
    return st;
}

static void check_model(const uint8_t *data, size_t size)
{
    mlp *net = SENTINEL_NET;
    mlp_status st = mlp_load_buffer(&net, data, size, NULL);
    CHECK(load_status_ok(st));
    if (st != MLP_OK) {
        CHECK(net == SENTINEL_NET);
        return;
    }
    CHECK(net != NULL && net != SENTINEL_NET);
    size_t n_out = mlp_outputs(net);
    CHECK(mlp_inputs(net) >= 1 && n_out >= 1 && mlp_param_count(net) >= 2);
    float *y = malloc(n_out * sizeof *y), *y_again = malloc(n_out * sizeof *y_again);
    CHECK(y && y_again);
    mlp_status predicted = predict_zero(net, y);

    /* Saving again gives back exactly the bytes loaded. */
    size_t len = 0;
    CHECK(mlp_save_buffer(net, NULL, 0, &len) == MLP_OK);
    CHECK(len == size);
    uint8_t *again = malloc(len);
    CHECK(again);
    size_t written = 0;
    CHECK(mlp_save_buffer(net, again, len, &written) == MLP_OK);
    CHECK(written == len && memcmp(again, data, size) == 0);

    mlp *reloaded = SENTINEL_NET;
    CHECK(mlp_load_buffer(&reloaded, again, len, NULL) == MLP_OK);
    CHECK(mlp_param_count(reloaded) == mlp_param_count(net));
    mlp_status predicted_again = predict_zero(reloaded, y_again);
    if (predicted != MLP_ERR_NOMEM && predicted_again != MLP_ERR_NOMEM) {
        CHECK(predicted == predicted_again);
        CHECK(memcmp(y, y_again, n_out * sizeof *y) == 0);
    }

    mlp_free(reloaded);
    free(again);
    free(y_again);
    free(y);
    mlp_free(net);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_model(data, size);
    if (size >= 4) {
        uint8_t *fixed = malloc(size);
        CHECK(fixed);
        memcpy(fixed, data, size);
        uint32_t crc = crc32_reference(fixed, size - 4);
        for (int i = 0; i < 4; i++)
            fixed[size - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
        if (memcmp(fixed, data, size) != 0) /* else already checked */
            check_model(fixed, size);
        free(fixed);
    }
    return 0;
}
