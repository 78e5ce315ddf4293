/* Optimizers (mlp_optimizer, mlp_optimizer_default, mlp_step): every update
 * rule against values worked out here by hand from the rules documented in
 * mlp.h, clipping, weight decay, defaults, refusals, state handling and
 * allocation failure.
 *
 * The network is inputs=2 -> 1 unit with mlp_identity, so its parameters
 * are (w0, w1, b) and, for a caller-given dL/dy over a batch,
 *     dL/dw_i = sum_n grad_y[n] x[n][i],   dL/db = sum_n grad_y[n],
 * independent of the weights. Inputs, gradients and hyperparameters are
 * exact in binary (0.75, 0.875, 2^-10, ...) so float rounding of the
 * hyperparameters plays no part, and none is 0.5, where b and 1 - b would
 * coincide. Epsilons are large enough (2^-10) that where eps enters the
 * formula is visible at the tolerance used. */
#include "helpers.h"

#define N_INPUTS 2
#define N_PARAMS 3 /* w0, w1, b */
#define BATCH 2
#define N_STEPS 3

/* |actual - expected| allowed for a parameter: float rounding of a few
 * operations per step, three steps. */
#define REL_TOL 1e-6
#define ABS_TOL 1e-7

static const float initial_params[N_PARAMS] = {0.5f, -0.25f, 0.125f};

/* One batch per step: x (BATCH x N_INPUTS) and dL/dy (BATCH x 1). The
 * gradients change sign between steps so accumulated state matters. */
static const float step_x[N_STEPS][BATCH * N_INPUTS] = {
    {1.0f, 2.0f, -3.0f, 0.5f},
    {0.5f, -1.0f, 2.0f, 1.5f},
    {-2.0f, 0.25f, 1.0f, -1.0f},
};
static const float step_grad_y[N_STEPS][BATCH] = {
    {0.25f, -0.5f},
    {-1.0f, 0.75f},
    {0.5f, 0.5f},
};

static const mlp_optimizer_kind all_kinds[] = {
    MLP_OPT_SGD, MLP_OPT_MOMENTUM, MLP_OPT_NESTEROV, MLP_OPT_RMSPROP, MLP_OPT_ADAM, MLP_OPT_ADAMW,
};
#define N_KINDS (sizeof all_kinds / sizeof all_kinds[0])

/* ---- helpers ------------------------------------------------------------ */

static mlp *new_net(const mlp_allocator *allocator)
{
    const mlp_layer layer = {1, &mlp_identity};
    const mlp_config cfg = {
        .inputs = N_INPUTS, .n_layers = 1, .layers = &layer, .seed = 7, .allocator = allocator};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    size_t count = 0;
    float *params = mlp_params(net, &count);
    assert_int_equal(count, N_PARAMS);
    memcpy(params, initial_params, sizeof initial_params);
    return net;
}

static void initial_params_double(double w[N_PARAMS])
{
    for (size_t i = 0; i < N_PARAMS; i++)
        w[i] = initial_params[i];
}

/* dL/d(w0, w1, b) of step s's batch, by hand (see the top of the file). */
static void hand_gradient(int s, double g[N_PARAMS])
{
    for (size_t i = 0; i < N_PARAMS; i++)
        g[i] = 0.0;
    for (size_t n = 0; n < BATCH; n++) {
        double grad_y = step_grad_y[s][n];
        g[0] += grad_y * step_x[s][n * N_INPUTS + 0];
        g[1] += grad_y * step_x[s][n * N_INPUTS + 1];
        g[2] += grad_y;
    }
}

/* Forward + backward of step s's batch; g receives the hand gradient, which
 * the network's gradient buffer must then hold. */
static void backward_step(mlp *net, int s, double g[N_PARAMS])
{
    assert_int_equal(mlp_forward(net, BATCH, step_x[s], NULL), MLP_OK);
    assert_int_equal(mlp_backward_grad(net, step_grad_y[s]), MLP_OK);
    hand_gradient(s, g);
    const float *grads = mlp_grads(net, NULL);
    for (size_t i = 0; i < N_PARAMS; i++)
        assert_close(grads[i], g[i], ABS_TOL + REL_TOL * fabs(g[i]));
}

static void assert_params_near(mlp *net, const double expected[N_PARAMS])
{
    const float *params = mlp_params(net, NULL);
    for (size_t i = 0; i < N_PARAMS; i++)
        assert_close(params[i], expected[i], ABS_TOL + REL_TOL * fabs(expected[i]));
}

/* A backward whose gradient is set directly: the step then sees exactly g. */
static void set_gradient(mlp *net, const float g[N_PARAMS])
{
    double unused[N_PARAMS];
    backward_step(net, 0, unused);
    memcpy(mlp_grads(net, NULL), g, N_PARAMS * sizeof(float));
}

typedef struct snapshot {
    float params[N_PARAMS], grads[N_PARAMS];
} snapshot;

static void take_snapshot(mlp *net, snapshot *snap)
{
    memcpy(snap->params, mlp_params(net, NULL), sizeof snap->params);
    memcpy(snap->grads, mlp_grads(net, NULL), sizeof snap->grads);
}

static void assert_unchanged(mlp *net, const snapshot *snap)
{
    assert_memory_equal(mlp_params(net, NULL), snap->params, sizeof snap->params);
    assert_memory_equal(mlp_grads(net, NULL), snap->grads, sizeof snap->grads);
}

static void assert_same_params(mlp *a, mlp *b)
{
    assert_memory_equal(mlp_params(a, NULL), mlp_params(b, NULL), N_PARAMS * sizeof(float));
}

/* ---- each rule, by hand ------------------------------------------------- */

static void test_sgd_matches_hand_computed_three_steps(void **state)
{
    (void)state;
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    opt.learning_rate = 0.25;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS];
    initial_params_double(w);
    for (int s = 0; s < N_STEPS; s++) {
        backward_step(net, s, g);
        for (size_t i = 0; i < N_PARAMS; i++)
            w[i] -= opt.learning_rate * g[i];
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_params_near(net, w);
    }
    mlp_free(net);
}

static void test_momentum_matches_hand_computed_three_steps(void **state)
{
    (void)state;
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_MOMENTUM);
    opt.learning_rate = 0.125;
    opt.momentum = 0.75;
    const double lr = opt.learning_rate, mu = opt.momentum;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS], v[N_PARAMS] = {0.0, 0.0, 0.0};
    initial_params_double(w);
    for (int s = 0; s < N_STEPS; s++) {
        backward_step(net, s, g);
        for (size_t i = 0; i < N_PARAMS; i++) {
            v[i] = mu * v[i] + g[i];
            w[i] -= lr * v[i];
        }
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_params_near(net, w);
    }
    mlp_free(net);
}

static void test_nesterov_matches_hand_computed_three_steps(void **state)
{
    (void)state;
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_NESTEROV);
    opt.learning_rate = 0.125;
    opt.momentum = 0.75;
    const double lr = opt.learning_rate, mu = opt.momentum;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS], v[N_PARAMS] = {0.0, 0.0, 0.0};
    initial_params_double(w);
    for (int s = 0; s < N_STEPS; s++) {
        backward_step(net, s, g);
        for (size_t i = 0; i < N_PARAMS; i++) {
            v[i] = mu * v[i] + g[i];
            w[i] -= lr * (g[i] + mu * v[i]);
        }
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_params_near(net, w);
    }
    mlp_free(net);
}

static void test_rmsprop_matches_hand_computed_three_steps(void **state)
{
    (void)state;
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_RMSPROP);
    opt.learning_rate = 0.0625;
    opt.rho = 0.875;
    opt.epsilon = 0x1p-10;
    const double lr = opt.learning_rate, rho = opt.rho, eps = opt.epsilon;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS], sq[N_PARAMS] = {0.0, 0.0, 0.0};
    initial_params_double(w);
    for (int s = 0; s < N_STEPS; s++) {
        backward_step(net, s, g);
        for (size_t i = 0; i < N_PARAMS; i++) {
            sq[i] = rho * sq[i] + (1.0 - rho) * g[i] * g[i];
            w[i] -= lr * g[i] / (sqrt(sq[i]) + eps);
        }
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_params_near(net, w);
    }
    mlp_free(net);
}

/* Adam's documented step t (from 1) on w with moments m, v, in double. */
static void hand_adam_update(double w[N_PARAMS], double m[N_PARAMS], double v[N_PARAMS],
                             const double g[N_PARAMS], int t, const mlp_optimizer *opt)
{
    const double lr = opt->learning_rate, b1 = opt->beta1, b2 = opt->beta2, eps = opt->epsilon;
    for (size_t i = 0; i < N_PARAMS; i++) {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        double m_hat = m[i] / (1.0 - pow(b1, t));
        double v_hat = v[i] / (1.0 - pow(b2, t));
        w[i] -= lr * m_hat / (sqrt(v_hat) + eps);
    }
}

static mlp_optimizer adam_for_hand_tests(mlp_optimizer_kind kind)
{
    mlp_optimizer opt = mlp_optimizer_default(kind);
    opt.learning_rate = 0.125;
    opt.beta1 = 0.75;
    opt.beta2 = 0.875;
    opt.epsilon = 0x1p-10;
    return opt;
}

static void test_adam_matches_hand_computed_three_steps(void **state)
{
    (void)state;
    const mlp_optimizer opt = adam_for_hand_tests(MLP_OPT_ADAM);
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS], m[N_PARAMS] = {0.0, 0.0, 0.0}, v[N_PARAMS] = {0.0, 0.0, 0.0};
    initial_params_double(w);
    for (int s = 0; s < N_STEPS; s++) {
        backward_step(net, s, g);
        hand_adam_update(w, m, v, g, s + 1, &opt);
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_params_near(net, w);
    }
    mlp_free(net);
}

static void test_adamw_matches_hand_computed_three_steps(void **state)
{
    (void)state;
    mlp_optimizer opt = adam_for_hand_tests(MLP_OPT_ADAMW);
    opt.weight_decay = 0.25;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS], m[N_PARAMS] = {0.0, 0.0, 0.0}, v[N_PARAMS] = {0.0, 0.0, 0.0};
    initial_params_double(w);
    for (int s = 0; s < N_STEPS; s++) {
        backward_step(net, s, g);
        for (size_t i = 0; i < N_PARAMS; i++)
            w[i] -= opt.learning_rate * opt.weight_decay * w[i]; /* decoupled */
        hand_adam_update(w, m, v, g, s + 1, &opt);               /* g without wd */
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_params_near(net, w);
    }
    mlp_free(net);
}

/* ---- clipping ------------------------------------------------------------ */

static double update_norm(const double before[N_PARAMS], mlp *net)
{
    const float *after = mlp_params(net, NULL);
    double sq = 0.0;
    for (size_t i = 0; i < N_PARAMS; i++)
        sq += (before[i] - after[i]) * (before[i] - after[i]);
    return sqrt(sq);
}

static void test_clip_norm_scales_gradient_above_clip_to_exactly_clip_norm(void **state)
{
    (void)state;
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    opt.learning_rate = 1.0;

    /* A backward's gradient, norm sqrt(3.1875) ~ 1.785, clipped to 0.5. */
    opt.clip_norm = 0.5;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS];
    initial_params_double(w);
    backward_step(net, 0, g);
    double norm = sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2]);
    assert_true(norm > opt.clip_norm);
    assert_int_equal(mlp_step(net, &opt), MLP_OK);
    assert_close(update_norm(w, net), opt.clip_norm, 1e-6);
    for (size_t i = 0; i < N_PARAMS; i++)
        w[i] -= opt.learning_rate * g[i] * (opt.clip_norm / norm);
    assert_params_near(net, w);
    mlp_free(net);

    /* Gradient (3, 4, 12), norm 13, clipped to 6.5: scale exactly 1/2. */
    static const float g_13[N_PARAMS] = {3.0f, 4.0f, 12.0f};
    opt.clip_norm = 6.5;
    net = new_net(NULL);
    set_gradient(net, g_13);
    assert_int_equal(mlp_step(net, &opt), MLP_OK);
    const float expected[N_PARAMS] = {0.5f - 1.5f, -0.25f - 2.0f, 0.125f - 6.0f};
    assert_memory_equal(mlp_params(net, NULL), expected, sizeof expected);
    mlp_free(net);
}

static void test_clip_norm_leaves_gradient_below_clip_unchanged(void **state)
{
    (void)state;
    static const float g_13[N_PARAMS] = {3.0f, 4.0f, 12.0f}; /* norm 13 */
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    opt.learning_rate = 0.25;

    mlp *unclipped = new_net(NULL);
    set_gradient(unclipped, g_13);
    assert_int_equal(mlp_step(unclipped, &opt), MLP_OK);
    const float expected[N_PARAMS] = {0.5f - 0.75f, -0.25f - 1.0f, 0.125f - 3.0f};
    assert_memory_equal(mlp_params(unclipped, NULL), expected, sizeof expected);

    opt.clip_norm = 13.5;
    mlp *clipped = new_net(NULL);
    set_gradient(clipped, g_13);
    assert_int_equal(mlp_step(clipped, &opt), MLP_OK);
    assert_same_params(clipped, unclipped);

    mlp_free(clipped);
    mlp_free(unclipped);
}

/* One norm over every parameter of every layer, not one per layer or per
 * tensor: on a 2 -> 2 -> 1 network with all nine gradients 1 (norm 3) and
 * clip 1.5, each gradient becomes exactly 0.5; clipping layer by layer would
 * give 1.5/sqrt(6) and 1.5/sqrt(3) instead. */
static void test_clip_norm_is_global_across_all_layers(void **state)
{
    (void)state;
    const mlp_layer layers[2] = {{2, &mlp_tanh}, {1, &mlp_identity}};
    const mlp_config cfg = {.inputs = 2, .n_layers = 2, .layers = layers, .seed = 11};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    assert_int_equal(mlp_param_count(net), 9);
    const float x[2] = {0.5f, -1.0f}, grad_y[1] = {1.0f};
    assert_int_equal(mlp_forward(net, 1, x, NULL), MLP_OK);
    assert_int_equal(mlp_backward_grad(net, grad_y), MLP_OK);
    float *grads = mlp_grads(net, NULL), before[9], expected[9];
    memcpy(before, mlp_params(net, NULL), sizeof before);
    for (size_t i = 0; i < 9; i++) {
        grads[i] = 1.0f;
        expected[i] = before[i] - 0.5f;
    }
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    opt.learning_rate = 1.0;
    opt.clip_norm = 1.5;
    assert_int_equal(mlp_step(net, &opt), MLP_OK);
    assert_memory_equal(mlp_params(net, NULL), expected, sizeof expected);
    mlp_free(net);
}

/* g in the documented rules is the clipped gradient; wd w is added after. */
static void test_clip_norm_applies_before_weight_decay(void **state)
{
    (void)state;
    static const float g_13[N_PARAMS] = {3.0f, 4.0f, 12.0f}; /* norm 13 */
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    opt.learning_rate = 0.25;
    opt.weight_decay = 0.5;
    opt.clip_norm = 6.5;
    mlp *net = new_net(NULL);
    set_gradient(net, g_13);
    double w[N_PARAMS];
    initial_params_double(w);
    for (size_t i = 0; i < N_PARAMS; i++) {
        double g = g_13[i] * (opt.clip_norm / 13.0) + opt.weight_decay * w[i];
        w[i] -= opt.learning_rate * g;
    }
    assert_int_equal(mlp_step(net, &opt), MLP_OK);
    assert_params_near(net, w);
    mlp_free(net);
}

/* ---- weight decay --------------------------------------------------------- */

static void test_sgd_weight_decay_adds_wd_times_w_to_gradient(void **state)
{
    (void)state;
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    opt.learning_rate = 0.25;
    opt.weight_decay = 0.75;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS];
    initial_params_double(w);
    for (int s = 0; s < N_STEPS; s++) {
        backward_step(net, s, g);
        for (size_t i = 0; i < N_PARAMS; i++) {
            g[i] += opt.weight_decay * w[i];
            w[i] -= opt.learning_rate * g[i];
        }
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_params_near(net, w);
    }
    mlp_free(net);
}

/* Coupled: wd w joins g before the moments, so Adam normalises it too. */
static void test_adam_weight_decay_adds_wd_times_w_to_gradient_before_moments(void **state)
{
    (void)state;
    mlp_optimizer opt = adam_for_hand_tests(MLP_OPT_ADAM);
    opt.weight_decay = 0.75;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS], m[N_PARAMS] = {0.0, 0.0, 0.0}, v[N_PARAMS] = {0.0, 0.0, 0.0};
    initial_params_double(w);
    for (int s = 0; s < N_STEPS; s++) {
        backward_step(net, s, g);
        for (size_t i = 0; i < N_PARAMS; i++)
            g[i] += opt.weight_decay * w[i];
        hand_adam_update(w, m, v, g, s + 1, &opt);
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_params_near(net, w);
    }
    mlp_free(net);
}

static void test_momentum_nesterov_rmsprop_weight_decay_adds_wd_times_w_to_gradient(void **state)
{
    (void)state;
    const mlp_optimizer_kind kinds[] = {MLP_OPT_MOMENTUM, MLP_OPT_NESTEROV, MLP_OPT_RMSPROP};
    for (size_t k = 0; k < 3; k++) {
        mlp_optimizer opt = mlp_optimizer_default(kinds[k]);
        opt.learning_rate = 0.125;
        opt.momentum = 0.75;
        opt.rho = 0.875;
        opt.epsilon = 0x1p-10;
        opt.weight_decay = 0.75;
        const double lr = opt.learning_rate, mu = opt.momentum, rho = opt.rho;
        mlp *net = new_net(NULL);
        double w[N_PARAMS], g[N_PARAMS], state_v[N_PARAMS] = {0.0, 0.0, 0.0};
        initial_params_double(w);
        for (int s = 0; s < 2; s++) {
            backward_step(net, s, g);
            for (size_t i = 0; i < N_PARAMS; i++) {
                g[i] += opt.weight_decay * w[i];
                if (kinds[k] == MLP_OPT_MOMENTUM) {
                    state_v[i] = mu * state_v[i] + g[i];
                    w[i] -= lr * state_v[i];
                } else if (kinds[k] == MLP_OPT_NESTEROV) {
                    state_v[i] = mu * state_v[i] + g[i];
                    w[i] -= lr * (g[i] + mu * state_v[i]);
                } else {
                    state_v[i] = rho * state_v[i] + (1.0 - rho) * g[i] * g[i];
                    w[i] -= lr * g[i] / (sqrt(state_v[i]) + opt.epsilon);
                }
            }
            assert_int_equal(mlp_step(net, &opt), MLP_OK);
            assert_params_near(net, w);
        }
        mlp_free(net);
    }
}

/* With a zero loss gradient the difference is plain. Adam's L2 term wd w
 * goes through the moments and is normalised: the first step moves every
 * weight by about lr, whatever wd. AdamW shrinks each weight by the factor
 * (1 - lr wd) and its Adam part, on g = 0, moves nothing. */
static void test_adamw_weight_decay_is_decoupled_unlike_adam_l2(void **state)
{
    (void)state;
    static const float zero[N_PARAMS] = {0.0f, 0.0f, 0.0f};
    mlp_optimizer adam = adam_for_hand_tests(MLP_OPT_ADAM);
    mlp_optimizer adamw = adam_for_hand_tests(MLP_OPT_ADAMW);
    adam.weight_decay = adamw.weight_decay = 0.5;
    const double lr = adam.learning_rate, wd = adam.weight_decay, eps = adam.epsilon;

    mlp *net_adam = new_net(NULL), *net_adamw = new_net(NULL);
    set_gradient(net_adam, zero);
    set_gradient(net_adamw, zero);
    assert_int_equal(mlp_step(net_adam, &adam), MLP_OK);
    assert_int_equal(mlp_step(net_adamw, &adamw), MLP_OK);

    double w_adam[N_PARAMS], w_adamw[N_PARAMS];
    for (size_t i = 0; i < N_PARAMS; i++) {
        double w = initial_params[i];
        /* Adam, t = 1: g = wd w, m_hat = g, v_hat = g^2. */
        double g = wd * w;
        w_adam[i] = w - lr * g / (fabs(g) + eps);
        w_adamw[i] = w - lr * wd * w;
    }
    assert_params_near(net_adam, w_adam);
    assert_params_near(net_adamw, w_adamw);
    /* The shape of the difference, not just the numbers: Adam's move is
     * close to lr for each weight; AdamW's is lr wd |w|, a fixed fraction. */
    const float *p_adam = mlp_params(net_adam, NULL), *p_adamw = mlp_params(net_adamw, NULL);
    for (size_t i = 0; i < N_PARAMS; i++) {
        double w = initial_params[i];
        assert_close(fabs(w - p_adam[i]), lr, 0.02 * lr);
        assert_close(fabs(w - p_adamw[i]), lr * wd * fabs(w), 1e-7);
    }
    mlp_free(net_adamw);
    mlp_free(net_adam);
}

/* ---- defaults ------------------------------------------------------------- */

static void test_optimizer_default_matches_documented_values_for_every_kind(void **state)
{
    (void)state;
    const struct {
        mlp_optimizer_kind kind;
        double learning_rate, weight_decay;
    } documented[] = {
        {MLP_OPT_SGD, 0.01, 0.0},      {MLP_OPT_MOMENTUM, 0.01, 0.0}, {MLP_OPT_NESTEROV, 0.01, 0.0},
        {MLP_OPT_RMSPROP, 0.001, 0.0}, {MLP_OPT_ADAM, 0.001, 0.0},    {MLP_OPT_ADAMW, 0.001, 0.01},
    };
    for (size_t k = 0; k < sizeof documented / sizeof documented[0]; k++) {
        mlp_optimizer opt = mlp_optimizer_default(documented[k].kind);
        assert_int_equal(opt.kind, documented[k].kind);
        assert_true(opt.learning_rate == documented[k].learning_rate);
        assert_true(opt.momentum == 0.9);
        assert_true(opt.beta1 == 0.9);
        assert_true(opt.beta2 == 0.999);
        assert_true(opt.rho == 0.9);
        assert_true(opt.epsilon == 1e-8);
        assert_true(opt.weight_decay == documented[k].weight_decay);
        assert_true(opt.clip_norm == 0.0);
    }
}

static void test_optimizer_default_is_accepted_by_step_for_every_kind(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_KINDS; k++) {
        mlp_optimizer opt = mlp_optimizer_default(all_kinds[k]);
        mlp *net = new_net(NULL);
        double g[N_PARAMS];
        backward_step(net, 0, g);
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_memory_not_equal(mlp_params(net, NULL), initial_params, sizeof initial_params);
        mlp_free(net);
    }
}

static void test_optimizer_default_unknown_kind_gives_sgd_defaults_refused_by_step(void **state)
{
    (void)state;
    const mlp_optimizer_kind unknown = (mlp_optimizer_kind)(MLP_OPT_ADAMW + 1);
    mlp_optimizer opt = mlp_optimizer_default(unknown);
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(opt.kind, unknown);
    assert_true(opt.learning_rate == sgd.learning_rate);
    assert_true(opt.momentum == sgd.momentum);
    assert_true(opt.beta1 == sgd.beta1 && opt.beta2 == sgd.beta2);
    assert_true(opt.rho == sgd.rho && opt.epsilon == sgd.epsilon);
    assert_true(opt.weight_decay == sgd.weight_decay && opt.clip_norm == sgd.clip_norm);

    mlp *net = new_net(NULL);
    double g[N_PARAMS];
    backward_step(net, 0, g);
    snapshot snap;
    take_snapshot(net, &snap);
    assert_int_equal(mlp_step(net, &opt), MLP_ERR_INVALID);
    assert_unchanged(net, &snap);
    mlp_free(net);
}

/* ---- refusals ------------------------------------------------------------- */

typedef struct bad_optimizer {
    const char *what;
    mlp_optimizer opt;
} bad_optimizer;

#define MAX_BAD 128
#define ADD_BAD(kind_, field_, value_)                                                             \
    do {                                                                                           \
        assert_true(n < MAX_BAD);                                                                  \
        bad[n].what = #field_ " = " #value_;                                                       \
        bad[n].opt = mlp_optimizer_default(kind_);                                                 \
        bad[n].opt.field_ = value_;                                                                \
        n++;                                                                                       \
    } while (0)

/* Every out-of-range or non-finite hyperparameter a kind uses. */
static size_t fill_bad_optimizers(bad_optimizer *bad)
{
    size_t n = 0;
    for (size_t k = 0; k < N_KINDS; k++) {
        mlp_optimizer_kind kind = all_kinds[k];
        ADD_BAD(kind, learning_rate, 0.0);
        ADD_BAD(kind, learning_rate, -1e-3);
        ADD_BAD(kind, learning_rate, (double)NAN);
        ADD_BAD(kind, learning_rate, (double)INFINITY);
        ADD_BAD(kind, weight_decay, -1e-4);
        ADD_BAD(kind, weight_decay, (double)NAN);
        ADD_BAD(kind, weight_decay, (double)INFINITY);
        ADD_BAD(kind, clip_norm, -1.0);
        ADD_BAD(kind, clip_norm, (double)NAN);
        ADD_BAD(kind, clip_norm, (double)INFINITY);
        switch (kind) {
        case MLP_OPT_MOMENTUM:
        case MLP_OPT_NESTEROV:
            ADD_BAD(kind, momentum, 1.0);
            ADD_BAD(kind, momentum, 1.5);
            ADD_BAD(kind, momentum, -0.1);
            ADD_BAD(kind, momentum, (double)NAN);
            break;
        case MLP_OPT_RMSPROP:
            ADD_BAD(kind, rho, 1.0);
            ADD_BAD(kind, rho, -0.1);
            ADD_BAD(kind, rho, (double)NAN);
            ADD_BAD(kind, epsilon, 0.0);
            ADD_BAD(kind, epsilon, -1e-8);
            ADD_BAD(kind, epsilon, (double)NAN);
            break;
        case MLP_OPT_ADAM:
        case MLP_OPT_ADAMW:
            ADD_BAD(kind, beta1, 1.0);
            ADD_BAD(kind, beta1, -0.1);
            ADD_BAD(kind, beta1, (double)NAN);
            ADD_BAD(kind, beta2, 1.0);
            ADD_BAD(kind, beta2, 2.0);
            ADD_BAD(kind, beta2, (double)NAN);
            ADD_BAD(kind, epsilon, 0.0);
            ADD_BAD(kind, epsilon, -1e-8);
            ADD_BAD(kind, epsilon, (double)NAN);
            break;
        case MLP_OPT_SGD: break;
        }
    }
    ADD_BAD(MLP_OPT_SGD, kind, (mlp_optimizer_kind)(MLP_OPT_ADAMW + 1));
    ADD_BAD(MLP_OPT_ADAM, kind, (mlp_optimizer_kind)(MLP_OPT_ADAMW + 100));
    return n;
}

/* Each refused call leaves parameters, gradients and optimizer state as
 * they were: the network then steps exactly like a twin that never saw the
 * refused calls (an Adam step first, so there is state to disturb). */
static void test_invalid_hyperparameters_are_refused_and_change_nothing(void **state)
{
    (void)state;
    bad_optimizer bad[MAX_BAD];
    size_t n_bad = fill_bad_optimizers(bad);
    const mlp_optimizer adam = adam_for_hand_tests(MLP_OPT_ADAM);
    mlp *net = new_net(NULL), *twin = new_net(NULL);
    double g[N_PARAMS];
    backward_step(net, 0, g);
    backward_step(twin, 0, g);
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    assert_int_equal(mlp_step(twin, &adam), MLP_OK);
    backward_step(net, 1, g);
    backward_step(twin, 1, g);

    snapshot snap;
    take_snapshot(net, &snap);
    for (size_t i = 0; i < n_bad; i++) {
        if (mlp_step(net, &bad[i].opt) != MLP_ERR_INVALID)
            fail_msg("kind %d, %s: not refused", (int)bad[i].opt.kind, bad[i].what);
        assert_unchanged(net, &snap);
    }
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    assert_int_equal(mlp_step(twin, &adam), MLP_OK);
    assert_same_params(net, twin);
    mlp_free(twin);
    mlp_free(net);
}

static void test_step_null_arguments_are_invalid(void **state)
{
    (void)state;
    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_step(NULL, &opt), MLP_ERR_INVALID);
    mlp *net = new_net(NULL);
    double g[N_PARAMS];
    backward_step(net, 0, g);
    snapshot snap;
    take_snapshot(net, &snap);
    assert_int_equal(mlp_step(net, NULL), MLP_ERR_INVALID);
    assert_unchanged(net, &snap);
    mlp_free(net);
}

/* ---- call order ------------------------------------------------------------ */

static void test_step_without_backward_is_state_error_and_changes_nothing(void **state)
{
    (void)state;
    const mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    const mlp_optimizer adam = adam_for_hand_tests(MLP_OPT_ADAM);
    mlp *net = new_net(NULL), *twin = new_net(NULL);
    snapshot snap;
    double g[N_PARAMS];

    /* Never a backward. */
    take_snapshot(net, &snap);
    assert_int_equal(mlp_step(net, &adam), MLP_ERR_STATE);
    assert_unchanged(net, &snap);

    /* A forward but no backward; the refused step keeps the forward. */
    assert_int_equal(mlp_forward(net, BATCH, step_x[0], NULL), MLP_OK);
    take_snapshot(net, &snap);
    assert_int_equal(mlp_step(net, &adam), MLP_ERR_STATE);
    assert_unchanged(net, &snap);
    assert_int_equal(mlp_backward_grad(net, step_grad_y[0]), MLP_OK);

    /* The backward was used by a step. An SGD step here would restart
     * Adam's state if it got that far; the twin shows it did not. */
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    backward_step(twin, 0, g);
    assert_int_equal(mlp_step(twin, &adam), MLP_OK);
    take_snapshot(net, &snap);
    assert_int_equal(mlp_step(net, &sgd), MLP_ERR_STATE);
    assert_unchanged(net, &snap);
    backward_step(net, 1, g);
    backward_step(twin, 1, g);
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    assert_int_equal(mlp_step(twin, &adam), MLP_OK);
    assert_same_params(net, twin);

    /* A backward, then mlp_zero_grad. */
    backward_step(net, 2, g);
    assert_int_equal(mlp_zero_grad(net), MLP_OK);
    take_snapshot(net, &snap);
    assert_int_equal(mlp_step(net, &adam), MLP_ERR_STATE);
    assert_unchanged(net, &snap);

    mlp_free(twin);
    mlp_free(net);
}

static void test_step_clears_gradients(void **state)
{
    (void)state;
    static const float zero[N_PARAMS] = {0.0f, 0.0f, 0.0f};
    for (size_t k = 0; k < N_KINDS; k++) {
        mlp_optimizer opt = mlp_optimizer_default(all_kinds[k]);
        mlp *net = new_net(NULL);
        double g[N_PARAMS];
        backward_step(net, 0, g);
        assert_memory_not_equal(mlp_grads(net, NULL), zero, sizeof zero);
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        assert_memory_equal(mlp_grads(net, NULL), zero, sizeof zero);
        /* The next backward starts from zero: the buffer holds its gradient
         * alone (backward_step checks it against the hand gradient). */
        backward_step(net, 1, g);
        mlp_free(net);
    }
}

/* mlp_step ends a pending forward: its cached activations were computed
 * with the old weights. */
static void test_backward_after_step_without_new_forward_is_state_error(void **state)
{
    (void)state;
    static const float zero[N_PARAMS] = {0.0f, 0.0f, 0.0f};
    const float target[BATCH] = {1.0f, -1.0f};
    const mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_SGD);
    mlp *net = new_net(NULL);
    double g[N_PARAMS];
    backward_step(net, 0, g);
    /* A forward pending at the time of the step. */
    assert_int_equal(mlp_forward(net, BATCH, step_x[1], NULL), MLP_OK);
    assert_int_equal(mlp_step(net, &opt), MLP_OK);

    snapshot snap;
    take_snapshot(net, &snap);
    float loss = -1.0f;
    assert_int_equal(mlp_backward(net, &mlp_mse, target, &loss), MLP_ERR_STATE);
    assert_true(loss == -1.0f);
    assert_int_equal(mlp_backward_grad(net, step_grad_y[1]), MLP_ERR_STATE);
    assert_unchanged(net, &snap);
    assert_memory_equal(mlp_grads(net, NULL), zero, sizeof zero);

    /* A new forward makes backward possible again. */
    backward_step(net, 1, g);
    mlp_free(net);
}

/* ---- optimizer state --------------------------------------------------------- */

/* Adam, then SGD, then Adam again: the third step is a first Adam step
 * (t = 1, zero moments), not a continuation with t = 3. */
static void test_switching_kind_restarts_adam_bias_correction(void **state)
{
    (void)state;
    const mlp_optimizer adam = adam_for_hand_tests(MLP_OPT_ADAM);
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    sgd.learning_rate = 0.25;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS], m[N_PARAMS] = {0.0, 0.0, 0.0}, v[N_PARAMS] = {0.0, 0.0, 0.0};
    initial_params_double(w);

    backward_step(net, 0, g);
    hand_adam_update(w, m, v, g, 1, &adam);
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    assert_params_near(net, w);

    backward_step(net, 1, g);
    for (size_t i = 0; i < N_PARAMS; i++)
        w[i] -= sgd.learning_rate * g[i];
    assert_int_equal(mlp_step(net, &sgd), MLP_OK);
    assert_params_near(net, w);

    backward_step(net, 2, g);
    double w_continued[N_PARAMS];
    memcpy(w_continued, w, sizeof w);
    hand_adam_update(w_continued, m, v, g, 3, &adam); /* what no restart would give */
    double m_fresh[N_PARAMS] = {0.0, 0.0, 0.0}, v_fresh[N_PARAMS] = {0.0, 0.0, 0.0};
    hand_adam_update(w, m_fresh, v_fresh, g, 1, &adam);
    for (size_t i = 0; i < N_PARAMS; i++)
        assert_true(fabs(w[i] - w_continued[i]) > 1e-3); /* the test can tell them apart */
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    assert_params_near(net, w);
    mlp_free(net);
}

/* Kinds that keep the same buffers (MOMENTUM/NESTEROV: velocity,
 * ADAM/ADAMW: two moments) still restart when the kind changes. */
static void test_switching_between_kinds_sharing_state_restarts_state(void **state)
{
    (void)state;
    mlp_optimizer momentum = mlp_optimizer_default(MLP_OPT_MOMENTUM);
    mlp_optimizer nesterov = mlp_optimizer_default(MLP_OPT_NESTEROV);
    momentum.learning_rate = nesterov.learning_rate = 0.125;
    momentum.momentum = nesterov.momentum = 0.75;
    const double lr = nesterov.learning_rate, mu = nesterov.momentum;
    mlp *net = new_net(NULL);
    double w[N_PARAMS], g[N_PARAMS];
    initial_params_double(w);
    backward_step(net, 0, g);
    for (size_t i = 0; i < N_PARAMS; i++)
        w[i] -= lr * g[i]; /* first momentum step: v = g */
    assert_int_equal(mlp_step(net, &momentum), MLP_OK);
    backward_step(net, 1, g);
    for (size_t i = 0; i < N_PARAMS; i++)
        w[i] -= lr * (g[i] + mu * g[i]); /* fresh Nesterov: v = g */
    assert_int_equal(mlp_step(net, &nesterov), MLP_OK);
    assert_params_near(net, w);
    mlp_free(net);

    mlp_optimizer adam = adam_for_hand_tests(MLP_OPT_ADAM);
    mlp_optimizer adamw = adam_for_hand_tests(MLP_OPT_ADAMW);
    adamw.weight_decay = 0.25;
    net = new_net(NULL);
    double m[N_PARAMS] = {0.0, 0.0, 0.0}, v[N_PARAMS] = {0.0, 0.0, 0.0};
    initial_params_double(w);
    backward_step(net, 0, g);
    hand_adam_update(w, m, v, g, 1, &adam);
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    backward_step(net, 1, g);
    for (size_t i = 0; i < N_PARAMS; i++) {
        w[i] -= adamw.learning_rate * adamw.weight_decay * w[i];
        m[i] = v[i] = 0.0;
    }
    hand_adam_update(w, m, v, g, 1, &adamw);
    assert_int_equal(mlp_step(net, &adamw), MLP_OK);
    assert_params_near(net, w);
    mlp_free(net);
}

/* ---- allocation ---------------------------------------------------------- */

/* Fails, in turn, each allocation the first Adam step makes (counted on a
 * reference run). Each failure is MLP_ERR_NOMEM with nothing changed and
 * nothing leaked; the retry then gives exactly the reference's first step. */
static void test_adam_first_step_allocation_failure_is_nomem_and_changes_nothing(void **state)
{
    (void)state;
    const mlp_optimizer adam = adam_for_hand_tests(MLP_OPT_ADAM);
    double g[N_PARAMS];

    test_allocator counting;
    test_allocator_init(&counting, 0);
    mlp *reference = new_net(&counting.base);
    backward_step(reference, 0, g);
    long calls_before = counting.calls;
    assert_int_equal(mlp_step(reference, &adam), MLP_OK);
    long step_allocations = counting.calls - calls_before;
    assert_true(step_allocations >= 1); /* Adam's moments */

    for (long k = 1; k <= step_allocations; k++) {
        test_allocator failing;
        test_allocator_init(&failing, 0);
        mlp *net = new_net(&failing.base);
        backward_step(net, 0, g);
        failing.fail_at = failing.calls + k;
        long live = failing.live;
        snapshot snap;
        take_snapshot(net, &snap);
        assert_int_equal(mlp_step(net, &adam), MLP_ERR_NOMEM);
        assert_true(failing.calls >= failing.fail_at);
        assert_int_equal(failing.live, live);
        assert_unchanged(net, &snap);

        assert_int_equal(mlp_step(net, &adam), MLP_OK);
        assert_same_params(net, reference);
        mlp_free(net);
        assert_int_equal(failing.live, 0);
    }
    mlp_free(reference);
    assert_int_equal(counting.live, 0);
}

/* Momentum, then an Adam step whose allocation fails, then momentum again:
 * the failed switch must not have restarted the velocity. */
static void test_failed_state_allocation_keeps_previous_state(void **state)
{
    (void)state;
    const mlp_optimizer adam = adam_for_hand_tests(MLP_OPT_ADAM);
    mlp_optimizer momentum = mlp_optimizer_default(MLP_OPT_MOMENTUM);
    momentum.learning_rate = 0.125;
    test_allocator failing;
    test_allocator_init(&failing, 0);
    mlp *net = new_net(&failing.base), *twin = new_net(NULL);
    double g[N_PARAMS];
    backward_step(net, 0, g);
    backward_step(twin, 0, g);
    assert_int_equal(mlp_step(net, &momentum), MLP_OK);
    assert_int_equal(mlp_step(twin, &momentum), MLP_OK);
    backward_step(net, 1, g);
    backward_step(twin, 1, g);

    failing.fail_at = failing.calls + 1;
    snapshot snap;
    take_snapshot(net, &snap);
    assert_int_equal(mlp_step(net, &adam), MLP_ERR_NOMEM);
    assert_unchanged(net, &snap);

    assert_int_equal(mlp_step(net, &momentum), MLP_OK);
    assert_int_equal(mlp_step(twin, &momentum), MLP_OK);
    assert_same_params(net, twin);
    mlp_free(twin);
    mlp_free(net);
    assert_int_equal(failing.live, 0);
}

/* SGD keeps no state, so its step cannot fail for memory. */
static void test_sgd_step_allocates_nothing(void **state)
{
    (void)state;
    const mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    test_allocator failing;
    test_allocator_init(&failing, 0);
    mlp *net = new_net(&failing.base);
    double g[N_PARAMS];
    backward_step(net, 0, g);
    long calls = failing.calls;
    failing.fail_at = calls + 1;
    assert_int_equal(mlp_step(net, &sgd), MLP_OK);
    assert_int_equal(failing.calls, calls);
    mlp_free(net);
    assert_int_equal(failing.live, 0);
}

/* ---- non-finite updates ----------------------------------------------- */

/* A step that would write NaN or Inf anywhere is refused whole: the weights,
 * gradients and optimizer state stay as they were, so the same network
 * then steps exactly like a twin that never saw the refused call. */
static void assert_step_refused_then_twin_equal(float poison, double learning_rate)
{
    mlp_optimizer adam = adam_for_hand_tests(MLP_OPT_ADAM);
    mlp *net = new_net(NULL), *twin = new_net(NULL);
    double g[N_PARAMS];
    backward_step(net, 0, g);
    backward_step(twin, 0, g);
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    assert_int_equal(mlp_step(twin, &adam), MLP_OK);

    backward_step(net, 1, g);
    mlp_grads(net, NULL)[1] = poison;
    snapshot snap;
    take_snapshot(net, &snap);
    for (int kind = MLP_OPT_SGD; kind <= MLP_OPT_ADAMW; kind++) {
        mlp_optimizer opt = mlp_optimizer_default((mlp_optimizer_kind)kind);
        opt.learning_rate = learning_rate;
        assert_int_equal(mlp_step(net, &opt), MLP_ERR_NONFINITE);
        assert_unchanged(net, &snap);
    }
    /* Gradients still pending: replace the poisoned one and step. */
    backward_step(twin, 1, g);
    mlp_grads(net, NULL)[1] = mlp_grads(twin, NULL)[1];
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    assert_int_equal(mlp_step(twin, &adam), MLP_OK);
    assert_memory_equal(mlp_params(net, NULL), mlp_params(twin, NULL), N_PARAMS * sizeof(float));
    mlp_free(net);
    mlp_free(twin);
}

static void test_step_with_nan_gradient_is_nonfinite_and_changes_nothing(void **state)
{
    (void)state;
    assert_step_refused_then_twin_equal(NAN, 0.01);
    assert_step_refused_then_twin_equal(INFINITY, 0.01);
}

/* A finite gradient whose square (RMSProp, Adam) or whose update (SGD at a
 * huge learning rate) overflows float. */
static void test_step_overflowing_update_is_nonfinite_and_changes_nothing(void **state)
{
    (void)state;
    assert_step_refused_then_twin_equal(1e33f, 1e6);
}

/* ---- clipping precision -------------------------------------------------- */

/* The global norm is summed in double: one gradient of 4096 and 100099 of
 * 0.01 have a norm of sqrt(4096^2 + 10.0099); a float sum would stop at
 * 4096^2 (its ulp there is 2) and clip 0.5 instead of 2048 / 4096.00122. */
static void test_clip_norm_sums_in_double(void **state)
{
    (void)state;
    const mlp_layer layer = {100, &mlp_identity};
    const mlp_config cfg = {1000, 1, &layer, 3, MLP_INIT_AUTO, NULL};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    static float x[1000], grad_y[100];
    assert_int_equal(mlp_forward(net, 1, x, NULL), MLP_OK);
    assert_int_equal(mlp_backward_grad(net, grad_y), MLP_OK);
    size_t n;
    float *grads = mlp_grads(net, &n), *params = mlp_params(net, NULL);
    assert_int_equal(n, 100100);
    for (size_t i = 0; i < n; i++)
        grads[i] = 0.01f;
    grads[0] = 4096.0f;
    double norm = 0.0;
    for (size_t i = 0; i < n; i++)
        norm += (double)grads[i] * grads[i];
    norm = sqrt(norm);
    float w0 = params[0];
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    sgd.learning_rate = 1.0;
    sgd.clip_norm = 2048.0;
    assert_int_equal(mlp_step(net, &sgd), MLP_OK);
    double expected = (double)w0 - 4096.0 * (2048.0 / norm);
    assert_close(params[0], expected, 2.5e-4);                   /* 2 ulps at 2048 */
    assert_true(fabs(params[0] - ((double)w0 - 2048.0)) > 5e-4); /* not the float sum */
    mlp_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_matches_hand_computed_three_steps),
        cmocka_unit_test(test_momentum_matches_hand_computed_three_steps),
        cmocka_unit_test(test_nesterov_matches_hand_computed_three_steps),
        cmocka_unit_test(test_rmsprop_matches_hand_computed_three_steps),
        cmocka_unit_test(test_adam_matches_hand_computed_three_steps),
        cmocka_unit_test(test_adamw_matches_hand_computed_three_steps),
        cmocka_unit_test(test_clip_norm_scales_gradient_above_clip_to_exactly_clip_norm),
        cmocka_unit_test(test_clip_norm_leaves_gradient_below_clip_unchanged),
        cmocka_unit_test(test_clip_norm_is_global_across_all_layers),
        cmocka_unit_test(test_clip_norm_applies_before_weight_decay),
        cmocka_unit_test(test_sgd_weight_decay_adds_wd_times_w_to_gradient),
        cmocka_unit_test(test_adam_weight_decay_adds_wd_times_w_to_gradient_before_moments),
        cmocka_unit_test(test_momentum_nesterov_rmsprop_weight_decay_adds_wd_times_w_to_gradient),
        cmocka_unit_test(test_adamw_weight_decay_is_decoupled_unlike_adam_l2),
        cmocka_unit_test(test_optimizer_default_matches_documented_values_for_every_kind),
        cmocka_unit_test(test_optimizer_default_is_accepted_by_step_for_every_kind),
        cmocka_unit_test(test_optimizer_default_unknown_kind_gives_sgd_defaults_refused_by_step),
        cmocka_unit_test(test_invalid_hyperparameters_are_refused_and_change_nothing),
        cmocka_unit_test(test_step_null_arguments_are_invalid),
        cmocka_unit_test(test_step_without_backward_is_state_error_and_changes_nothing),
        cmocka_unit_test(test_step_clears_gradients),
        cmocka_unit_test(test_backward_after_step_without_new_forward_is_state_error),
        cmocka_unit_test(test_switching_kind_restarts_adam_bias_correction),
        cmocka_unit_test(test_switching_between_kinds_sharing_state_restarts_state),
        cmocka_unit_test(test_adam_first_step_allocation_failure_is_nomem_and_changes_nothing),
        cmocka_unit_test(test_failed_state_allocation_keeps_previous_state),
        cmocka_unit_test(test_sgd_step_allocates_nothing),
        cmocka_unit_test(test_step_with_nan_gradient_is_nonfinite_and_changes_nothing),
        cmocka_unit_test(test_step_overflowing_update_is_nonfinite_and_changes_nothing),
        cmocka_unit_test(test_clip_norm_sums_in_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
