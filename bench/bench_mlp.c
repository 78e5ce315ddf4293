/* libmlp's speed on the shapes people use, single thread:
 *   (a) a tiny 2-8-1 network, one sample: ns per forward and per train step;
 *       the same for a few small in-H-H-out networks;
 *   (b) 784-256-128-10 (ReLU, ReLU, softmax + cross-entropy), batch 64:
 *       training samples/s with SGD and with Adam, inference samples/s at
 *       batch 1 and 256, and the GFLOP/s they imply;
 *   (c) with OpenBLAS (-Dblas=enabled), the same GEMMs through cblas_sgemm
 *       on one thread, as the roof to compare with.
 * Run: meson test -C build --benchmark --logbase benchmarklog -v
 * Each figure is the best of several timed rounds (the machine is shared),
 * after a warm-up. Prints one "name value unit" line per figure. */
#define _POSIX_C_SOURCE 200809L

#include <mlp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

#ifdef MLP_BENCH_CBLAS
#include <cblas.h>
#endif

static void check(mlp_status st, const char *what)
{
    if (st != MLP_OK) {
        fprintf(stderr, "%s: %s\n", what, mlp_strerror(st));
        exit(1);
    }
}

typedef struct bench {
    mlp *net;
    size_t batch;
    const float *x, *target;
    float *y;
    const mlp_loss *loss;
    mlp_optimizer opt;
} bench;

static void train_calls(void *ctx)
{
    bench *b = ctx;
    check(mlp_forward(b->net, b->batch, b->x, NULL), "forward");
    check(mlp_backward(b->net, b->loss, b->target, NULL), "backward");
    check(mlp_step(b->net, &b->opt), "step");
}

static void train_one_call(void *ctx)
{
    bench *b = ctx;
    check(mlp_train_step(b->net, b->batch, b->x, b->loss, b->target, &b->opt, NULL), "train_step");
}

static void forward_only(void *ctx)
{
    bench *b = ctx;
    check(mlp_forward(b->net, b->batch, b->x, b->y), "forward");
}

static void predict_only(void *ctx)
{
    bench *b = ctx;
    check(mlp_predict(b->net, b->batch, b->x, b->y), "predict");
}

static float *random_floats(size_t n, unsigned seed)
{
    float *v = malloc(n * sizeof *v);
    if (!v)
        exit(1);
    uint64_t s = seed * 0x9e3779b97f4a7c15u + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        v[i] = (float)((s * 0x2545f4914f6cdd1du) >> 40) / (float)(1 << 24);
    }
    return v;
}

static void tiny(void)
{
    const mlp_layer layers[2] = {{8, &mlp_relu}, {1, &mlp_sigmoid}};
    mlp_config cfg = {2, 2, layers, 1, MLP_INIT_AUTO, NULL};
    mlp *net;
    check(mlp_create(&net, &cfg), "create");
    float x[2] = {0.25f, -0.5f}, t[1] = {1.0f}, y[1];
    bench b = {net, 1, x, t, y, &mlp_bce, mlp_optimizer_default(MLP_OPT_SGD)};
    printf("tiny_2_8_1_forward_ns %.1f ns\n", 1e9 * best_seconds(forward_only, &b));
    printf("tiny_2_8_1_predict_ns %.1f ns\n", 1e9 * best_seconds(predict_only, &b));
    printf("tiny_2_8_1_train_step_ns %.1f ns\n", 1e9 * best_seconds(train_one_call, &b));
    printf("tiny_2_8_1_three_calls_ns %.1f ns\n", 1e9 * best_seconds(train_calls, &b));
    mlp_free(net);
}

/* Small networks one sample at a time (the control-loop case): in-H-H-out,
 * ReLU hidden layers, sigmoid outputs, binary cross-entropy, plain SGD. */
static void small_shapes(void)
{
    const size_t shapes[4][3] = {{4, 16, 2}, {8, 32, 4}, {16, 64, 4}, {32, 128, 10}};
    float *x = random_floats(32, 6), t[10] = {1.0f, 0.0f, 1.0f, 0.0f, 1.0f};
    float y[10];
    for (int s = 0; s < 4; s++) {
        size_t in = shapes[s][0], h = shapes[s][1], out = shapes[s][2];
        const mlp_layer layers[3] = {{h, &mlp_relu}, {h, &mlp_relu}, {out, &mlp_sigmoid}};
        mlp_config cfg = {in, 3, layers, 1, MLP_INIT_AUTO, NULL};
        mlp *net;
        check(mlp_create(&net, &cfg), "create");
        bench b = {net, 1, x, t, y, &mlp_bce, mlp_optimizer_default(MLP_OPT_SGD)};
        printf("small_%zu_%zu_%zu_%zu_forward_ns %.1f ns\n", in, h, h, out,
               1e9 * best_seconds(forward_only, &b));
        printf("small_%zu_%zu_%zu_%zu_train_step_ns %.1f ns\n", in, h, h, out,
               1e9 * best_seconds(train_one_call, &b));
        mlp_free(net);
    }
    free(x);
}

static void mnist_shaped(void)
{
    const mlp_layer layers[3] = {{256, &mlp_relu}, {128, &mlp_relu}, {10, &mlp_softmax}};
    mlp_config cfg = {784, 3, layers, 1, MLP_INIT_AUTO, NULL};
    mlp *net;
    check(mlp_create(&net, &cfg), "create");
    size_t params = mlp_param_count(net);
    float *x = random_floats(256 * 784, 1), *y = malloc(256 * 10 * sizeof *y);
    float *t = calloc(256 * 10, sizeof *t);
    if (!y || !t)
        exit(1);
    for (size_t r = 0; r < 256; r++)
        t[r * 10 + r % 10] = 1.0f;

    const mlp_optimizer_kind kinds[2] = {MLP_OPT_SGD, MLP_OPT_ADAM};
    const char *names[2] = {"sgd", "adam"};
    for (int k = 0; k < 2; k++) {
        bench b = {net, 64, x, t, y, &mlp_cross_entropy, mlp_optimizer_default(kinds[k])};
        double rate = 64.0 / best_seconds(train_one_call, &b);
        printf("mlp_784_256_128_10_train_%s_b64 %.0f samples/s\n", names[k], rate);
        printf("mlp_784_256_128_10_train_%s_b64_gflops %.1f GFLOP/s\n", names[k],
               rate * 6.0 * (double)params / 1e9);
        /* The same step as mlp_forward, mlp_backward and mlp_step. */
        printf("mlp_784_256_128_10_train_%s_b64_three_calls %.0f samples/s\n", names[k],
               64.0 / best_seconds(train_calls, &b));
    }
    const size_t batches[2] = {1, 256};
    for (int k = 0; k < 2; k++) {
        bench b = {net, batches[k], x, t, y, &mlp_cross_entropy, mlp_optimizer_default(0)};
        double rate = (double)batches[k] / best_seconds(predict_only, &b);
        printf("mlp_784_256_128_10_predict_b%zu %.0f samples/s\n", batches[k], rate);
        printf("mlp_784_256_128_10_predict_b%zu_gflops %.1f GFLOP/s\n", batches[k],
               rate * 2.0 * (double)params / 1e9);
    }
    free(x);
    free(y);
    free(t);
    mlp_free(net);
}

/* How training cost grows with width and batch: 784-W-W-10 (ReLU, ReLU,
 * softmax), SGD, samples/s and GFLOP/s. */
static void scaling(void)
{
    const size_t widths[3] = {64, 256, 1024}, batches[4] = {1, 16, 64, 256};
    float *x = random_floats(256 * 784, 5), *t = calloc(256 * 10, sizeof *t);
    if (!t)
        exit(1);
    for (size_t r = 0; r < 256; r++)
        t[r * 10 + r % 10] = 1.0f;
    for (int w = 0; w < 3; w++) {
        const mlp_layer layers[3] = {
            {widths[w], &mlp_relu}, {widths[w], &mlp_relu}, {10, &mlp_softmax}};
        mlp_config cfg = {784, 3, layers, 1, MLP_INIT_AUTO, NULL};
        mlp *net;
        check(mlp_create(&net, &cfg), "create");
        for (int b = 0; b < 4; b++) {
            bench bb = {net,
                        batches[b],
                        x,
                        t,
                        NULL,
                        &mlp_cross_entropy,
                        mlp_optimizer_default(MLP_OPT_SGD)};
            double rate = (double)batches[b] / best_seconds(train_one_call, &bb);
            printf("scaling_784_%zu_%zu_10_train_b%zu %.0f samples/s\n", widths[w], widths[w],
                   batches[b], rate);
            printf("scaling_784_%zu_%zu_10_train_b%zu_gflops %.1f GFLOP/s\n", widths[w], widths[w],
                   batches[b], rate * 6.0 * (double)mlp_param_count(net) / 1e9);
        }
        mlp_free(net);
    }
    free(x);
    free(t);
}

#ifdef MLP_BENCH_CBLAS
/* The GEMMs of one batch-64 training step of 784-256-128-10: per layer the
 * forward product, the weight gradient and (but the first) the input
 * gradient. */
typedef struct gemm_shape {
    int m, n, k;
    enum CBLAS_TRANSPOSE ta, tb;
} gemm_shape;

static const gemm_shape train_gemms[] = {
    {64, 256, 784, CblasNoTrans, CblasTrans},   {256, 784, 64, CblasTrans, CblasNoTrans},
    {64, 128, 256, CblasNoTrans, CblasTrans},   {128, 256, 64, CblasTrans, CblasNoTrans},
    {64, 256, 128, CblasNoTrans, CblasNoTrans}, {64, 10, 128, CblasNoTrans, CblasTrans},
    {10, 128, 64, CblasTrans, CblasNoTrans},    {64, 128, 10, CblasNoTrans, CblasNoTrans},
};

typedef struct blas_ctx {
    float *a, *b, *c;
} blas_ctx;

static void blas_step(void *ctx)
{
    blas_ctx *g = ctx;
    for (size_t i = 0; i < sizeof train_gemms / sizeof train_gemms[0]; i++) {
        const gemm_shape *s = &train_gemms[i];
        int lda = s->ta == CblasNoTrans ? s->k : s->m, ldb = s->tb == CblasNoTrans ? s->n : s->k;
        cblas_sgemm(CblasRowMajor, s->ta, s->tb, s->m, s->n, s->k, 1.0f, g->a, lda, g->b, ldb, 0.0f,
                    g->c, s->n);
    }
}

static void blas_roof(void)
{
    blas_ctx g = {random_floats(256 * 784, 2), random_floats(256 * 784, 3),
                  random_floats(256 * 784, 4)};
    double flops = 0.0;
    for (size_t i = 0; i < sizeof train_gemms / sizeof train_gemms[0]; i++)
        flops += 2.0 * train_gemms[i].m * train_gemms[i].n * train_gemms[i].k;
    double seconds = best_seconds(blas_step, &g);
    printf("openblas_train_gemms_b64_gflops %.1f GFLOP/s\n", flops / seconds / 1e9);
    printf("openblas_train_gemm_roof_b64 %.0f samples/s\n", 64.0 / seconds);
    free(g.a);
    free(g.b);
    free(g.c);
}
#endif

int main(void)
{
    tiny();
    small_shapes();
    mnist_shaped();
    scaling();
#ifdef MLP_BENCH_CBLAS
    blas_roof();
#endif
    return 0;
}
