/* Losses: values against hand formulas, the fused sigmoid+BCE and
 * softmax+cross-entropy paths at extreme logits, and double accumulation. */
#include "helpers.h"

#include <float.h>

/* A one-layer network whose output pre-activation is exactly the given
 * logits: inputs 1 with x = 0, so z = b. */
static mlp *logit_net(const mlp_activation *out, size_t outputs, const float *logits)
{
    mlp_layer layer = {outputs, out};
    mlp_config cfg = {1, 1, &layer, 3, MLP_INIT_AUTO, NULL};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    float *p = mlp_params(net, NULL);
    for (size_t o = 0; o < outputs; o++) {
        p[o] = 0.0f;                /* W: (outputs, 1) */
        p[outputs + o] = logits[o]; /* b */
    }
    return net;
}

/* Runs forward + backward on one sample and returns dL/db = dL/dz. */
static float backward_logits(mlp *net, const mlp_loss *loss, const float *target, float *value,
                             float *grad_z)
{
    const float x = 0.0f;
    assert_int_equal(mlp_forward(net, 1, &x, NULL), MLP_OK);
    assert_int_equal(mlp_backward(net, loss, target, value), MLP_OK);
    size_t n, outputs = mlp_outputs(net);
    const float *g = mlp_grads(net, &n);
    memcpy(grad_z, g + outputs, outputs * sizeof(float));
    mlp_zero_grad(net);
    return grad_z[0];
}

static void test_bce_fused_exact_at_logits_100(void **state)
{
    (void)state;
    const struct {
        float logit, target;
        double loss, grad;
    } cases[] = {
        /* loss = max(z,0) - t z + log(1 + e^-|z|); dL/dz = sigmoid(z) - t */
        {100.0f, 0.0f, 100.0, 1.0},
        {-100.0f, 1.0f, 100.0, -1.0},
        {100.0f, 1.0f, 3.720075976020836e-44, -3.720075976020836e-44},
        {-100.0f, 0.0f, 3.720075976020836e-44, 3.720075976020836e-44},
        {0.0f, 1.0f, 0.6931471805599453, -0.5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mlp *net = logit_net(&mlp_sigmoid, 1, &cases[i].logit);
        float value, grad;
        backward_logits(net, &mlp_bce, &cases[i].target, &value, &grad);
        assert_close(value, cases[i].loss, 1e-6 * fmax(1.0, cases[i].loss));
        assert_close(grad, cases[i].grad, 1e-7);
        mlp_free(net);
    }
}

/* Where the prediction nears its target the gradient p - t is tiny, and
 * 1 - t (1 + e^-|z|) would leave only the rounding error of 1 + e^-|z|
 * (0.1% wrong at z = 30, exactly 0 from z = 37): the gradient must keep
 * float's relative precision. */
static void test_bce_fused_gradient_precise_near_the_target(void **state)
{
    (void)state;
    const float logits[] = {20.0f, 30.0f, 40.0f, 60.0f, 80.0f};
    for (size_t i = 0; i < sizeof logits / sizeof logits[0]; i++)
        for (int side = 0; side < 2; side++) {
            float logit = side ? -logits[i] : logits[i], target = side ? 0.0f : 1.0f;
            double e = exp(-(double)logits[i]), expected = (side ? 1.0 : -1.0) * e / (1.0 + e);
            mlp *net = logit_net(&mlp_sigmoid, 1, &logit);
            float value, grad;
            backward_logits(net, &mlp_bce, &target, &value, &grad);
            assert_true(grad != 0.0f);
            assert_close(grad, expected, 1e-6 * fabs(expected));
            mlp_free(net);
        }
}

/* A target strictly between 0 and 1 with p within a few ulps of z from
 * it: p - t is then of order 1e-8 and cancels in num = (1 - t) - t e, so e
 * must be good to double precision (to float, the gradient would be off by
 * tens of per cent). Against a long double reference, 1 to 40 ulps of z
 * either side of the float nearest logit(t). */
static void test_bce_fused_gradient_precise_for_soft_targets(void **state)
{
    (void)state;
    const float targets[] = {0.3f, 0.7f, 0.9f};
    for (size_t k = 0; k < sizeof targets / sizeof targets[0]; k++) {
        float t = targets[k], center = (float)log((double)t / (1.0 - (double)t));
        for (int side = -1; side <= 1; side += 2) {
            float logit = center;
            for (int step = 1; step <= 40; step++) {
                logit = nextafterf(logit, side > 0 ? INFINITY : -INFINITY);
                long double p = 1.0L / (1.0L + expl(-(long double)logit));
                double expected = (double)(p - (long double)t);
                mlp *net = logit_net(&mlp_sigmoid, 1, &logit);
                float value, grad;
                backward_logits(net, &mlp_bce, &t, &value, &grad);
                assert_close(grad, expected, 1e-6 * fabs(expected));
                mlp_free(net);
            }
        }
    }
}

/* For targets 0 and 1 the gradient's e^-|z| comes from the library's own
 * exponential (a table of 256 powers of two and a polynomial): within one
 * ulp of a long double reference at every logit of a sweep from -110 to
 * 110 (small logits and the subnormal gradients past 87 included). */
static void test_bce_fused_gradient_within_an_ulp_everywhere(void **state)
{
    (void)state;
    float logit = 0.0f;
    mlp *net = logit_net(&mlp_sigmoid, 1, &logit);
    float *bias = mlp_params(net, NULL) + 1;
    for (int i = -22000; i <= 22000; i++) {
        logit = (float)i * 0.005f + (float)(i % 7) * 1e-4f;
        for (int t = 0; t <= 1; t++) {
            *bias = logit;
            /* p and 1 - p without cancellation */
            long double e = expl(-fabsl((long double)logit)), small = e / (1.0L + e);
            long double large = 1.0L / (1.0L + e), p = logit >= 0.0f ? large : small;
            long double expected = t ? -(logit >= 0.0f ? small : large) : p;
            float target = (float)t, value, grad;
            backward_logits(net, &mlp_bce, &target, &value, &grad);
            long double ulp = fabsl(expected) < FLT_MIN ? 0x1p-149L : fabsl(expected) * 0x1p-23L;
            if (fabsl((long double)grad - expected) > ulp)
                fail_msg("logit %a target %d: gradient %a, expected %La", (double)logit, t,
                         (double)grad, expected);
        }
    }
    mlp_free(net);
}

static void test_cross_entropy_fused_exact_at_logits_100(void **state)
{
    (void)state;
    const float logits[3] = {100.0f, -100.0f, 0.0f}, onehot[3] = {0.0f, 1.0f, 0.0f};
    mlp *net = logit_net(&mlp_softmax, 3, logits);
    float value, grad[3];
    backward_logits(net, &mlp_cross_entropy, onehot, &value, grad);
    /* lse(z) - z_1 = 100 + log(1 + e^-100 + e^-200) + 100 */
    assert_close(value, 200.0, 1e-4);
    /* p - t with p = (1, e^-200, e^-100) */
    assert_close(grad[0], 1.0, 1e-7);
    assert_close(grad[1], -1.0, 1e-7);
    assert_close(grad[2], 0.0, 1e-7);
    mlp_free(net);
}

/* A copy of the sigmoid vtable is a different object, so the loss takes the
 * generic path: dL/dy then the activation's backward. Both agree where the
 * generic path is accurate. */
static void test_fused_and_generic_paths_agree(void **state)
{
    (void)state;
    mlp_activation sigmoid_copy = mlp_sigmoid;
    const float logits[4] = {-3.0f, -0.5f, 0.7f, 4.0f}, targets[4] = {0.0f, 1.0f, 0.3f, 1.0f};
    for (int i = 0; i < 4; i++) {
        mlp *fused = logit_net(&mlp_sigmoid, 1, &logits[i]);
        mlp *generic = logit_net(&sigmoid_copy, 1, &logits[i]);
        float v1, v2, g1, g2;
        backward_logits(fused, &mlp_bce, &targets[i], &v1, &g1);
        backward_logits(generic, &mlp_bce, &targets[i], &v2, &g2);
        assert_close(v1, v2, 1e-5);
        assert_close(g1, g2, 1e-5);
        mlp_free(fused);
        mlp_free(generic);
    }
}

static void test_mse_is_mean_over_elements(void **state)
{
    (void)state;
    const float y[4] = {1.0f, 2.0f, 3.0f, 4.0f}, t[4] = {0.0f, 2.0f, 5.0f, 3.0f};
    float grad[4];
    double value = mlp_mse.loss(&mlp_mse, 2, 2, y, t, grad);
    assert_close(value, (1.0 + 0.0 + 4.0 + 1.0) / 4.0, 1e-12);
    const double expected[4] = {0.5, 0.0, -1.0, 0.5}; /* 2 (y - t) / 4 */
    for (int i = 0; i < 4; i++)
        assert_close(grad[i], expected[i], 1e-7);
}

static void test_bce_and_cross_entropy_generic_values(void **state)
{
    (void)state;
    const float y[2] = {0.8f, 0.25f}, t[2] = {1.0f, 0.0f};
    float grad[2];
    double bce = mlp_bce.loss(&mlp_bce, 2, 1, y, t, grad);
    assert_close(bce, -(log(0.8) + log(0.75)) / 2.0, 1e-6);
    assert_close(grad[0], -1.0 / 0.8 / 2.0, 1e-5); /* (p - t) / (p (1 - p)) / n */
    assert_close(grad[1], 1.0 / 0.75 / 2.0, 1e-5);

    const float p[6] = {0.7f, 0.2f, 0.1f, 0.1f, 0.1f, 0.8f},
                onehot[6] = {1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f};
    double ce = mlp_cross_entropy.loss(&mlp_cross_entropy, 2, 3, p, onehot, NULL);
    assert_close(ce, -(log(0.7) + log(0.8)) / 2.0, 1e-6);
}

/* Unfused probabilities of exactly 0 or 1 are clamped: the loss stays
 * finite (and large) instead of inf. */
static void test_generic_paths_clamp_probabilities(void **state)
{
    (void)state;
    const float y[2] = {0.0f, 1.0f}, t[2] = {1.0f, 0.0f};
    float grad[2];
    double bce = mlp_bce.loss(&mlp_bce, 1, 2, y, t, grad);
    assert_true(isfinite(bce) && bce > 15.0);
    assert_true(isfinite(grad[0]) && isfinite(grad[1]));
    double ce = mlp_cross_entropy.loss(&mlp_cross_entropy, 1, 2, y, t, grad);
    assert_true(isfinite(ce) && ce > 15.0);
}

/* One squared error of 1e8 followed by 2^20 errors of 1e-2: a float sum
 * stays at 1e8 (its ulp there is 8), a double one reaches 1e8 + 10485.76. */
static void test_loss_accumulates_in_double(void **state)
{
    (void)state;
    size_t n = ((size_t)1 << 20) + 1;
    float *y = calloc(n, sizeof *y), *t = calloc(n, sizeof *t);
    assert_non_null(y);
    assert_non_null(t);
    y[0] = 1e4f;
    for (size_t i = 1; i < n; i++)
        y[i] = 0.1f;
    double value = mlp_mse.loss(&mlp_mse, n, 1, y, t, NULL);
    double tail = (double)(n - 1) * (double)0.1f * (double)0.1f;
    assert_close(value * (double)n, 1e8 + tail, 1.0);
    free(y);
    free(t);
}

static void test_backward_reports_batch_mean_loss(void **state)
{
    (void)state;
    /* Two samples through an identity layer y = x (W = 1, b = 0). */
    mlp_layer layer = {1, &mlp_identity};
    mlp_config cfg = {1, 1, &layer, 3, MLP_INIT_AUTO, NULL};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    float *p = mlp_params(net, NULL);
    p[0] = 1.0f;
    p[1] = 0.0f;
    const float x[2] = {1.0f, 3.0f}, t[2] = {0.0f, 0.0f};
    float value;
    assert_int_equal(mlp_forward(net, 2, x, NULL), MLP_OK);
    assert_int_equal(mlp_backward(net, &mlp_mse, t, &value), MLP_OK);
    assert_close(value, 5.0, 1e-6); /* (1 + 9) / 2 */
    const float *g = mlp_grads(net, NULL);
    assert_close(g[0], 10.0, 1e-5); /* dW = sum 2 y x / 2 = (2 + 18) / 2 */
    assert_close(g[1], 4.0, 1e-5);  /* db = sum 2 y / 2 = (2 + 6) / 2 */
    mlp_free(net);
}

/* dL/dz = p * sum(t) - t: targets that do not sum to one (label smoothing
 * gone wrong, partial labels) still get the exact gradient. */
static void test_cross_entropy_fused_handles_unnormalised_targets(void **state)
{
    (void)state;
    const float logits[3] = {1.0f, 2.0f, 3.0f}, t[3] = {0.5f, 0.2f, 0.1f};
    mlp *net = logit_net(&mlp_softmax, 3, logits);
    float value, grad[3];
    backward_logits(net, &mlp_cross_entropy, t, &value, grad);
    double lse = log(exp(1.0) + exp(2.0) + exp(3.0)), loss = 0.0;
    for (int c = 0; c < 3; c++) {
        double p = exp(logits[c] - lse);
        assert_close(grad[c], p * 0.8 - t[c], 1e-6);
        loss += t[c] * (lse - logits[c]);
    }
    assert_close(value, loss, 1e-6);
    mlp_free(net);
}

/* Softmax rows wider than the exponentials ce_logits keeps (64) take them
 * again: each gradient is p * sum(t) - t to float precision either way,
 * 10 and 100 outputs alike, and the value is the reference loss. */
static void test_cross_entropy_fused_wide_rows(void **state)
{
    (void)state;
    static const size_t widths[] = {10, 64, 65, 100};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        size_t n = widths[w];
        float logits[100], t[100], grad[100], value;
        double max = -1e30, exp_sum = 0.0;
        for (size_t c = 0; c < n; c++) {
            logits[c] = (float)((int)(c * 37 % 23) - 11) * 0.5f;
            t[c] = c == n / 3 ? 1.0f : 0.0f;
            max = logits[c] > max ? logits[c] : max;
        }
        for (size_t c = 0; c < n; c++)
            exp_sum += exp(logits[c] - max);
        double lse = max + log(exp_sum);
        mlp *net = logit_net(&mlp_softmax, n, logits);
        backward_logits(net, &mlp_cross_entropy, t, &value, grad);
        for (size_t c = 0; c < n; c++) {
            double expected = exp(logits[c] - lse) - t[c];
            assert_close(grad[c], expected, 2e-7 * fabs(expected) + 1e-12);
        }
        assert_close(value, lse - logits[n / 3], 1e-6);
        mlp_free(net);
    }
}

/* The softmax's exponentials come from the library's own exponential (to
 * about 1 ulp of double). One-hot targets: every gradient within 2 ulps of
 * float of a long double reference formed without cancellation (the
 * target's p - 1 as minus the other classes' share), over rows of three
 * logits spread from 0.01 to 600 apart, the target at each place. Soft
 * targets (0.7, 0.2, 0.1) with p within a few ulps of z of them: p t_sum -
 * t cancels there, so p must be good to double precision (to 2^-31, the
 * gradients would be off by up to a few per cent). */
static void test_cross_entropy_fused_gradient_precise(void **state)
{
    (void)state;
    float logits[3] = {0};
    mlp *net = logit_net(&mlp_softmax, 3, logits);
    float *bias = mlp_params(net, NULL) + 3, value, grad[3];
    for (int i = 0; i < 3000; i++) {
        float spread = 0.01f * powf(60000.0f, (float)i / 2999.0f);
        bias[0] = 0.0f, bias[1] = -spread * 0.37f, bias[2] = -spread;
        long double e[3], sum = 0.0L;
        for (int c = 0; c < 3; c++)
            sum += e[c] = expl((long double)bias[c]);
        for (int t = 0; t < 3; t++) {
            float target[3] = {0.0f, 0.0f, 0.0f};
            target[t] = 1.0f;
            backward_logits(net, &mlp_cross_entropy, target, &value, grad);
            for (int c = 0; c < 3; c++) {
                long double expected = c == t ? -(sum - e[c]) / sum : e[c] / sum;
                long double tol = fabsl(expected) * 0x1p-23L + 0x1p-50L;
                if (fabsl((long double)grad[c] - expected) > tol)
                    fail_msg("spread %g target %d: gradient %d is %a, expected %La", (double)spread,
                             t, c, (double)grad[c], expected);
            }
        }
    }
    const float soft[3] = {0.7f, 0.2f, 0.1f};
    for (int step = -40; step <= 40; step++) {
        for (int c = 0; c < 3; c++)
            bias[c] = logf(soft[c]);
        for (int k = 0; k < (step < 0 ? -step : step); k++)
            bias[0] = nextafterf(bias[0], step < 0 ? -INFINITY : INFINITY);
        long double e[3], sum = 0.0L, t_sum = 0.0L;
        for (int c = 0; c < 3; c++)
            sum += e[c] = expl((long double)bias[c]), t_sum += soft[c];
        backward_logits(net, &mlp_cross_entropy, soft, &value, grad);
        for (int c = 0; c < 3; c++) {
            long double expected = e[c] / sum * t_sum - soft[c];
            if (fabsl((long double)grad[c] - expected) > fabsl(expected) * 1e-5L + 1e-15L)
                fail_msg("soft targets, %d ulps: gradient %d is %a, expected %La", step, c,
                         (double)grad[c], expected);
        }
    }
    mlp_free(net);
}

/* Batches taller than the cross-entropy's 64 chunks of rows (1000 rows:
 * chunks of 16, the last of 8; 130: chunks of 3, the last of 1), shared
 * among threads where there are some: the value is the mean of the rows'
 * losses and every gradient is (p - t) / rows, against long double. */
static void test_cross_entropy_fused_many_rows(void **state)
{
    (void)state;
    static const size_t heights[] = {1000, 130, 7};
    enum { COLS = 3, MOST = 1000 };
    static float z[MOST * COLS], t[MOST * COLS], grad[MOST * COLS];
    uint64_t seed = 5;
    for (size_t h = 0; h < sizeof heights / sizeof heights[0]; h++) {
        size_t rows = heights[h];
        test_fill(&seed, z, rows * COLS, -8.0f, 8.0f);
        memset(t, 0, sizeof t);
        for (size_t r = 0; r < rows; r++)
            t[r * COLS + r % COLS] = 1.0f;
        double value = mlp_cross_entropy.loss_logits(&mlp_cross_entropy, rows, COLS, z, t, grad);
        long double sum = 0.0L;
        for (size_t r = 0; r < rows; r++) {
            const float *zr = z + r * COLS;
            long double e[COLS], e_sum = 0.0L;
            for (size_t c = 0; c < COLS; c++)
                e_sum += e[c] = expl((long double)zr[c]);
            for (size_t c = 0; c < COLS; c++) {
                long double p = e[c] / e_sum, want = (p - t[r * COLS + c]) / (long double)rows;
                sum -= t[r * COLS + c] * logl(p);
                assert_close(grad[r * COLS + c], (double)want, 2e-7 * fabsl(want) + 1e-15);
            }
        }
        assert_close(value, (double)(sum / (long double)rows), 1e-12 * (double)(sum / rows));
    }
}

/* Direct calls with no rows (the mean of nothing: NaN, as the other
 * losses give) or no outputs (0), reading nothing. */
static void test_cross_entropy_fused_empty_batch(void **state)
{
    (void)state;
    assert_true(isnan(mlp_cross_entropy.loss_logits(&mlp_cross_entropy, 0, 10, NULL, NULL, NULL)));
    assert_true(isnan(mlp_mse.loss(&mlp_mse, 0, 10, NULL, NULL, NULL)));
    assert_true(mlp_cross_entropy.loss_logits(&mlp_cross_entropy, 3, 0, NULL, NULL, NULL) == 0.0);
}

/* The fused BCE sums in double too: one logit of 1e8 against target 0
 * (loss 1e8) and 2^20 logits of -4.6 (loss ~0.01 each). */
static void test_bce_fused_accumulates_in_double(void **state)
{
    (void)state;
    size_t n = ((size_t)1 << 20) + 1;
    float *z = malloc(n * sizeof *z), *t = calloc(n, sizeof *t);
    assert_non_null(z);
    assert_non_null(t);
    z[0] = 1e8f;
    for (size_t i = 1; i < n; i++)
        z[i] = -4.6f;
    double value = mlp_bce.loss_logits(&mlp_bce, n, 1, z, t, NULL);
    double tail = (double)(n - 1) * log1p(exp((double)-4.6f));
    assert_close(value * (double)n, 1e8 + tail, 1.0);
    free(z);
    free(t);
}

/* Two backwards without a step: the gradient buffer holds the sum of the
 * two batches' gradients. */
static void test_backward_accumulates_until_step(void **state)
{
    (void)state;
    const mlp_layer layers[2] = {{4, &mlp_tanh}, {2, &mlp_identity}};
    mlp_config cfg = {3, 2, layers, 5, MLP_INIT_AUTO, NULL};
    mlp *both, *first, *second;
    assert_int_equal(mlp_create(&both, &cfg), MLP_OK);
    assert_int_equal(mlp_create(&first, &cfg), MLP_OK);
    assert_int_equal(mlp_create(&second, &cfg), MLP_OK);
    const float x1[6] = {0.1f, -0.5f, 0.9f, 1.0f, 0.2f, -0.3f}, t1[4] = {1, 0, 0, 1};
    const float x2[3] = {-0.7f, 0.4f, 0.05f}, t2[2] = {0.5f, -0.5f};
    assert_int_equal(mlp_forward(both, 2, x1, NULL), MLP_OK);
    assert_int_equal(mlp_backward(both, &mlp_mse, t1, NULL), MLP_OK);
    assert_int_equal(mlp_forward(both, 1, x2, NULL), MLP_OK);
    assert_int_equal(mlp_backward(both, &mlp_mse, t2, NULL), MLP_OK);
    assert_int_equal(mlp_forward(first, 2, x1, NULL), MLP_OK);
    assert_int_equal(mlp_backward(first, &mlp_mse, t1, NULL), MLP_OK);
    assert_int_equal(mlp_forward(second, 1, x2, NULL), MLP_OK);
    assert_int_equal(mlp_backward(second, &mlp_mse, t2, NULL), MLP_OK);
    size_t n;
    const float *g = mlp_grads(both, &n), *g1 = mlp_grads(first, NULL),
                *g2 = mlp_grads(second, NULL);
    for (size_t i = 0; i < n; i++) {
        assert_true(g1[i] != 0.0f && g2[i] != 0.0f);
        assert_true(g[i] == g1[i] + g2[i]);
    }
    mlp_free(both);
    mlp_free(first);
    mlp_free(second);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bce_fused_exact_at_logits_100),
        cmocka_unit_test(test_bce_fused_gradient_precise_near_the_target),
        cmocka_unit_test(test_bce_fused_gradient_precise_for_soft_targets),
        cmocka_unit_test(test_bce_fused_gradient_within_an_ulp_everywhere),
        cmocka_unit_test(test_cross_entropy_fused_exact_at_logits_100),
        cmocka_unit_test(test_fused_and_generic_paths_agree),
        cmocka_unit_test(test_mse_is_mean_over_elements),
        cmocka_unit_test(test_bce_and_cross_entropy_generic_values),
        cmocka_unit_test(test_generic_paths_clamp_probabilities),
        cmocka_unit_test(test_loss_accumulates_in_double),
        cmocka_unit_test(test_backward_reports_batch_mean_loss),
        cmocka_unit_test(test_cross_entropy_fused_handles_unnormalised_targets),
        cmocka_unit_test(test_cross_entropy_fused_wide_rows),
        cmocka_unit_test(test_cross_entropy_fused_many_rows),
        cmocka_unit_test(test_cross_entropy_fused_empty_batch),
        cmocka_unit_test(test_cross_entropy_fused_gradient_precise),
        cmocka_unit_test(test_bce_fused_accumulates_in_double),
        cmocka_unit_test(test_backward_accumulates_until_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
