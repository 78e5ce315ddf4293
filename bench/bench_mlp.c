/* libmlp's speed on the shapes people use, single thread:
 *   (a) a tiny 2-8-1 network, one sample: ns per forward and per train step;
 *       the same for a few small in-H-H-out networks;
 *   (b) 784-256-128-10 (ReLU, ReLU, softmax + cross-entropy), batch 64:
 *       training samples/s with SGD and with Adam, inference samples/s at
 *       batch 1 and 256, and the GFLOP/s they imply;
 *   (c) with OpenBLAS (-Dblas=enabled), the same GEMMs through cblas_sgemm
 *       on one thread, as the roof to compare with;
 *   (d) on x86-64 with AVX2 and FMA, the floor of (a)'s train step: its
 *       arithmetic alone, the network in registers.
 * Run: meson test -C build --benchmark --logbase benchmarklog -v
 * Each figure is the best of several timed rounds (the machine is shared),
 * after a warm-up. Prints one "name value unit" line per figure. */
#define _POSIX_C_SOURCE 200809L

#include <mlp.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

#ifdef MLP_BENCH_CBLAS
#include <cblas.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#define MLP_BENCH_FLOOR
#include <immintrin.h>
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

#ifdef MLP_BENCH_FLOOR
/* A floor for the 2-8-1 train step (target 1): its arithmetic alone, in
 * short operations (AVX2 and FMA, the inputs' products with lr formed once,
 * e^-|z| in float to the precision the library's tests ask), on a network
 * held in registers from one step to the next: no loads or stores on the
 * step's chain, no argument or NaN checks, no rollback, no call per step.
 * Each step still waits for the last one's weights, through the forward,
 * the loss's exponential and division, and the backward: the time of that
 * chain is what a library's step adds its own work to. */
typedef struct floor_net {
    float w0[8], w1[8], b1[8], w2[8], b2; /* W1's two columns, b1, W2, b2 */
    float x0, x1, lr;
    long steps;
} floor_net;

/* e^x for -87 <= x <= 0 (below, the exponent would wrap), relative error
 * under 3e-7 (the library's tests ask 1e-6): e^x = 2^k e^r, k = round(x /
 * ln 2), r = x - k ln 2 in two parts (Cody and Waite), |r| <= ln 2 / 2, e^r
 * by a degree-5 polynomial fitted for relative error (1.4e-7), evaluated in
 * pairs (Estrin) so that its chain is 3 operations deep rather than 5. */
__attribute__((target("avx2,fma"))) static inline __m128 floor_exp(__m128 x)
{
    __m128 k = _mm_round_ps(_mm_mul_ps(x, _mm_set1_ps(1.44269504f)),
                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m128 r = _mm_fnmadd_ps(k, _mm_set1_ps(0.693145751953125f), x);
    r = _mm_fnmadd_ps(k, _mm_set1_ps(1.4286068e-6f), r);
    __m128 r2 = _mm_mul_ps(r, r);
    __m128 p01 = _mm_fmadd_ps(_mm_set1_ps(0.9999997f), r, _mm_set1_ps(1.0000001f));
    __m128 p23 = _mm_fmadd_ps(_mm_set1_ps(0.16667575f), r, _mm_set1_ps(0.49998894f));
    __m128 p45 = _mm_fmadd_ps(_mm_set1_ps(0.0082976548f), r, _mm_set1_ps(0.041915383f));
    __m128 p = _mm_fmadd_ps(_mm_mul_ps(r2, r2), p45, _mm_fmadd_ps(r2, p23, p01));
    __m128i e = _mm_slli_epi32(_mm_cvtps_epi32(k), 23);
    return _mm_castsi128_ps(_mm_add_epi32(_mm_castps_si128(p), e));
}

/* floor_exp's largest relative error against libm's exp over [-87, 0]. */
__attribute__((target("avx2,fma"))) static double floor_exp_error(void)
{
    double worst = 0.0;
    for (int i = 0; i <= 870000; i++) {
        float x = -(float)i * 1e-4f;
        double d = fabs(_mm_cvtss_f32(floor_exp(_mm_set_ss(x))) / exp((double)x) - 1.0);
        worst = d > worst ? d : worst;
    }
    return worst;
}

/* n->steps SGD steps of ReLU, sigmoid + binary cross-entropy on one sample. */
__attribute__((target("avx2,fma"))) static void floor_steps(void *ctx)
{
    floor_net *n = ctx;
    __m256 w0 = _mm256_loadu_ps(n->w0), w1 = _mm256_loadu_ps(n->w1);
    __m256 b1 = _mm256_loadu_ps(n->b1), w2 = _mm256_loadu_ps(n->w2);
    __m128 b2 = _mm_set_ss(n->b2), one = _mm_set_ss(1.0f);
    __m256 x0 = _mm256_set1_ps(n->x0), x1 = _mm256_set1_ps(n->x1), lr = _mm256_set1_ps(n->lr);
    __m256 lr_x0 = _mm256_mul_ps(lr, x0), lr_x1 = _mm256_mul_ps(lr, x1);
    __m256 zero = _mm256_setzero_ps();
    for (long s = 0; s < n->steps; s++) {
        __m256 z1 = _mm256_fmadd_ps(w1, x1, _mm256_fmadd_ps(w0, x0, b1));
        __m256 h = _mm256_max_ps(z1, zero);
        __m256 p = _mm256_mul_ps(w2, h);
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        __m128 z2 = _mm_add_ss(_mm_add_ss(q, _mm_movehdup_ps(q)), b2);
        /* dL/dz = sigmoid(z) - 1 as the library forms it, from e = e^-|z|:
         * -e / (1 + e) for z >= 0, -1 / (1 + e) for z < 0 */
        __m128 e = floor_exp(_mm_or_ps(z2, _mm_set_ss(-0.0f)));
        __m128 g = _mm_div_ss(_mm_blendv_ps(e, one, z2), _mm_fnmsub_ss(one, e, one));
        __m256 gv = _mm256_broadcastss_ps(g);
        __m256 dh = _mm256_and_ps(_mm256_mul_ps(gv, w2), _mm256_cmp_ps(z1, zero, _CMP_GT_OQ));
        w2 = _mm256_fnmadd_ps(_mm256_mul_ps(gv, lr), h, w2);
        b2 = _mm_fnmadd_ss(g, _mm256_castps256_ps128(lr), b2);
        w0 = _mm256_fnmadd_ps(dh, lr_x0, w0);
        w1 = _mm256_fnmadd_ps(dh, lr_x1, w1);
        b1 = _mm256_fnmadd_ps(dh, lr, b1);
    }
    _mm256_storeu_ps(n->w0, w0);
    _mm256_storeu_ps(n->w1, w1);
    _mm256_storeu_ps(n->b1, b1);
    _mm256_storeu_ps(n->w2, w2);
    n->b2 = _mm_cvtss_f32(b2);
}

/* The largest difference, relative to |value| + 1e-3, between the
 * floor's parameters and the library's after 1000 steps of each from the
 * floor's: it must compute the library's step. */
static double floor_agreement(mlp *net, floor_net *f, const float *x, const float *t,
                              const mlp_optimizer *opt)
{
    float *p = mlp_params(net, NULL); /* W1 (8 x 2), b1, W2 (1 x 8), b2 */
    for (int o = 0; o < 8; o++)
        p[2 * o] = f->w0[o], p[2 * o + 1] = f->w1[o], p[16 + o] = f->b1[o], p[24 + o] = f->w2[o];
    p[32] = f->b2;
    long steps = f->steps;
    f->steps = 1000;
    floor_steps(f);
    f->steps = steps;
    for (int i = 0; i < 1000; i++)
        check(mlp_train_step(net, 1, x, &mlp_bce, t, opt, NULL), "train_step");
    double worst = fabs((double)f->b2 - p[32]) / (fabs(p[32]) + 1e-3);
    for (int o = 0; o < 8; o++) {
        const float mine[4] = {f->w0[o], f->w1[o], f->b1[o], f->w2[o]};
        const float lib[4] = {p[2 * o], p[2 * o + 1], p[16 + o], p[24 + o]};
        for (int k = 0; k < 4; k++) {
            double d = fabs((double)mine[k] - lib[k]) / (fabs(lib[k]) + 1e-3);
            worst = d > worst ? d : worst;
        }
    }
    return worst;
}

/* The floor, timed (if timed) between two checks of its steps against
 * mlp_train_step's: from the initial weights, and from where the timing
 * left them (further on, where |z| is larger); and its exponential checked
 * against libm's, which the steps' agreement would not show. Exits on a
 * failed check. */
static void tiny_floor(int timed)
{
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "tiny_2_8_1_train_step_floor: skipped (no AVX2 and FMA)\n");
        return;
    }
    const mlp_layer layers[2] = {{8, &mlp_relu}, {1, &mlp_sigmoid}};
    mlp_config cfg = {2, 2, layers, 1, MLP_INIT_AUTO, NULL};
    mlp *net;
    check(mlp_create(&net, &cfg), "create");
    float x[2] = {0.25f, -0.5f}, t[1] = {1.0f}; /* the floor's loss is for target 1 */
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    const float *p = mlp_params(net, NULL);
    floor_net f = {.b2 = p[32], .x0 = x[0], .x1 = x[1], .lr = (float)opt.learning_rate};
    for (int o = 0; o < 8; o++)
        f.w0[o] = p[2 * o], f.w1[o] = p[2 * o + 1], f.b1[o] = p[16 + o], f.w2[o] = p[24 + o];
    double worst = floor_agreement(net, &f, x, t, &opt);
    double seconds = 0.0;
    if (timed) {
        f.steps = 1000;
        seconds = best_seconds(floor_steps, &f) / 1000;
    } else {
        f.steps = 10000000; /* about as far on as the timing takes it */
        floor_steps(&f);
    }
    double later = floor_agreement(net, &f, x, t, &opt);
    worst = later > worst ? later : worst;
    double exp_error = floor_exp_error();
    if (worst > 1e-5 || exp_error > 1e-6) {
        fprintf(stderr, "floor: its steps differ from mlp_train_step's (%g), or e^x is off (%g)\n",
                worst, exp_error);
        exit(1);
    }
    if (timed)
        printf("tiny_2_8_1_train_step_floor_ns %.1f ns\n", 1e9 * seconds);
    printf("tiny_2_8_1_train_step_floor_agreement %.2g relative\n", worst);
    printf("tiny_2_8_1_train_step_floor_exp_error %.2g relative\n", exp_error);
    mlp_free(net);
}
#endif

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

/* With --check-floor, only the floor's checks (CI runs them), untimed. */
int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--check-floor") == 0) {
#ifdef MLP_BENCH_FLOOR
        tiny_floor(0);
#endif
        return 0;
    }
    tiny();
#ifdef MLP_BENCH_FLOOR
    tiny_floor(1);
#endif
    small_shapes();
    mnist_shaped();
    scaling();
#ifdef MLP_BENCH_CBLAS
    blas_roof();
#endif
    return 0;
}
