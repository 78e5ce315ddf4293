/* The tiny-network path (src/small.c): one sample (batch 1) through layers of
 * at most MLP_SMALL_MADDS (4096) multiply-adds, with the built-in
 * activations fused and everything else through its vtable.
 *
 * Covered, on a grid of 2-layer networks inputs -> units -> 3 (fan_in 1-4
 * and 8 take the specialised code, 4 and more the SSE2 code with its remainders
 * for fan_in % 4 and units % 4, plus layers at and just past 4096
 * multiply-adds):
 * - forward at batch 1 against a double-precision reference computed from
 *   mlp_params, for fused activations (identity, relu, leaky_relu, sigmoid,
 *   tanh) and vtable ones (gelu, softmax, and a user copy of tanh);
 * - gradients at batch 1 against the same sample duplicated in a batch of 2
 *   (the batch kernels), and a second batch-1 backward adding to the first;
 * - mlp_predict at batch 1 equal to mlp_forward bit for bit;
 * - a weight gradient that overflows float refused with MLP_ERR_NONFINITE,
 *   both in the first and in the output layer, with the gradients left as
 *   they were;
 * - ReLU's derivative 0 at and below z = 0 (leaky ReLU's: its slope). */
#include "helpers.h"

#include <stdio.h>

/* ---- activations under test --------------------------------------------- */

enum {
    ACT_IDENTITY,
    ACT_RELU,
    ACT_LEAKY_RELU,
    ACT_SIGMOID,
    ACT_TANH,
    ACT_GELU,
    ACT_SOFTMAX,
    ACT_USER_TANH, /* mlp_tanh's functions under another vtable: not fused */
    N_ACTS
};

static const char *const act_names[N_ACTS] = {"identity", "relu", "leaky_relu", "sigmoid",
                                              "tanh",     "gelu", "softmax",    "user_tanh"};

/* A user activation: a copy of mlp_tanh is a different vtable, so the tiny
 * path cannot recognise it and must call it. Static: it outlives every
 * network of the suite. */
static const mlp_activation *user_tanh(void)
{
    static mlp_activation act;
    act = mlp_tanh;
    act.name = "user_tanh";
    return &act;
}

static const mlp_activation *activation(int kind)
{
    switch (kind) {
    case ACT_IDENTITY: return &mlp_identity;
    case ACT_RELU: return &mlp_relu;
    case ACT_LEAKY_RELU: return &mlp_leaky_relu;
    case ACT_SIGMOID: return &mlp_sigmoid;
    case ACT_TANH: return &mlp_tanh;
    case ACT_GELU: return &mlp_gelu;
    case ACT_SOFTMAX: return &mlp_softmax;
    default: return user_tanh();
    }
}

/* v = f(v) in double, for one sample of n units. */
static void reference_activate(int kind, size_t n, double *v)
{
    if (kind == ACT_SOFTMAX) {
        double most = -INFINITY, sum = 0.0;
        for (size_t i = 0; i < n; i++)
            most = fmax(most, v[i]);
        for (size_t i = 0; i < n; i++)
            sum += (v[i] = exp(v[i] - most));
        for (size_t i = 0; i < n; i++)
            v[i] /= sum;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double z = v[i];
        switch (kind) {
        case ACT_IDENTITY: break;
        case ACT_RELU: z = z > 0.0 ? z : 0.0; break;
        case ACT_LEAKY_RELU: z = z > 0.0 ? z : 0.01 * z; break;
        case ACT_SIGMOID: z = 1.0 / (1.0 + exp(-z)); break;
        case ACT_GELU: z = 0.5 * z * (1.0 + erf(z / sqrt(2.0))); break;
        default: z = tanh(z); break; /* tanh, user_tanh */
        }
        v[i] = z;
    }
}

/* ---- the networks ------------------------------------------------------- */

/* MAX_PARAMS: the most parameters of any grid network (1 -> 4096 -> 3). */
enum {
    OUTPUTS = 3,
    MAX_WIDTH = 4097,
    MAX_CASES = 1024,
    MAX_PARAMS = 4 * MAX_WIDTH + 3 * MAX_WIDTH
};

/* Layer 1: inputs -> units (activation `hidden`); layer 2: units -> OUTPUTS
 * (activation `output`). */
typedef struct net_case {
    size_t inputs, units;
    int hidden, output;
    uint64_t seed;
} net_case;

static const char *describe(const net_case *c)
{
    static char text[128];
    snprintf(text, sizeof text, "%zu -> %zu %s -> %d %s (seed %llu)", c->inputs, c->units,
             act_names[c->hidden], OUTPUTS, act_names[c->output], (unsigned long long)c->seed);
    return text;
}

/* The grid: every fan_in of the specialised (1-4, 8) and SSE2 (4+, with each
 * remainder of fan_in % 4) code against every units % 4, and layers at and
 * just past 4096 multiply-adds (64 x 64 and 1 x 4096 / 4096 x 1 take the
 * tiny path; 65 x 64, 64 x 65 and 4097 x 1 do not), each with every hidden
 * activation and, in turn, every output activation. */
static size_t grid(net_case *cases)
{
    static const size_t fan_ins[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17};
    static const size_t widths[] = {1, 2, 3, 4, 5, 7, 8, 9};
    static const size_t edges[][2] = {{64, 64},  {65, 64},  {64, 65},
                                      {1, 4096}, {4096, 1}, {4097, 1}};
    size_t n = 0;
    for (size_t f = 0; f < sizeof fan_ins / sizeof fan_ins[0]; f++)
        for (size_t u = 0; u < sizeof widths / sizeof widths[0]; u++)
            for (int h = 0; h < N_ACTS; h++, n++)
                cases[n] = (net_case){fan_ins[f], widths[u], h,
                                      (int)(((size_t)h + 1 + f + u) % N_ACTS), 1000 + n};
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        for (int h = 0; h < N_ACTS; h++, n++)
            cases[n] = (net_case){edges[e][0], edges[e][1], h, (int)(((size_t)h + 3 + e) % N_ACTS),
                                  1000 + n};
    assert_true(n <= MAX_CASES);
    return n;
}

static size_t layer_params(size_t fan_in, size_t units)
{
    return units * (fan_in + 1);
}

/* A network of the case's shape, its weights uniform in +-sqrt(3/fan_in)
 * and biases in +-0.5 (random, non-zero biases in every layer). With x in
 * +-2 pre-activations are mostly within +-3: sigmoid and tanh are used on
 * their curved part rather than saturated, where 1 - a and 1 - a^2 would
 * magnify the ulp differences between two ways of summing (a 4096-input
 * sum 1e-6 apart gave tanh gradients 1e-5 apart at a = 0.995). */
static mlp *make_net(const net_case *c)
{
    const mlp_layer layers[2] = {{c->units, activation(c->hidden)},
                                 {OUTPUTS, activation(c->output)}};
    mlp_config cfg = {c->inputs, 2, layers, c->seed, MLP_INIT_AUTO, NULL};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    float *p = mlp_params(net, NULL);
    uint64_t rng = c->seed * 0x9e3779b97f4a7c15u + 1;
    const size_t fan_in[2] = {c->inputs, c->units}, units[2] = {c->units, OUTPUTS};
    for (int l = 0; l < 2; l++) {
        float s = sqrtf(3.0f / (float)fan_in[l]);
        test_fill(&rng, p, units[l] * fan_in[l], -s, s);
        p += units[l] * fan_in[l];
        test_fill(&rng, p, units[l], -0.5f, 0.5f);
        p += units[l];
    }
    return net;
}

/* One sample through the network in double, from the documented parameter
 * layout. */
typedef struct reference {
    double z[2][MAX_WIDTH], a[2][MAX_WIDTH]; /* each layer's z and f(z) */
    /* How far float rounding typically moves each z (sqrt(terms) * 2^-24
     * of its scale, below), in units of the 1e-5 of the tolerances. */
    double z_blur[2][MAX_WIDTH];
    /* The tolerance for the outputs: 1e-5 of the scale of the computation
     * (the largest sum of |terms| that reached an output, errors propagated
     * from the hidden layer included), plus 1e-6 absolute. Float sums of n
     * terms are within n * 2^-24 of that scale, which is below 1e-5 for
     * every fan_in here (and far below it on random data); a term left out
     * or counted twice is far above it. */
    double y_tol;
    /* Per layer, the scale of its weight and bias gradients in the same
     * sense (see reference_gradient_scale). */
    double grad_scale[2];
} reference;

static void reference_forward(const net_case *c, const float *params, const float *x, reference *r)
{
    static double in_scale[MAX_WIDTH], out_scale[MAX_WIDTH];
    const size_t widths[3] = {c->inputs, c->units, OUTPUTS};
    const int acts[2] = {c->hidden, c->output};
    double scale = 0.0;
    const double *in = NULL;
    for (size_t i = 0; i < c->inputs; i++)
        in_scale[i] = fabs(x[i]);
    const float *p = params;
    for (int l = 0; l < 2; l++) {
        size_t fan_in = widths[l], units = widths[l + 1];
        const float *w = p, *b = p + units * fan_in;
        scale = 0.0;
        for (size_t o = 0; o < units; o++) {
            double sum = b[o], sum_scale = fabs(b[o]);
            for (size_t i = 0; i < fan_in; i++) {
                double v = in ? in[i] : (double)x[i];
                sum += (double)w[o * fan_in + i] * v;
                sum_scale += fabs((double)w[o * fan_in + i]) * in_scale[i];
            }
            r->z[l][o] = r->a[l][o] = sum;
            r->z_blur[l][o] = sqrt((double)fan_in + 1.0) * 0x1p-24 * sum_scale / 1e-5;
            out_scale[o] = sum_scale;
            scale = fmax(scale, sum_scale);
        }
        reference_activate(acts[l], units, r->a[l]);
        for (size_t o = 0; o < units; o++)
            in_scale[o] = fmax(fabs(r->a[l][o]), out_scale[o]);
        in = r->a[l];
        p += layer_params(fan_in, units);
    }
    r->y_tol = 1e-5 * fmax(scale, 1.0) + 1e-6;
}

/* f'(z), a = f(z), for the element-wise activations. */
static double derivative(int kind, double z, double a)
{
    switch (kind) {
    case ACT_IDENTITY: return 1.0;
    case ACT_RELU: return z > 0.0 ? 1.0 : 0.0;
    case ACT_LEAKY_RELU: return z > 0.0 ? 1.0 : 0.01;
    case ACT_SIGMOID: return a * (1.0 - a);
    case ACT_GELU:
        return 0.5 * (1.0 + erf(z / sqrt(2.0))) + z * 0.3989422804014327 * exp(-0.5 * z * z);
    default: return 1.0 - a * a; /* tanh, user_tanh */
    }
}

/* f''(z), a = f(z), for the element-wise activations (0 for the piecewise
 * linear ones). */
static double second_derivative(int kind, double z, double a)
{
    switch (kind) {
    case ACT_SIGMOID: return a * (1.0 - a) * (1.0 - 2.0 * a);
    case ACT_GELU: return 0.3989422804014327 * exp(-0.5 * z * z) * (2.0 - z * z);
    case ACT_TANH:
    case ACT_USER_TANH: return -2.0 * a * (1.0 - a * a);
    default: return 0.0;
    }
}

/* The scale of dL/dz from that of dL/da (s_a): |f'(z)| s_a, and for the
 * softmax, whose dz_i = a_i (g_i - sum_j a_j g_j) cancels, a_i (s_a_i +
 * sum_j a_j s_a_j). Plus what z's rounding does to the derivative:
 * |f''(z)| blur s_a (the softmax: its own scale times 2 blur). */
static void backward_scale(int kind, size_t n, const double *z, const double *a, const double *blur,
                           const double *s_a, double *s_z)
{
    double mean = 0.0, most_blur = 0.0;
    for (size_t j = 0; kind == ACT_SOFTMAX && j < n; j++) {
        mean += a[j] * s_a[j];
        most_blur = fmax(most_blur, blur[j]);
    }
    for (size_t i = 0; i < n; i++)
        s_z[i] = kind == ACT_SOFTMAX ? a[i] * (s_a[i] + mean) * (1.0 + 2.0 * most_blur)
                                     : (fabs(derivative(kind, z[i], a[i])) +
                                        fabs(second_derivative(kind, z[i], a[i])) * blur[i]) *
                                           s_a[i];
}

/* r->grad_scale for the mse gradient against t, after reference_forward:
 * the backward run on absolute values, so that cancellations (in the
 * softmax's derivative, in dx = W^T dz) do not shrink it, with the
 * derivatives' sensitivity to z's rounding (which matters for the sums
 * of 4096 terms). A layer's gradients computed two ways in float agree to
 * a small multiple of 2^-24 of this; a wrong derivative, a dropped or
 * misplaced term do not. */
static void reference_gradient_scale(const net_case *c, const float *params, const float *x,
                                     const float *t, reference *r)
{
    static double s_a[MAX_WIDTH], s_z[MAX_WIDTH];
    const float *w2 = params + layer_params(c->inputs, c->units);
    for (size_t k = 0; k < OUTPUTS; k++)
        s_a[k] = fabs(2.0 * (r->a[1][k] - t[k]) / OUTPUTS);
    backward_scale(c->output, OUTPUTS, r->z[1], r->a[1], r->z_blur[1], s_a, s_z);
    double most_dz = 0.0, most_in = 1.0;
    for (size_t k = 0; k < OUTPUTS; k++)
        most_dz = fmax(most_dz, s_z[k]);
    for (size_t i = 0; i < c->units; i++) {
        most_in = fmax(most_in, fabs(r->a[0][i]));
        s_a[i] = 0.0;
        for (size_t k = 0; k < OUTPUTS; k++)
            s_a[i] += fabs((double)w2[k * c->units + i]) * s_z[k];
    }
    r->grad_scale[1] = most_dz * most_in;
    backward_scale(c->hidden, c->units, r->z[0], r->a[0], r->z_blur[0], s_a, s_z);
    most_dz = 0.0, most_in = 1.0;
    for (size_t o = 0; o < c->units; o++)
        most_dz = fmax(most_dz, s_z[o]);
    for (size_t i = 0; i < c->inputs; i++)
        most_in = fmax(most_in, fabs(x[i]));
    r->grad_scale[0] = most_dz * most_in;
}

static void expect_status(mlp_status got, mlp_status want, const net_case *c, const char *call)
{
    if (got != want) {
        print_error("%s: %s returned %d (%s), expected %d\n", describe(c), call, (int)got,
                    mlp_strerror(got), (int)want);
        fail();
    }
}

static void expect_close(double got, double want, double tol, const net_case *c, const char *what,
                         size_t index)
{
    if (!(fabs(got - want) <= tol)) {
        print_error("%s: %s[%zu] = %.9g, expected %.9g +- %.3g\n", describe(c), what, index, got,
                    want, tol);
        fail();
    }
}

/* ---- forward ------------------------------------------------------------ */

static void test_single_sample_forward_matches_double_reference(void **state)
{
    (void)state;
    static net_case cases[MAX_CASES];
    static float x[MAX_WIDTH];
    static reference ref;
    size_t n = grid(cases);
    for (size_t k = 0; k < n; k++) {
        const net_case *c = &cases[k];
        mlp *net = make_net(c);
        uint64_t rng = c->seed;
        test_fill(&rng, x, c->inputs, -2.0f, 2.0f);
        float y[OUTPUTS];
        expect_status(mlp_forward(net, 1, x, y), MLP_OK, c, "mlp_forward");
        reference_forward(c, mlp_params(net, NULL), x, &ref);
        for (size_t o = 0; o < OUTPUTS; o++)
            expect_close(y[o], ref.a[1][o], ref.y_tol, c, "y", o);
        mlp_free(net);
    }
}

/* ---- gradients ---------------------------------------------------------- */

/* A ReLU layer whose units are all off for the sample passes no gradient
 * at all; turn its most negative unit on (negating its weights and bias
 * negates z) so every layer's gradient has something to compare. */
static void turn_on_a_relu_unit(const net_case *c, mlp *net, const float *x)
{
    static reference ref;
    float *p = mlp_params(net, NULL);
    const size_t fan_in[2] = {c->inputs, c->units}, units[2] = {c->units, OUTPUTS};
    const int acts[2] = {c->hidden, c->output};
    for (int l = 0; l < 2; l++) {
        if (acts[l] == ACT_RELU) {
            reference_forward(c, mlp_params(net, NULL), x, &ref);
            const double *zl = ref.z[l];
            size_t lowest = 0;
            int any_on = 0;
            for (size_t o = 0; o < units[l]; o++) {
                lowest = zl[o] < zl[lowest] ? o : lowest;
                any_on |= zl[o] > 0.0;
            }
            if (!any_on) {
                float *w = p + lowest * fan_in[l], *b = p + units[l] * fan_in[l] + lowest;
                for (size_t i = 0; i < fan_in[l]; i++)
                    w[i] = -w[i];
                *b = -*b;
            }
        }
        p += layer_params(fan_in[l], units[l]);
    }
}

static double largest_abs(const float *v, size_t n)
{
    double most = 0.0;
    for (size_t i = 0; i < n; i++)
        most = fmax(most, fabs(v[i]));
    return most;
}

/* The mean loss over two identical samples is the loss of one, so its
 * gradient is the same; the batch of 2 takes the batch kernels. Compared
 * layer by layer to 1e-5 of the scale of the layer's gradient
 * (reference_gradient_scale).
 * The data keeps the comparison well conditioned, so that the few-ulp
 * differences between the two forwards stay few-ulp in the gradients:
 * - the targets are 1 to 2 away from the outputs (either side): the mse
 *   gradient is y - t, and with t near y those differences are magnified by
 *   |y| / |y - t| (a target 0.022 from an output of 0.25 made it 1.1e-5 of
 *   every gradient entry);
 * - the weights keep sigmoid and tanh off saturation (make_net). */
static void test_single_sample_gradients_match_batch_of_two(void **state)
{
    (void)state;
    static net_case cases[MAX_CASES];
    static float x[2 * MAX_WIDTH], single[MAX_PARAMS];
    static reference ref;
    size_t n = grid(cases);
    for (size_t k = 0; k < n; k++) {
        const net_case *c = &cases[k];
        mlp *net = make_net(c);
        uint64_t rng = c->seed + 7;
        float t[2 * OUTPUTS], loss1, loss2;
        test_fill(&rng, x, c->inputs, -2.0f, 2.0f);
        memcpy(x + c->inputs, x, c->inputs * sizeof(float));
        turn_on_a_relu_unit(c, net, x);
        const float *params = mlp_params(net, NULL);
        reference_forward(c, params, x, &ref);
        for (size_t o = 0; o < OUTPUTS; o++) {
            double y = ref.a[1][o], away = test_uniform(&rng, 1.0f, 2.0f);
            t[o] = t[OUTPUTS + o] = (float)(test_rand(&rng) & 1 ? y + away : y - away);
        }
        reference_gradient_scale(c, params, x, t, &ref);

        size_t count = 0;
        const float *grads = mlp_grads(net, &count);
        assert_true(count <= sizeof single / sizeof single[0]);
        expect_status(mlp_forward(net, 1, x, NULL), MLP_OK, c, "mlp_forward(batch 1)");
        expect_status(mlp_backward(net, &mlp_mse, t, &loss1), MLP_OK, c, "mlp_backward(batch 1)");
        memcpy(single, grads, count * sizeof(float));
        assert_int_equal(mlp_zero_grad(net), MLP_OK);
        expect_status(mlp_forward(net, 2, x, NULL), MLP_OK, c, "mlp_forward(batch 2)");
        expect_status(mlp_backward(net, &mlp_mse, t, &loss2), MLP_OK, c, "mlp_backward(batch 2)");
        expect_close(loss1, loss2, 1e-5 * fabs(loss2) + 1e-7, c, "loss", 0);

        size_t start = 0;
        const size_t sizes[2] = {layer_params(c->inputs, c->units),
                                 layer_params(c->units, OUTPUTS)};
        static const char *const names[2] = {"layer 1 gradient", "layer 2 gradient"};
        for (int l = 0; l < 2; l++) {
            /* A softmax of one unit is the constant 1: nothing reaches
             * the layer before it. */
            int constant = l == 0 && c->hidden == ACT_SOFTMAX && c->units == 1;
            if (!(largest_abs(grads + start, sizes[l]) > 0.0) && !constant) {
                print_error("%s: %s is all zeros\n", describe(c), names[l]);
                fail();
            }
            double tol = 1e-5 * ref.grad_scale[l] + 1e-12;
            for (size_t i = 0; i < sizes[l]; i++)
                expect_close(single[start + i], grads[start + i], tol, c, names[l], i);
            start += sizes[l];
        }
        mlp_free(net);
    }
}

/* The first backward after a step writes the gradients, later ones add to
 * them (through a scratch buffer): twice the same sample is exactly twice
 * its gradient. */
static void test_second_single_sample_backward_adds_to_gradients(void **state)
{
    (void)state;
    static net_case cases[MAX_CASES];
    static float x[MAX_WIDTH], once[MAX_PARAMS];
    size_t n = grid(cases);
    for (size_t k = 0; k < n; k++) {
        const net_case *c = &cases[k];
        mlp *net = make_net(c);
        uint64_t rng = c->seed + 11;
        float t[OUTPUTS];
        test_fill(&rng, x, c->inputs, -2.0f, 2.0f);
        test_fill(&rng, t, OUTPUTS, -2.0f, 2.0f);
        size_t count = 0;
        const float *grads = mlp_grads(net, &count);
        assert_true(count <= sizeof once / sizeof once[0]);
        for (int round = 0; round < 2; round++) {
            expect_status(mlp_forward(net, 1, x, NULL), MLP_OK, c, "mlp_forward");
            expect_status(mlp_backward(net, &mlp_mse, t, NULL), MLP_OK, c, "mlp_backward");
            if (round == 0)
                memcpy(once, grads, count * sizeof(float));
        }
        for (size_t i = 0; i < count; i++)
            expect_close(grads[i], 2.0f * once[i], 0.0, c, "gradient", i);
        mlp_free(net);
    }
}

/* ---- predict ------------------------------------------------------------ */

static void test_single_sample_matches_predict(void **state)
{
    (void)state;
    static net_case cases[MAX_CASES];
    static float x[MAX_WIDTH];
    size_t n = grid(cases);
    for (size_t k = 0; k < n; k++) {
        const net_case *c = &cases[k];
        mlp *net = make_net(c);
        uint64_t rng = c->seed + 13;
        test_fill(&rng, x, c->inputs, -2.0f, 2.0f);
        float y_forward[OUTPUTS], y_predict[OUTPUTS];
        expect_status(mlp_predict(net, 1, x, y_predict), MLP_OK, c, "mlp_predict");
        expect_status(mlp_forward(net, 1, x, y_forward), MLP_OK, c, "mlp_forward");
        for (size_t o = 0; o < OUTPUTS; o++)
            if (memcmp(&y_forward[o], &y_predict[o], sizeof(float)) != 0) {
                print_error("%s: mlp_predict y[%zu] = %.9g, mlp_forward %.9g\n", describe(c), o,
                            (double)y_predict[o], (double)y_forward[o]);
                fail();
            }
        mlp_free(net);
    }
}

/* ---- overflowing weight gradients --------------------------------------- */

enum { HIDDEN = 5 }; /* 4 units in SSE2 lanes, one in the scalar remainder */

/* inputs -> HIDDEN identity -> 1 identity, every parameter set. */
static mlp *make_linear_net(size_t inputs)
{
    const mlp_layer layers[2] = {{HIDDEN, &mlp_identity}, {1, &mlp_identity}};
    mlp_config cfg = {inputs, 2, layers, 1, MLP_INIT_AUTO, NULL};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    return net;
}

static int all_zero(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f)
            return 0;
    return 1;
}

/* The backward of an overflowing case, on a network just created: refused,
 * the gradients as they were, the loss not stored and the forward kept, so
 * a backward against a near target then succeeds. Twice: first as the
 * first backward after creation (which writes straight into the gradient
 * buffer and must zero it again), then with an earlier gradient pending
 * (which goes through a scratch buffer and must be left alone). */
static void expect_overflow_refused(mlp *net, const float *x, const char *what, size_t where)
{
    static float earlier[1024];
    size_t count = 0;
    const float *grads = mlp_grads(net, &count);
    assert_true(count <= sizeof earlier / sizeof earlier[0]);
    const float far = 1e19f, near = 1.0f;
    for (int pending = 0; pending < 2; pending++) {
        if (pending) {
            assert_int_equal(mlp_zero_grad(net), MLP_OK);
            assert_int_equal(mlp_forward(net, 1, x, NULL), MLP_OK);
            assert_int_equal(mlp_backward(net, &mlp_mse, &near, NULL), MLP_OK);
        }
        memcpy(earlier, grads, count * sizeof(float));
        assert_int_equal(all_zero(earlier, count), !pending);

        float y, loss = -1.0f;
        assert_int_equal(mlp_forward(net, 1, x, &y), MLP_OK);
        assert_true(isfinite(y));
        mlp_status st = mlp_backward(net, &mlp_mse, &far, &loss);
        if (st != MLP_ERR_NONFINITE) {
            print_error("%s at %zu (gradients pending: %d): mlp_backward returned %d (%s)\n", what,
                        where, pending, (int)st, mlp_strerror(st));
            fail();
        }
        assert_memory_equal(grads, earlier, count * sizeof(float));
        assert_true(loss == -1.0f);
        assert_int_equal(mlp_backward(net, &mlp_mse, &near, NULL), MLP_OK);
        assert_false(all_zero(grads, count));
    }
}

/* The weight gradient dW = dz x^T overflows while every value the forward
 * computes, the loss and every dz stay finite. The numbers: the target is
 * 1e19 away from an output of order 1, so the mse loss is about 1e38
 * (below FLT_MAX, 3.4e38: the loss itself is accepted) and dL/dy about
 * -2e19; a factor of 1e30 in x or in the hidden activation makes its
 * product with a dz of 1e19 to 2e19 about 1e49, beyond float. The factor's
 * own contribution to the forward is cancelled by a weight of 1e-30, so the
 * output stays of order 1. With 1e18 instead of 1e30 every product is at
 * most 2e37, and the same backward succeeds (the check is not too eager).
 * The large factor is put in every position: the SSE2 lanes, the scalar
 * remainder, and the specialised code for fan_in 1-4 and 8. */
static void test_overflowing_weight_gradient_is_refused(void **state)
{
    (void)state;
    static const size_t fan_ins[] = {1, 2, 3, 4, 5, 8, 9};
    for (size_t f = 0; f < sizeof fan_ins / sizeof fan_ins[0]; f++) {
        size_t inputs = fan_ins[f];
        float x[9];

        /* In the first layer: x[where] = 1e30, W1[:, where] = 1e-30, so
         * z1 is about 1 + 0.0625 (inputs - 1); dz1 = W2^T dz2 = 0.5 * -2e19;
         * dW1[:, where] = -1e19 * 1e30. */
        for (size_t where = 0; where < inputs; where++) {
            mlp *net = make_linear_net(inputs);
            float *p = mlp_params(net, NULL);
            float *w1 = p, *b1 = w1 + HIDDEN * inputs, *w2 = b1 + HIDDEN, *b2 = w2 + HIDDEN;
            for (size_t o = 0; o < HIDDEN; o++) {
                for (size_t i = 0; i < inputs; i++)
                    w1[o * inputs + i] = i == where ? 1e-30f : 0.125f;
                b1[o] = 0.0f;
                w2[o] = 0.5f;
            }
            *b2 = 0.0f;
            for (size_t i = 0; i < inputs; i++)
                x[i] = i == where ? 1e30f : 0.5f;
            expect_overflow_refused(net, x, "x = 1e30 in the first layer", where);

            /* The control: dW1 about -1e37, finite. */
            float x_control[9], target = 1e19f;
            memcpy(x_control, x, sizeof x_control);
            x_control[where] = 1e18f;
            assert_int_equal(mlp_zero_grad(net), MLP_OK);
            assert_int_equal(mlp_forward(net, 1, x_control, NULL), MLP_OK);
            assert_int_equal(mlp_backward(net, &mlp_mse, &target, NULL), MLP_OK);
            mlp_free(net);
        }

        /* In the output layer: hidden unit `where` has bias 1e30 (and zero
         * weights), W2[where] = 1e-30, so y is of order 1 and
         * dW2[where] = dz2 * a1[where] = -2e19 * 1e30; the first layer's
         * gradients (dz1 = 0.5 * -2e19 times x = 1) are finite. */
        for (size_t where = 0; where < HIDDEN; where++) {
            mlp *net = make_linear_net(inputs);
            float *p = mlp_params(net, NULL);
            float *w1 = p, *b1 = w1 + HIDDEN * inputs, *w2 = b1 + HIDDEN, *b2 = w2 + HIDDEN;
            for (size_t o = 0; o < HIDDEN; o++) {
                for (size_t i = 0; i < inputs; i++)
                    w1[o * inputs + i] = o == where ? 0.0f : 0.125f;
                b1[o] = o == where ? 1e30f : 0.0f;
                w2[o] = o == where ? 1e-30f : 0.5f;
            }
            *b2 = 0.0f;
            for (size_t i = 0; i < inputs; i++)
                x[i] = 1.0f;
            expect_overflow_refused(net, x, "a1 = 1e30 in the output layer", where);

            /* The control: bias 1e18, dW2 about -2e37, finite. */
            float target = 1e19f;
            b1[where] = 1e18f;
            assert_int_equal(mlp_zero_grad(net), MLP_OK);
            assert_int_equal(mlp_forward(net, 1, x, NULL), MLP_OK);
            assert_int_equal(mlp_backward(net, &mlp_mse, &target, NULL), MLP_OK);
            mlp_free(net);
        }
    }
}

/* ---- the ReLU family's derivative at and below zero --------------------- */

enum { KIND_ZERO, KIND_NEGATIVE, KIND_POSITIVE, KIND_TINY_NEGATIVE, KIND_TINY_POSITIVE, N_KINDS };

static const float designed_z[N_KINDS] = {0.0f, -1.0f, 1.0f, -0x1p-20f, 0x1p-20f};

/* First-layer parameters whose pre-activations for x_i = (i + 1) / 2 are
 * exactly designed_z[o % N_KINDS]: every weight 0.25, so W x is
 * S = (sum of i + 1) / 8, and the bias -S + z. All values are short binary
 * fractions (S <= 4.5, |z| >= 2^-20): every sum is exact in any order. */
static void set_designed_layer(float *w, float *b, size_t inputs, size_t units, float *x)
{
    float s = 0.0f;
    for (size_t i = 0; i < inputs; i++) {
        x[i] = 0.5f * (float)(i + 1);
        s += 0.25f * x[i];
    }
    for (size_t o = 0; o < units; o++) {
        for (size_t i = 0; i < inputs; i++)
            w[o * inputs + i] = 0.25f;
        b[o] = designed_z[o % N_KINDS] - s;
    }
}

/* inputs -> units (act) -> 2 identity; the output weights are all 0.5, the
 * targets 100 above the outputs, so dL/da1 is the same non-zero value for
 * every hidden unit, and dW1[o][i] = f'(z_o) dL/da1[o] x_i. Checks first
 * that z is as designed (through an identity layer with the same
 * parameters), then every row of dW1 and db1 against `slope` at z <= 0
 * (exactly 0 for ReLU) and 1 above. */
static void check_derivative_at_and_below_zero(const mlp_activation *act, float slope)
{
    static const size_t fan_ins[] = {1, 2, 3, 4, 5, 8};
    static const size_t widths[] = {5, 7, 8, 9};
    for (size_t f = 0; f < sizeof fan_ins / sizeof fan_ins[0]; f++)
        for (size_t u = 0; u < sizeof widths / sizeof widths[0]; u++) {
            size_t inputs = fan_ins[f], units = widths[u];
            float x[8], z[9];

            const mlp_layer probe_layers[1] = {{units, &mlp_identity}};
            mlp_config probe_cfg = {inputs, 1, probe_layers, 1, MLP_INIT_AUTO, NULL};
            mlp *probe;
            assert_int_equal(mlp_create(&probe, &probe_cfg), MLP_OK);
            float *pp = mlp_params(probe, NULL);
            set_designed_layer(pp, pp + units * inputs, inputs, units, x);
            assert_int_equal(mlp_forward(probe, 1, x, z), MLP_OK);
            for (size_t o = 0; o < units; o++)
                assert_true(z[o] == designed_z[o % N_KINDS]);
            mlp_free(probe);

            const mlp_layer layers[2] = {{units, act}, {2, &mlp_identity}};
            mlp_config cfg = {inputs, 2, layers, 1, MLP_INIT_AUTO, NULL};
            mlp *net;
            assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
            float *p = mlp_params(net, NULL);
            float *w1 = p, *b1 = w1 + units * inputs, *w2 = b1 + units, *b2 = w2 + 2 * units;
            set_designed_layer(w1, b1, inputs, units, x);
            for (size_t i = 0; i < 2 * units; i++)
                w2[i] = 0.5f;
            b2[0] = b2[1] = 0.0f;

            /* y_k = 0.5 * sum_o a_o; dL/dy_k = (y_k - t_k) (mse over 2
             * outputs: 2/2); dL/da_o = 0.5 * (dL/dy_0 + dL/dy_1). */
            double y = 0.0;
            for (size_t o = 0; o < units; o++) {
                double zo = designed_z[o % N_KINDS];
                y += 0.5 * (zo > 0.0 ? zo : slope * zo);
            }
            float t[2] = {(float)y + 100.0f, (float)y + 100.0f};
            double grad_a = 0.5 * 2.0 * (y - (double)t[0]);

            assert_int_equal(mlp_forward(net, 1, x, NULL), MLP_OK);
            assert_int_equal(mlp_backward(net, &mlp_mse, t, NULL), MLP_OK);
            const float *g = mlp_grads(net, NULL), *gb = g + units * inputs;
            for (size_t o = 0; o < units; o++) {
                double d = designed_z[o % N_KINDS] > 0.0f ? 1.0 : slope;
                for (size_t i = 0; i <= inputs; i++) {
                    /* i == inputs: the bias, whose "input" is 1 */
                    double got = i < inputs ? g[o * inputs + i] : gb[o];
                    double want = d * grad_a * (i < inputs ? x[i] : 1.0);
                    int exact_zero = slope == 0.0f && d == 0.0;
                    if (exact_zero ? got != 0.0 : !(fabs(got - want) <= 1e-5 * fabs(want))) {
                        print_error("%s %zu -> %zu: unit %zu (z = %g): %s = %.9g, expected %.9g\n",
                                    act->name, inputs, units, o, (double)designed_z[o % N_KINDS],
                                    i < inputs ? "dW" : "db", got, want);
                        fail();
                    }
                    if (d != 0.0)
                        assert_true(got != 0.0);
                }
            }
            mlp_free(net);
        }
}

static void test_relu_derivative_is_zero_at_and_below_zero_on_single_sample(void **state)
{
    (void)state;
    check_derivative_at_and_below_zero(&mlp_relu, 0.0f);
}

static void test_leaky_relu_derivative_is_its_slope_at_and_below_zero_on_single_sample(void **state)
{
    (void)state;
    check_derivative_at_and_below_zero(&mlp_leaky_relu, 0.01f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_sample_forward_matches_double_reference),
        cmocka_unit_test(test_single_sample_gradients_match_batch_of_two),
        cmocka_unit_test(test_second_single_sample_backward_adds_to_gradients),
        cmocka_unit_test(test_single_sample_matches_predict),
        cmocka_unit_test(test_overflowing_weight_gradient_is_refused),
        cmocka_unit_test(test_relu_derivative_is_zero_at_and_below_zero_on_single_sample),
        cmocka_unit_test(
            test_leaky_relu_derivative_is_its_slope_at_and_below_zero_on_single_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
