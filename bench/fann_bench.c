/* FANN on the shapes of bench_mlp, for bench/compare.sh: a 2-8-1 network
 * (forward and one-sample train step), the small in-H-H-out networks
 * likewise, and 784-256-128-10 (per-sample
 * training, the only kind FANN has, and batch-1 inference). Hidden layers
 * use FANN_LINEAR_PIECE, FANN 2.2's closest to ReLU; outputs sigmoid.
 * Prints the same "name value unit" lines as bench_mlp. */
#define _POSIX_C_SOURCE 200809L

#include <fann.h>

#include <stdio.h>
#include <stdlib.h>

#include "timing.h"

typedef struct bench {
    struct fann *ann;
    fann_type *x, *t;
    size_t samples, inputs, outputs;
} bench;

static void run(void *ctx)
{
    bench *b = ctx;
    fann_run(b->ann, b->x);
}

static void train(void *ctx)
{
    bench *b = ctx;
    fann_train(b->ann, b->x, b->t);
}

/* All samples of a batch, one fann_train each. */
static void train_batch(void *ctx)
{
    bench *b = ctx;
    for (size_t s = 0; s < b->samples; s++)
        fann_train(b->ann, b->x + s * b->inputs, b->t + s * b->outputs);
}

static struct fann *make(unsigned layers, const unsigned *sizes)
{
    struct fann *ann = fann_create_standard_array(layers, sizes);
    if (!ann)
        exit(1);
    fann_set_activation_function_hidden(ann, FANN_LINEAR_PIECE);
    fann_set_activation_function_output(ann, FANN_SIGMOID);
    fann_set_training_algorithm(ann, FANN_TRAIN_INCREMENTAL);
    return ann;
}

int main(void)
{
    const unsigned tiny_sizes[3] = {2, 8, 1};
    fann_type tx[2] = {0.25f, -0.5f}, tt[1] = {1.0f};
    bench tiny = {make(3, tiny_sizes), tx, tt, 1, 2, 1};
    printf("tiny_2_8_1_forward_ns %.1f ns\n", 1e9 * best_seconds(run, &tiny));
    printf("tiny_2_8_1_train_step_ns %.1f ns\n", 1e9 * best_seconds(train, &tiny));
    fann_destroy(tiny.ann);

    const unsigned small[4][4] = {
        {4, 16, 16, 2}, {8, 32, 32, 4}, {16, 64, 64, 4}, {32, 128, 128, 10}};
    fann_type sx[32], st[10] = {1.0f, 0.0f, 1.0f, 0.0f, 1.0f};
    for (int i = 0; i < 32; i++)
        sx[i] = (fann_type)((i * 2654435761u) % 1000) / 1000.0f;
    for (int s = 0; s < 4; s++) {
        const unsigned *z = small[s];
        bench b = {make(4, z), sx, st, 1, z[0], z[3]};
        printf("small_%u_%u_%u_%u_forward_ns %.1f ns\n", z[0], z[1], z[2], z[3],
               1e9 * best_seconds(run, &b));
        printf("small_%u_%u_%u_%u_train_step_ns %.1f ns\n", z[0], z[1], z[2], z[3],
               1e9 * best_seconds(train, &b));
        fann_destroy(b.ann);
    }

    const unsigned sizes[4] = {784, 256, 128, 10};
    bench big = {make(4, sizes),
                 malloc(64 * 784 * sizeof(fann_type)),
                 calloc(64 * 10, sizeof(fann_type)),
                 64,
                 784,
                 10};
    if (!big.x || !big.t)
        return 1;
    for (size_t i = 0; i < 64 * 784; i++)
        big.x[i] = (fann_type)((i * 2654435761u) % 1000) / 1000.0f;
    for (size_t s = 0; s < 64; s++)
        big.t[s * 10 + s % 10] = 1.0f;
    printf("mlp_784_256_128_10_train_sgd_b64 %.0f samples/s\n",
           64.0 / best_seconds(train_batch, &big));
    printf("mlp_784_256_128_10_predict_b1 %.0f samples/s\n", 1.0 / best_seconds(run, &big));
    fann_destroy(big.ann);
    free(big.x);
    free(big.t);
    return 0;
}
