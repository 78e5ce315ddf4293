/* The matrix kernels behind the dense layers, each instruction-set version
 * this processor can run (not only the one dispatch picks), against a
 * double-precision reference: every layout, edge tiles, shapes across the
 * blocking sizes. Links the static library to reach the internal kernels. */
#include "helpers.h"

#include "internal.h" /* the kernels, and the losses' exponentials */

#include <float.h>

typedef struct kernel_version {
    const char *name;
    const char *cpu_feature; /* NULL: any processor */
    size_t (*workspace)(size_t n);
    void (*gemm)(size_t m, size_t n, size_t k, const mlp_matrix *a, const mlp_matrix *b, float *c,
                 size_t ldc, int add, const mlp_epilogue *epi, size_t col0, float *work);
    void (*gemv)(size_t out, size_t in, const float *w, const float *x, float *y);
} kernel_version;

static const kernel_version versions[] = {
    {"generic", NULL, mlp_gemm_workspace_generic, mlp_gemm_generic, mlp_gemv_generic},
#ifdef MLP_X86_KERNELS
    {"avx2", "avx2", mlp_gemm_workspace_avx2, mlp_gemm_avx2, mlp_gemv_avx2},
    {"avx512", "avx512f", mlp_gemm_workspace_avx512, mlp_gemm_avx512, mlp_gemv_avx512},
#endif
};

static int runnable(const kernel_version *v)
{
#ifdef MLP_X86_KERNELS
    if (v->cpu_feature && strcmp(v->cpu_feature, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (v->cpu_feature)
        return __builtin_cpu_supports("avx512f");
#endif
    return v->cpu_feature == NULL;
}

/* |c - a b| within float rounding of a k-term sum of products of values
 * in [-1, 1]. */
static void check_gemm(const kernel_version *v, size_t m, size_t n, size_t k, int trans_a,
                       int trans_b, int add, uint64_t seed)
{
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b);
    float *c = malloc(m * n * sizeof *c), *work = malloc(v->workspace(n) * sizeof *work);
    assert_true(a && b && c && work);
    test_fill(&seed, a, m * k, -1.0f, 1.0f);
    test_fill(&seed, b, k * n, -1.0f, 1.0f);
    test_fill(&seed, c, m * n, -1.0f, 1.0f); /* added to the product, or overwritten */
    float *c0 = malloc(m * n * sizeof *c0);
    assert_non_null(c0);
    memcpy(c0, c, m * n * sizeof *c);
    mlp_matrix am = trans_a ? (mlp_matrix){a, 1, m} : (mlp_matrix){a, k, 1};
    mlp_matrix bm = trans_b ? (mlp_matrix){b, 1, k} : (mlp_matrix){b, n, 1};
    v->gemm(m, n, k, &am, &bm, c, n, add, NULL, 0, work);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double sum = add ? c0[i * n + j] : 0.0;
            for (size_t p = 0; p < k; p++)
                sum += (double)am.data[i * am.row_stride + p * am.col_stride] *
                       bm.data[p * bm.row_stride + j * bm.col_stride];
            assert_close(c[i * n + j], sum, 1e-6 * (double)(k + 1));
        }
    free(a);
    free(b);
    free(c);
    free(c0);
    free(work);
}

/* Sizes around the register tiles (4/6/8 rows, 8/16/32 columns) and the
 * cache blocks (KC = 256 deep, MC = 8 tiles tall), and B's rows or
 * columns 4 KiB apart (1024 floats: packed in another order), in every
 * layout, adding to C and overwriting it. */
static void test_gemm_matches_reference_for_every_version(void **state)
{
    (void)state;
    const size_t shapes[][3] = {{1, 1, 1},     {7, 13, 5},     {8, 32, 256},  {9, 33, 257},
                                {64, 10, 128}, {65, 100, 300}, {70, 40, 520}, {3, 200, 2},
                                {9, 70, 1024}, {3, 1024, 20}};
    int ran = 0;
    for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
        if (!runnable(&versions[v]))
            continue;
        ran++;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int layout = 0; layout < 8; layout++)
                check_gemm(&versions[v], shapes[s][0], shapes[s][1], shapes[s][2], layout & 1,
                           (layout >> 1) & 1, layout >> 2, 100 * s + (uint64_t)layout);
    }
    assert_true(ran >= 1);
}

static void test_gemv_matches_reference_for_every_version(void **state)
{
    (void)state;
    const size_t shapes[][2] = {{1, 1}, {3, 7}, {4, 33}, {10, 128}, {257, 300}};
    for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
        if (!runnable(&versions[v]))
            continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            size_t out = shapes[s][0], in = shapes[s][1];
            uint64_t seed = 7 + s;
            float *w = malloc(out * in * sizeof *w), *x = malloc(in * sizeof *x);
            float *y = malloc(out * sizeof *y);
            assert_true(w && x && y);
            test_fill(&seed, w, out * in, -1.0f, 1.0f);
            test_fill(&seed, x, in, -1.0f, 1.0f);
            test_fill(&seed, y, out, -1.0f, 1.0f);
            double *expected = malloc(out * sizeof *expected);
            assert_non_null(expected);
            for (size_t o = 0; o < out; o++) {
                expected[o] = y[o];
                for (size_t i = 0; i < in; i++)
                    expected[o] += (double)w[o * in + i] * x[i];
            }
            versions[v].gemv(out, in, w, x, y);
            for (size_t o = 0; o < out; o++)
                assert_close(y[o], expected[o], 1e-6 * (double)(in + 1));
            free(w);
            free(x);
            free(y);
            free(expected);
        }
    }
}

/* The three dense-layer products through dispatch, on shapes that take
 * each route: direct loops, matrix-vector, packed GEMM. */
static void test_dense_products_match_reference_on_every_route(void **state)
{
    (void)state;
    const size_t shapes[][3] = {{1, 2, 8}, {4, 8, 8}, {1, 300, 40}, {64, 130, 70}, {3, 500, 9}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t rows = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        uint64_t seed = 40 + s;
        float *x = malloc(rows * in * sizeof *x), *w = malloc(out * in * sizeof *w);
        float *b = malloc(out * sizeof *b), *dz = malloc(rows * out * sizeof *dz);
        float *z = malloc(rows * out * sizeof *z), *dw = malloc(out * in * sizeof *dw);
        float *db = malloc(out * sizeof *db), *dx = malloc(rows * in * sizeof *dx);
        size_t ws = mlp_dense_workspace(rows, in, out);
        float *work = malloc((ws ? ws : 1) * sizeof *work);
        assert_true(x && w && b && dz && z && dw && db && dx && work);
        test_fill(&seed, x, rows * in, -1.0f, 1.0f);
        test_fill(&seed, w, out * in, -1.0f, 1.0f);
        test_fill(&seed, b, out, -1.0f, 1.0f);
        test_fill(&seed, dz, rows * out, -1.0f, 1.0f);
        const mlp_work space = {work, ws};
        mlp_dense_forward(rows, in, out, x, w, b, z, NULL, space);
        mlp_dense_grad_params(rows, in, out, dz, x, dw, db, NULL, space);
        mlp_dense_grad_input(rows, in, out, dz, w, dx, NULL, space);
        double tol = 1e-6 * (double)(in + out + rows);
        for (size_t r = 0; r < rows; r++)
            for (size_t o = 0; o < out; o++) {
                double sum = b[o];
                for (size_t i = 0; i < in; i++)
                    sum += (double)x[r * in + i] * w[o * in + i];
                assert_close(z[r * out + o], sum, tol);
            }
        for (size_t o = 0; o < out; o++) {
            double sum_b = 0.0;
            for (size_t r = 0; r < rows; r++)
                sum_b += dz[r * out + o];
            assert_close(db[o], sum_b, tol);
            for (size_t i = 0; i < in; i++) {
                double sum = 0.0;
                for (size_t r = 0; r < rows; r++)
                    sum += (double)dz[r * out + o] * x[r * in + i];
                assert_close(dw[o * in + i], sum, tol);
            }
        }
        for (size_t r = 0; r < rows; r++)
            for (size_t i = 0; i < in; i++) {
                double sum = 0.0;
                for (size_t o = 0; o < out; o++)
                    sum += (double)dz[r * out + o] * w[o * in + i];
                assert_close(dx[r * in + i], sum, tol);
            }
        free(x);
        free(w);
        free(b);
        free(dz);
        free(z);
        free(dw);
        free(db);
        free(dx);
        free(work);
    }
}

/* The activations the kernels apply as they finish each tile give exactly
 * what the activation's vtable gives on the finished product, forward and
 * backward, for every kernel version, on a column range that starts
 * inside the matrix as a thread's share does, and on every route of the
 * dense products. */
static const struct {
    mlp_fused kind;
    const mlp_activation *act;
} fused_kinds[] = {{MLP_FUSED_IDENTITY, &mlp_identity},
                   {MLP_FUSED_RELU, &mlp_relu},
                   {MLP_FUSED_LEAKY_RELU, &mlp_leaky_relu},
                   {MLP_FUSED_SIGMOID, &mlp_sigmoid},
                   {MLP_FUSED_TANH, &mlp_tanh}};

static void assert_same_floats(const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(&got[i], &want[i], sizeof(float));
}

static void test_gemm_epilogue_equals_vtable_for_every_version(void **state)
{
    (void)state;
    const size_t m = 70, n = 100, k = 300, col0 = 33; /* edge tiles; two k-slices */
    uint64_t seed = 7;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b);
    float *c = malloc(m * n * sizeof *c), *out = malloc(m * n * sizeof *out);
    float *z = malloc(m * n * sizeof *z), *act = malloc(m * n * sizeof *act);
    float *want = malloc(m * n * sizeof *want);
    assert_true(a && b && c && out && z && act && want);
    test_fill(&seed, a, m * k, -1.0f, 1.0f);
    test_fill(&seed, b, k * n, -1.0f, 1.0f);
    test_fill(&seed, z, m * n, -2.0f, 2.0f);
    const mlp_matrix am = {a, k, 1}, part = {b + col0, n, 1};
    for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
        if (!runnable(&versions[v]))
            continue;
        float *work = malloc(versions[v].workspace(n) * sizeof *work);
        assert_non_null(work);
        for (size_t f = 0; f < sizeof fused_kinds / sizeof fused_kinds[0]; f++) {
            const mlp_activation *vt = fused_kinds[f].act;
            vt->forward(vt, m, n, z, act); /* a backward's saved a */
            /* forward: out = f(C) on columns [col0, n) */
            memset(out, 0, m * n * sizeof *out);
            mlp_epilogue fwd = {fused_kinds[f].kind, 0, out, NULL, NULL, n, NULL, NULL};
            versions[v].gemm(m, n - col0, k, &am, &part, c + col0, n, 0, &fwd, col0, work);
            memset(want, 0, m * n * sizeof *want);
            for (size_t r = 0; r < m; r++)
                vt->forward(vt, 1, n - col0, c + r * n + col0, want + r * n + col0);
            assert_same_floats(out, want, m * n);
            /* backward: C = C f'(z), in place */
            versions[v].gemm(m, n, k, &am, &(mlp_matrix){b, n, 1}, want, n, 0, NULL, 0, work);
            vt->backward(vt, m, n, z, act, want, out);
            mlp_epilogue bwd = {fused_kinds[f].kind, 1, NULL, z, act, n, NULL, NULL};
            versions[v].gemm(m, n, k, &am, &(mlp_matrix){b, n, 1}, c, n, 0, &bwd, 0, work);
            assert_same_floats(c, out, m * n);
        }
        free(work);
    }
    free(a);
    free(b);
    free(c);
    free(out);
    free(z);
    free(act);
    free(want);
}

/* The SGD epilogue of every version steps each weight exactly as mlp_sgd
 * does from the product computed without it, leaves the old weights in C,
 * touches no weight outside its columns, and reports a gradient that
 * overflows both in a full tile and in the corner edge tile. */
static void test_gemm_sgd_epilogue_equals_mlp_sgd_for_every_version(void **state)
{
    (void)state;
    const size_t m = 70, n = 100, k = 300, col0 = 33; /* edge tiles; two k-slices */
    const mlp_sgd_rule rule = {0.1f, 0.01f};
    uint64_t seed = 11;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b);
    float *c = malloc(m * n * sizeof *c), *grad = malloc(m * n * sizeof *grad);
    float *w0 = malloc(m * n * sizeof *w0), *w = malloc(m * n * sizeof *w);
    float *want = malloc(m * n * sizeof *want);
    assert_true(a && b && c && grad && w0 && w && want);
    test_fill(&seed, w0, m * n, -1.0f, 1.0f);
    const mlp_matrix am = {a, k, 1}, part = {b + col0, n, 1};
    for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
        if (!runnable(&versions[v]))
            continue;
        float *work = malloc(versions[v].workspace(n) * sizeof *work);
        assert_non_null(work);
        for (int fault = 0; fault < 3; fault++) {
            test_fill(&seed, a, m * k, -1.0f, 1.0f);
            test_fill(&seed, b, k * n, -1.0f, 1.0f);
            /* 1e30 * 1e20 overflows one element of C: row 0, column 5 of the
             * product is in a full tile; its last row and column are not. */
            size_t r = fault == 1 ? 0 : m - 1, j = fault == 1 ? 5 : n - col0 - 1;
            if (fault)
                a[r * k + k - 1] = 1e30f, b[(k - 1) * n + col0 + j] = 1e20f;
            versions[v].gemm(m, n - col0, k, &am, &part, grad + col0, n, 0, NULL, col0, work);
            for (size_t i = 0; i < m * n; i++)
                want[i] = i % n >= col0 ? mlp_sgd(w0[i], grad[i], rule.lr, rule.wd) : w0[i];
            memcpy(w, w0, m * n * sizeof *w);
            int bad = 0;
            mlp_epilogue step = {MLP_FUSED_NONE, 0, w, NULL, NULL, n, &bad, &rule};
            versions[v].gemm(m, n - col0, k, &am, &part, c + col0, n, 0, &step, col0, work);
            assert_int_equal(bad, fault != 0);
            assert_same_floats(w, want, m * n);
            for (size_t i = 0; i < m; i++)
                assert_same_floats(c + i * n + col0, w0 + i * n + col0, n - col0);
        }
        free(work);
    }
    free(a);
    free(b);
    free(c);
    free(grad);
    free(w0);
    free(w);
    free(want);
}

static void test_dense_epilogue_equals_vtable_on_every_route(void **state)
{
    (void)state;
    const size_t shapes[][3] = {{4, 8, 8}, {1, 300, 40}, {64, 130, 70}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t rows = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        uint64_t seed = 90 + s;
        float *x = malloc(rows * in * sizeof *x), *w = malloc(out * in * sizeof *w);
        float *b = malloc(out * sizeof *b), *z = malloc(rows * out * sizeof *z);
        float *a = malloc(rows * out * sizeof *a), *want = malloc(rows * out * sizeof *want);
        float *dz = malloc(rows * out * sizeof *dz), *dx = malloc(rows * in * sizeof *dx);
        float *prev_z = malloc(rows * in * sizeof *prev_z);
        float *prev_a = malloc(rows * in * sizeof *prev_a);
        float *want_dx = malloc(rows * in * sizeof *want_dx);
        size_t ws = mlp_dense_workspace(rows, in, out);
        float *work = malloc((ws ? ws : 1) * sizeof *work);
        assert_true(x && w && b && z && a && want && dz && dx && prev_z && prev_a && want_dx &&
                    work);
        test_fill(&seed, x, rows * in, -1.0f, 1.0f);
        test_fill(&seed, w, out * in, -1.0f, 1.0f);
        test_fill(&seed, b, out, -1.0f, 1.0f);
        test_fill(&seed, dz, rows * out, -1.0f, 1.0f);
        test_fill(&seed, prev_z, rows * in, -2.0f, 2.0f);
        const mlp_work space = {work, ws};
        for (size_t f = 0; f < sizeof fused_kinds / sizeof fused_kinds[0]; f++) {
            const mlp_activation *vt = fused_kinds[f].act;
            mlp_epilogue fwd = {fused_kinds[f].kind, 0, a, NULL, NULL, out, NULL, NULL};
            mlp_dense_forward(rows, in, out, x, w, b, z, &fwd, space);
            vt->forward(vt, rows, out, z, want);
            assert_same_floats(a, want, rows * out);
            vt->forward(vt, rows, in, prev_z, prev_a);
            mlp_dense_grad_input(rows, in, out, dz, w, dx, NULL, space);
            vt->backward(vt, rows, in, prev_z, prev_a, dx, want_dx);
            mlp_epilogue bwd = {fused_kinds[f].kind, 1, NULL, prev_z, prev_a, in, NULL, NULL};
            mlp_dense_grad_input(rows, in, out, dz, w, dx, &bwd, space);
            assert_same_floats(dx, want_dx, rows * in);
        }
        free(x);
        free(w);
        free(b);
        free(z);
        free(a);
        free(want);
        free(dz);
        free(dx);
        free(prev_z);
        free(prev_a);
        free(want_dx);
        free(work);
    }
}

/* mlp_dense_grad_params says whether dW or db holds a NaN or Inf on each
 * route (outer product at one row, direct loops, GEMM with the check in
 * its epilogue): an overflowing product, a NaN input, and nothing wrong.
 * With a step, it says so of the new weights, which a NaN or Inf among the
 * gradients makes; otherwise the step is mlp_sgd's of each gradient, and
 * the gradients' place holds the old values. */
static void test_grad_params_reports_nonfinite_on_every_route(void **state)
{
    (void)state;
    const size_t shapes[][3] = {{1, 2, 3}, {1, 300, 40}, {4, 8, 8}, {64, 130, 70}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t rows = shapes[s][0], in = shapes[s][1], out = shapes[s][2], np = out * (in + 1);
        uint64_t seed = 70 + s;
        float *x = malloc(rows * in * sizeof *x), *dz = malloc(rows * out * sizeof *dz);
        float *g = malloc(np * sizeof *g), *params = malloc(np * sizeof *params);
        float *old = malloc(np * sizeof *old), *want = malloc(np * sizeof *want);
        size_t ws = mlp_dense_workspace(rows, in, out);
        float *work = malloc((ws ? ws : 1) * sizeof *work);
        assert_true(x && dz && g && params && old && want && work);
        const mlp_work space = {work, ws};
        const mlp_dense_step step = {params, params + out * in, {0.5f, 0.001f}};
        for (int fault = 0; fault < 3; fault++) {
            test_fill(&seed, x, rows * in, -1.0f, 1.0f);
            test_fill(&seed, dz, rows * out, -1.0f, 1.0f);
            test_fill(&seed, old, np, -1.0f, 1.0f);
            size_t r = rows - 1, i = in / 2, o = out - 1; /* the last tile's corner */
            if (fault == 1)                               /* 1e30 * 1e20 overflows float */
                x[r * in + i] = 1e30f, dz[r * out + o] = 1e20f;
            if (fault == 2)
                dz[r * out + o] = NAN;
            int bad = mlp_dense_grad_params(rows, in, out, dz, x, g, g + out * in, NULL, space);
            assert_int_equal(bad, fault != 0);
            for (size_t p = 0; p < np; p++)
                want[p] = mlp_sgd(old[p], g[p], step.rule.lr, step.rule.wd);
            memcpy(params, old, np * sizeof *params);
            bad = mlp_dense_grad_params(rows, in, out, dz, x, g, g + out * in, &step, space);
            assert_int_equal(bad, fault != 0);
            assert_same_floats(params, want, np);
            assert_same_floats(g, old, np);
        }
        free(x);
        free(dz);
        free(g);
        free(params);
        free(old);
        free(want);
        free(work);
    }
}

/* The losses' inline exponentials against expl over [-700, 0]: sampled
 * uniformly over the whole range, near 0, and at and halfway between the
 * table's steps k ln2/256. mlp_exp_nonpositive within 1.5 ulp of double,
 * the fast one within 2^-31; e^0 = 1, and below -700, 0 (NaN stays NaN).
 * Where long double is no wider than double (valgrind runs x87 code in
 * double), the reference itself is off by a few ulps: 8 are allowed. */
static void test_exponentials_against_long_double(void **state)
{
    (void)state;
    volatile long double one = 1.0L;
    double allowed_ulps = one + 0x1p-60L != one ? 1.5 : 8.0;
    uint64_t rng = 11;
    double worst_ulps = 0.0, worst_fast = 0.0;
    for (int i = 0; i < 600000; i++) {
        double u = (double)(test_rand(&rng) >> 11) * 0x1.0p-53, x;
        switch (i % 4) {
        case 0: x = -700.0 * u; break;
        case 1: x = -2.0 * u; break;
        case 2: x = -1e-3 * u; break;
        default: /* k ln2/256 or (k + 1/2) ln2/256 */
            x = -((double)(i % 258000) + 0.5 * ((i >> 2) & 1)) * 0x1.62e42fefa39efp-9;
        }
        long double ref = expl((long double)x);
        double e = mlp_exp_nonpositive(x), fast = mlp_exp_nonpositive_fast(x);
        if (ref >= DBL_MIN) {
            double ulp = nextafter((double)ref, INFINITY) - (double)ref;
            double ulps = (double)(fabsl((long double)e - ref) / ulp);
            worst_ulps = ulps > worst_ulps ? ulps : worst_ulps;
        }
        double rel = (double)(fabsl((long double)fast - ref) / ref);
        worst_fast = rel > worst_fast ? rel : worst_fast;
    }
    assert_true(worst_ulps <= allowed_ulps);
    assert_true(worst_fast <= 0x1p-31);
    assert_true(mlp_exp_nonpositive(0.0) == 1.0 && mlp_exp_nonpositive(-0.0) == 1.0);
    assert_true(mlp_exp_nonpositive_fast(0.0) == 1.0);
    assert_true(mlp_exp_nonpositive(-700.5) == 0.0 && mlp_exp_nonpositive_fast(-1e300) == 0.0);
    assert_true(isnan(mlp_exp_nonpositive(NAN)) && isnan(mlp_exp_nonpositive_fast(NAN)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_reference_for_every_version),
        cmocka_unit_test(test_gemv_matches_reference_for_every_version),
        cmocka_unit_test(test_dense_products_match_reference_on_every_route),
        cmocka_unit_test(test_gemm_epilogue_equals_vtable_for_every_version),
        cmocka_unit_test(test_gemm_sgd_epilogue_equals_mlp_sgd_for_every_version),
        cmocka_unit_test(test_dense_epilogue_equals_vtable_on_every_route),
        cmocka_unit_test(test_grad_params_reports_nonfinite_on_every_route),
        cmocka_unit_test(test_exponentials_against_long_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
