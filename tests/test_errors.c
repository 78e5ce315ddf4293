/* Error paths: every documented failure returns its exact status and leaves
 * the objects passed in as they were (parameters, gradients, *out, y,
 * *loss_out, the pending forward). Allocation failures are injected SQLite
 * style: each allocation of a call is failed in turn until the call passes. */
#include "helpers.h"

#include <stdbool.h>

/* A stand-in for "*out was never written": a distinct, aligned address that
 * no network can have. */
static max_align_t sentinel_object;
#define SENTINEL_NET ((mlp *)(void *)&sentinel_object)
#define SENTINEL_FLOAT -12345.5f
#define SENTINEL_DOUBLE -54321.25

/* The everyday network of this suite: 3 -> 5 tanh -> 2 identity (32 params). */
#define INPUTS 3
#define HIDDEN 5
#define OUTPUTS 2
#define BATCH 4
/* 3 * LARGE_BATCH * HIDDEN floats exceed mlp_predict's 3072-float stack. */
#define LARGE_BATCH 256
/* Bounds the SQLite-style loops; each call makes only a handful of allocations. */
#define MAX_FAILURE_POINTS 64

static const mlp_layer small_layers[] = {{HIDDEN, &mlp_tanh}, {OUTPUTS, &mlp_identity}};

static mlp_config small_config(void)
{
    mlp_config cfg = {INPUTS, 2, small_layers, 42, MLP_INIT_AUTO, NULL};
    return cfg;
}

static mlp *create_with(const mlp_allocator *allocator)
{
    mlp_config cfg = small_config();
    cfg.allocator = allocator;
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    assert_non_null(net);
    return net;
}

static mlp *create_small(void)
{
    return create_with(NULL);
}

/* Inputs and targets for `batch` samples, the same on every call. */
static void fill_data(size_t batch, float *x, float *target)
{
    uint64_t rng = 2024;
    test_fill(&rng, x, batch * INPUTS, -1.0f, 1.0f);
    if (target)
        test_fill(&rng, target, batch * OUTPUTS, -1.0f, 1.0f);
}

static void fill_floats(float *v, size_t n, float value)
{
    for (size_t i = 0; i < n; i++)
        v[i] = value;
}

static void assert_all_equal(const float *v, size_t n, float value)
{
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(&v[i], &value, sizeof value);
}

static bool any_nonzero(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f)
            return true;
    return false;
}

/* Copies of the parameters and gradients, to prove a failed call changed
 * neither (bit for bit). */
typedef struct snapshot {
    size_t n;
    float *params, *grads;
} snapshot;

static snapshot take_snapshot(mlp *net)
{
    snapshot s;
    const float *params = mlp_params(net, &s.n);
    const float *grads = mlp_grads(net, NULL);
    s.params = malloc(s.n * sizeof(float));
    s.grads = malloc(s.n * sizeof(float));
    assert_non_null(s.params);
    assert_non_null(s.grads);
    memcpy(s.params, params, s.n * sizeof(float));
    memcpy(s.grads, grads, s.n * sizeof(float));
    return s;
}

static void assert_unchanged(mlp *net, const snapshot *s)
{
    size_t n = 0;
    const float *params = mlp_params(net, &n);
    assert_int_equal(n, s->n);
    assert_memory_equal(params, s->params, n * sizeof(float));
    assert_memory_equal(mlp_grads(net, NULL), s->grads, n * sizeof(float));
}

static void drop_snapshot(snapshot *s)
{
    free(s->params);
    free(s->grads);
}

/* Forward + backward with MSE: leaves nonzero accumulated gradients. */
static void accumulate(mlp *net, size_t batch, const float *x, const float *target)
{
    assert_int_equal(mlp_forward(net, batch, x, NULL), MLP_OK);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_OK);
    assert_true(any_nonzero(mlp_grads(net, NULL), mlp_param_count(net)));
}

/* ---- custom losses that misbehave --------------------------------------- */

/* MSE, but dL/dy[0] is NaN. */
static double nan_gradient_loss(const mlp_loss *self, size_t rows, size_t cols, const float *y,
                                const float *target, float *grad_y)
{
    (void)self;
    double value = mlp_mse.loss(&mlp_mse, rows, cols, y, target, grad_y);
    if (grad_y)
        grad_y[0] = NAN;
    return value;
}

/* MSE gradients, but a NaN loss value. */
static double nan_value_loss(const mlp_loss *self, size_t rows, size_t cols, const float *y,
                             const float *target, float *grad_y)
{
    (void)self;
    mlp_mse.loss(&mlp_mse, rows, cols, y, target, grad_y);
    return NAN;
}

/* A finite but huge dL/dy: the bias gradient (a sum over the batch)
 * overflows to infinity. */
static double huge_gradient_loss(const mlp_loss *self, size_t rows, size_t cols, const float *y,
                                 const float *target, float *grad_y)
{
    (void)self, (void)y, (void)target;
    if (grad_y)
        fill_floats(grad_y, rows * cols, 3e38f);
    return 1.0;
}

static const mlp_loss nan_gradient = {MLP_LOSS_ABI, "nan_gradient", nan_gradient_loss,
                                      NULL,         NULL,           NULL};
static const mlp_loss nan_value = {MLP_LOSS_ABI, "nan_value", nan_value_loss, NULL, NULL, NULL};
static const mlp_loss huge_gradient = {
    MLP_LOSS_ABI, "huge_gradient", huge_gradient_loss, NULL, NULL, NULL};

/* ---- mlp_create ------------------------------------------------------- */

static void assert_create_invalid(const mlp_config *cfg)
{
    mlp *out = SENTINEL_NET;
    assert_int_equal(mlp_create(&out, cfg), MLP_ERR_INVALID);
    assert_ptr_equal(out, SENTINEL_NET);
}

static void test_create_null_out_is_invalid(void **state)
{
    (void)state;
    mlp_config cfg = small_config();
    assert_int_equal(mlp_create(NULL, &cfg), MLP_ERR_INVALID);
}

static void test_create_null_config_is_invalid(void **state)
{
    (void)state;
    assert_create_invalid(NULL);
}

static void test_create_zero_inputs_is_invalid(void **state)
{
    (void)state;
    mlp_config cfg = small_config();
    cfg.inputs = 0;
    assert_create_invalid(&cfg);
}

static void test_create_inputs_above_max_units_is_invalid(void **state)
{
    (void)state;
    static const mlp_layer one = {1, &mlp_identity};
    mlp_config cfg = {MLP_MAX_UNITS + 1, 1, &one, 1, MLP_INIT_AUTO, NULL};
    assert_create_invalid(&cfg);
    /* The limit itself is allowed. */
    cfg.inputs = MLP_MAX_UNITS;
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    assert_int_equal(mlp_inputs(net), MLP_MAX_UNITS);
    mlp_free(net);
}

static void test_create_zero_layers_is_invalid(void **state)
{
    (void)state;
    mlp_config cfg = small_config();
    cfg.n_layers = 0;
    assert_create_invalid(&cfg);
}

static void test_create_layers_above_max_is_invalid(void **state)
{
    (void)state;
    /* Every entry is valid, so only the count can be refused. */
    static mlp_layer layers[MLP_MAX_LAYERS + 1];
    for (size_t l = 0; l < MLP_MAX_LAYERS + 1; l++)
        layers[l] = (mlp_layer){1, &mlp_identity};
    mlp_config cfg = {1, MLP_MAX_LAYERS + 1, layers, 1, MLP_INIT_AUTO, NULL};
    assert_create_invalid(&cfg);
    cfg.n_layers = MLP_MAX_LAYERS;
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    assert_int_equal(mlp_param_count(net), 2 * MLP_MAX_LAYERS);
    mlp_free(net);
}

static void test_create_null_layers_is_invalid(void **state)
{
    (void)state;
    mlp_config cfg = small_config();
    cfg.layers = NULL;
    assert_create_invalid(&cfg);
}

static void test_create_zero_units_is_invalid(void **state)
{
    (void)state;
    const mlp_layer layers[] = {{HIDDEN, &mlp_tanh}, {0, &mlp_identity}};
    mlp_config cfg = small_config();
    cfg.layers = layers;
    assert_create_invalid(&cfg);
}

static void test_create_units_above_max_is_invalid(void **state)
{
    (void)state;
    const mlp_layer layers[] = {{MLP_MAX_UNITS + 1, &mlp_tanh}, {OUTPUTS, &mlp_identity}};
    mlp_config cfg = {1, 2, layers, 1, MLP_INIT_AUTO, NULL};
    assert_create_invalid(&cfg);
}

static void test_create_null_activation_is_invalid(void **state)
{
    (void)state;
    const mlp_layer layers[] = {{HIDDEN, NULL}, {OUTPUTS, &mlp_identity}};
    mlp_config cfg = small_config();
    cfg.layers = layers;
    assert_create_invalid(&cfg);
}

/* A tanh copy with one field spoilt, in the hidden layer. */
static void assert_activation_refused(const mlp_activation *act)
{
    const mlp_layer layers[] = {{HIDDEN, act}, {OUTPUTS, &mlp_identity}};
    mlp_config cfg = small_config();
    cfg.layers = layers;
    assert_create_invalid(&cfg);
}

static void test_create_activation_without_backward_is_invalid(void **state)
{
    (void)state;
    mlp_activation act = mlp_tanh;
    act.backward = NULL;
    assert_activation_refused(&act);
}

static void test_create_activation_without_forward_is_invalid(void **state)
{
    (void)state;
    mlp_activation act = mlp_tanh;
    act.forward = NULL;
    assert_activation_refused(&act);
}

static void test_create_activation_without_name_is_invalid(void **state)
{
    (void)state;
    mlp_activation act = mlp_tanh;
    act.name = NULL;
    assert_activation_refused(&act);
}

static void test_create_activation_wrong_abi_is_invalid(void **state)
{
    (void)state;
    mlp_activation act = mlp_tanh;
    act.abi_version = MLP_ACTIVATION_ABI + 1;
    assert_activation_refused(&act);
    act.abi_version = 0;
    assert_activation_refused(&act);
}

static void test_create_unknown_init_is_invalid(void **state)
{
    (void)state;
    mlp_config cfg = small_config();
    cfg.init = MLP_INIT_HE + 1;
    assert_create_invalid(&cfg);
    cfg.init = -1;
    assert_create_invalid(&cfg);
}

static void test_create_allocator_with_only_alloc_is_invalid(void **state)
{
    (void)state;
    test_allocator t;
    test_allocator_init(&t, 0);
    t.base.free = NULL;
    mlp_config cfg = small_config();
    cfg.allocator = &t.base;
    assert_create_invalid(&cfg);
    assert_int_equal(t.calls, 0);
}

static void test_create_allocator_with_only_free_is_invalid(void **state)
{
    (void)state;
    test_allocator t;
    test_allocator_init(&t, 0);
    t.base.alloc = NULL;
    mlp_config cfg = small_config();
    cfg.allocator = &t.base;
    assert_create_invalid(&cfg);
}

static void test_create_params_above_max_is_invalid(void **state)
{
    (void)state;
    /* 1024 * (2^20 + 1) weights and biases: just over 2^30, refused before
     * anything is allocated. */
    const mlp_layer layers[] = {{1024, &mlp_identity}};
    test_allocator t;
    test_allocator_init(&t, 0);
    mlp_config cfg = {MLP_MAX_UNITS, 1, layers, 1, MLP_INIT_AUTO, &t.base};
    assert_true(1024 * (MLP_MAX_UNITS + (size_t)1) > MLP_MAX_PARAMS);
    assert_create_invalid(&cfg);
    assert_int_equal(t.calls, 0);
}

/* ---- mlp_forward ------------------------------------------------------ */

static void test_forward_null_net_is_invalid(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], y[BATCH * OUTPUTS];
    fill_data(BATCH, x, NULL);
    fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_int_equal(mlp_forward(NULL, BATCH, x, y), MLP_ERR_INVALID);
    assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
}

static void test_forward_null_x_is_invalid(void **state)
{
    (void)state;
    mlp *net = create_small();
    float y[BATCH * OUTPUTS];
    fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    snapshot s = take_snapshot(net);
    assert_int_equal(mlp_forward(net, BATCH, NULL, y), MLP_ERR_INVALID);
    assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

static void test_forward_zero_batch_is_invalid(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], y[BATCH * OUTPUTS];
    fill_data(BATCH, x, NULL);
    fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    snapshot s = take_snapshot(net);
    assert_int_equal(mlp_forward(net, 0, x, y), MLP_ERR_INVALID);
    assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

static void test_forward_batch_above_max_is_invalid(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], y[BATCH * OUTPUTS];
    fill_data(BATCH, x, NULL);
    fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    snapshot s = take_snapshot(net);
    /* Refused on the count alone: x is never read that far. */
    assert_int_equal(mlp_forward(net, MLP_MAX_BATCH + 1, x, y), MLP_ERR_INVALID);
    assert_int_equal(mlp_forward(net, SIZE_MAX, x, y), MLP_ERR_INVALID);
    assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

static void test_forward_invalid_ends_pending_forward(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
    assert_int_equal(mlp_forward(net, 0, x, NULL), MLP_ERR_INVALID);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_ERR_STATE);
    assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
    assert_int_equal(mlp_forward(net, BATCH, NULL, NULL), MLP_ERR_INVALID);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_ERR_STATE);
    mlp_free(net);
}

/* A forward on x with one element replaced by `bad`, after a good forward:
 * NONFINITE, y untouched, nothing changed and no forward left pending. */
static void assert_forward_refuses(float bad, size_t where)
{
    mlp *net = create_small();
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS], y[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    accumulate(net, BATCH, x, target);
    assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
    snapshot s = take_snapshot(net);
    x[where] = bad;
    fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_int_equal(mlp_forward(net, BATCH, x, y), MLP_ERR_NONFINITE);
    assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

static void test_forward_nan_input_is_nonfinite(void **state)
{
    (void)state;
    assert_forward_refuses(NAN, 0);
    assert_forward_refuses(NAN, BATCH * INPUTS - 1);
}

static void test_forward_inf_input_is_nonfinite(void **state)
{
    (void)state;
    assert_forward_refuses(INFINITY, 5);
    assert_forward_refuses(-INFINITY, BATCH * INPUTS - 1);
}

/* A batch larger than any before needs a bigger cache: bad input is still
 * reported as bad input when that allocation would fail, and allocates
 * nothing (found by fuzz_train; tests/fuzz/regressions/train). */
static void test_forward_nan_input_is_nonfinite_before_allocating(void **state)
{
    (void)state;
    test_allocator al;
    test_allocator_init(&al, 0);
    const mlp_layer layers[1] = {{3, &mlp_relu}};
    mlp_config cfg = {2, 1, layers, 1, MLP_INIT_AUTO, &al.base};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    float x[4] = {NAN, 1.0f, 2.0f, 3.0f};
    al.fail_at = al.calls + 1; /* the next allocation fails */
    long calls = al.calls;
    assert_int_equal(mlp_forward(net, 2, x, NULL), MLP_ERR_NONFINITE);
    assert_int_equal(al.calls, calls);
    mlp_free(net);
    assert_int_equal(al.live, 0);
}

static void test_forward_overflowing_output_is_nonfinite(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS], y[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    /* Hidden layer: W = 0, b = 10, so every a = tanh(10) = 1 in float; the
     * output sums HIDDEN products 3e38 * 1: infinite in float. */
    assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
    float *params = mlp_params(net, NULL);
    fill_floats(params, HIDDEN * INPUTS, 0.0f);
    fill_floats(params + HIDDEN * INPUTS, HIDDEN, 10.0f);
    fill_floats(params + HIDDEN * (INPUTS + 1), OUTPUTS * HIDDEN, 3e38f);
    snapshot s = take_snapshot(net);
    fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_int_equal(mlp_forward(net, BATCH, x, y), MLP_ERR_NONFINITE);
    assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

/* ---- mlp_backward ----------------------------------------------------- */

/* Sets up accumulated (nonzero) gradients and a pending forward. */
typedef struct pending {
    mlp *net;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    snapshot before;
} pending;

static void pending_setup(pending *p)
{
    p->net = create_small();
    fill_data(BATCH, p->x, p->target);
    accumulate(p->net, BATCH, p->x, p->target);
    assert_int_equal(mlp_forward(p->net, BATCH, p->x, NULL), MLP_OK);
    p->before = take_snapshot(p->net);
}

/* The failed call changed nothing and the pending forward is still there:
 * a correct backward now succeeds. */
static void pending_check_kept(pending *p)
{
    assert_unchanged(p->net, &p->before);
    float loss = SENTINEL_FLOAT;
    assert_int_equal(mlp_backward(p->net, &mlp_mse, p->target, &loss), MLP_OK);
    assert_true(isfinite(loss) && loss > 0.0f);
}

static void pending_teardown(pending *p)
{
    drop_snapshot(&p->before);
    mlp_free(p->net);
}

/* A backward refused with INVALID; loss_out untouched, pending forward kept. */
static void assert_backward_invalid(const mlp_loss *loss)
{
    pending p;
    pending_setup(&p);
    float loss_out = SENTINEL_FLOAT;
    assert_int_equal(mlp_backward(p.net, loss, p.target, &loss_out), MLP_ERR_INVALID);
    assert_memory_equal(&loss_out, &(float){SENTINEL_FLOAT}, sizeof loss_out);
    pending_check_kept(&p);
    pending_teardown(&p);
}

static void test_backward_null_net_is_invalid(void **state)
{
    (void)state;
    float target[BATCH * OUTPUTS], loss_out = SENTINEL_FLOAT;
    fill_data(BATCH, (float[BATCH * INPUTS]){0}, target);
    assert_int_equal(mlp_backward(NULL, &mlp_mse, target, &loss_out), MLP_ERR_INVALID);
    assert_true(loss_out == SENTINEL_FLOAT);
}

static void test_backward_null_loss_is_invalid(void **state)
{
    (void)state;
    assert_backward_invalid(NULL);
}

static void test_backward_null_target_is_invalid(void **state)
{
    (void)state;
    pending p;
    pending_setup(&p);
    float loss_out = SENTINEL_FLOAT;
    assert_int_equal(mlp_backward(p.net, &mlp_mse, NULL, &loss_out), MLP_ERR_INVALID);
    assert_true(loss_out == SENTINEL_FLOAT);
    pending_check_kept(&p);
    pending_teardown(&p);
}

static void test_backward_loss_wrong_abi_is_invalid(void **state)
{
    (void)state;
    mlp_loss loss = mlp_mse;
    loss.abi_version = MLP_LOSS_ABI + 1;
    assert_backward_invalid(&loss);
    loss.abi_version = 0;
    assert_backward_invalid(&loss);
}

static void test_backward_loss_without_function_is_invalid(void **state)
{
    (void)state;
    mlp_loss loss = mlp_mse;
    loss.loss = NULL;
    assert_backward_invalid(&loss);
}

static void test_backward_loss_without_name_is_invalid(void **state)
{
    (void)state;
    mlp_loss loss = mlp_mse;
    loss.name = NULL;
    assert_backward_invalid(&loss);
}

static void test_backward_loss_with_only_fused_activation_is_invalid(void **state)
{
    (void)state;
    mlp_loss loss = mlp_cross_entropy;
    loss.loss_logits = NULL;
    assert_backward_invalid(&loss);
    /* Refused even when the pair could not apply to this (identity) output. */
    loss.fused_activation = &mlp_identity;
    assert_backward_invalid(&loss);
}

static void test_backward_loss_with_only_loss_logits_is_invalid(void **state)
{
    (void)state;
    mlp_loss loss = mlp_cross_entropy;
    loss.fused_activation = NULL;
    assert_backward_invalid(&loss);
}

static void test_backward_without_forward_is_state(void **state)
{
    (void)state;
    mlp *net = create_small();
    float target[BATCH * OUTPUTS], loss_out = SENTINEL_FLOAT;
    fill_data(BATCH, (float[BATCH * INPUTS]){0}, target);
    snapshot s = take_snapshot(net);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, &loss_out), MLP_ERR_STATE);
    assert_true(loss_out == SENTINEL_FLOAT);
    assert_unchanged(net, &s);
    /* Nothing was accumulated, so there is nothing to step. */
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_step(net, &sgd), MLP_ERR_STATE);
    drop_snapshot(&s);
    mlp_free(net);
}

static void test_backward_twice_after_one_forward_is_state(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS], loss_out = SENTINEL_FLOAT;
    fill_data(BATCH, x, target);
    accumulate(net, BATCH, x, target);
    snapshot s = take_snapshot(net);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, &loss_out), MLP_ERR_STATE);
    assert_true(loss_out == SENTINEL_FLOAT);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

static void test_backward_after_step_is_state(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_OK);
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_step(net, &sgd), MLP_OK);
    snapshot s = take_snapshot(net);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_ERR_STATE);
    assert_int_equal(mlp_backward_grad(net, target), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

static void assert_backward_target_refused(float bad)
{
    pending p;
    pending_setup(&p);
    float target[BATCH * OUTPUTS], loss_out = SENTINEL_FLOAT;
    memcpy(target, p.target, sizeof target);
    target[BATCH * OUTPUTS - 1] = bad;
    assert_int_equal(mlp_backward(p.net, &mlp_mse, target, &loss_out), MLP_ERR_NONFINITE);
    assert_true(loss_out == SENTINEL_FLOAT);
    pending_check_kept(&p);
    pending_teardown(&p);
}

static void test_backward_nan_target_is_nonfinite(void **state)
{
    (void)state;
    assert_backward_target_refused(NAN);
}

static void test_backward_inf_target_is_nonfinite(void **state)
{
    (void)state;
    assert_backward_target_refused(INFINITY);
    assert_backward_target_refused(-INFINITY);
}

/* A backward with `loss` on a network whose gradients were just cleared by
 * a step: NONFINITE, gradients still all zero, and nothing pending to step. */
static void assert_refused_after_step(const mlp_loss *loss)
{
    mlp *net = create_small();
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS], loss_out = SENTINEL_FLOAT;
    fill_data(BATCH, x, target);
    accumulate(net, BATCH, x, target);
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_step(net, &sgd), MLP_OK);
    assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
    snapshot s = take_snapshot(net);
    assert_false(any_nonzero(s.grads, s.n));
    assert_int_equal(mlp_backward(net, loss, target, &loss_out), MLP_ERR_NONFINITE);
    assert_true(loss_out == SENTINEL_FLOAT);
    assert_unchanged(net, &s);
    assert_int_equal(mlp_step(net, &sgd), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    /* The pending forward survived. */
    assert_int_equal(mlp_backward(net, &mlp_mse, target, &loss_out), MLP_OK);
    drop_snapshot(&s);
    mlp_free(net);
}

/* The same on top of gradients accumulated by an earlier backward. */
static void assert_refused_when_accumulated(const mlp_loss *loss)
{
    pending p;
    pending_setup(&p);
    float loss_out = SENTINEL_FLOAT;
    assert_true(any_nonzero(p.before.grads, p.before.n));
    assert_int_equal(mlp_backward(p.net, loss, p.target, &loss_out), MLP_ERR_NONFINITE);
    assert_true(loss_out == SENTINEL_FLOAT);
    pending_check_kept(&p);
    pending_teardown(&p);
}

static void test_backward_nan_loss_gradient_after_step_is_nonfinite(void **state)
{
    (void)state;
    assert_refused_after_step(&nan_gradient);
}

static void test_backward_nan_loss_gradient_on_accumulated_grads_is_nonfinite(void **state)
{
    (void)state;
    assert_refused_when_accumulated(&nan_gradient);
}

static void test_backward_nan_loss_value_is_nonfinite(void **state)
{
    (void)state;
    assert_refused_after_step(&nan_value);
    assert_refused_when_accumulated(&nan_value);
}

static void test_backward_overflowing_gradient_after_step_is_nonfinite(void **state)
{
    (void)state;
    assert_refused_after_step(&huge_gradient);
}

static void test_backward_overflowing_gradient_on_accumulated_grads_is_nonfinite(void **state)
{
    (void)state;
    assert_refused_when_accumulated(&huge_gradient);
}

/* A network whose ReLU output is 0 on every sample (z < 0), so its
 * derivative is 0 everywhere and would hide a NaN dL/dy from the parameter
 * gradients; x, target filled, forward pending. */
static mlp *create_dead_relu_output(float *x, float *target)
{
    const mlp_layer layers[] = {{HIDDEN, &mlp_tanh}, {OUTPUTS, &mlp_relu}};
    mlp_config cfg = small_config();
    cfg.layers = layers;
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    size_t n = 0;
    float *params = mlp_params(net, &n);
    /* Output biases (the last OUTPUTS params) far below any W a. */
    fill_floats(params + n - OUTPUTS, OUTPUTS, -100.0f);
    float y[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    assert_int_equal(mlp_forward(net, BATCH, x, y), MLP_OK);
    assert_all_equal(y, BATCH * OUTPUTS, 0.0f);
    return net;
}

static void test_backward_nan_loss_gradient_behind_relu_is_nonfinite(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS], loss_out = SENTINEL_FLOAT;
    mlp *net = create_dead_relu_output(x, target);
    snapshot s = take_snapshot(net);
    assert_int_equal(mlp_backward(net, &nan_gradient, target, &loss_out), MLP_ERR_NONFINITE);
    assert_true(loss_out == SENTINEL_FLOAT);
    assert_unchanged(net, &s);
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_step(net, &sgd), MLP_ERR_STATE);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, &loss_out), MLP_OK);
    drop_snapshot(&s);
    mlp_free(net);
}

/* ---- mlp_backward_grad ------------------------------------------------ */

static void test_backward_grad_null_args_is_invalid(void **state)
{
    (void)state;
    pending p;
    pending_setup(&p);
    float grad_y[BATCH * OUTPUTS];
    fill_floats(grad_y, BATCH * OUTPUTS, 0.5f);
    assert_int_equal(mlp_backward_grad(NULL, grad_y), MLP_ERR_INVALID);
    assert_int_equal(mlp_backward_grad(p.net, NULL), MLP_ERR_INVALID);
    pending_check_kept(&p);
    pending_teardown(&p);
}

static void test_backward_grad_without_forward_is_state(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS], grad_y[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    fill_floats(grad_y, BATCH * OUTPUTS, 0.5f);
    snapshot s = take_snapshot(net);
    assert_int_equal(mlp_backward_grad(net, grad_y), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    /* One backward per forward here too. */
    assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
    assert_int_equal(mlp_backward_grad(net, grad_y), MLP_OK);
    drop_snapshot(&s);
    s = take_snapshot(net);
    assert_int_equal(mlp_backward_grad(net, grad_y), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

static void test_backward_grad_nan_is_nonfinite(void **state)
{
    (void)state;
    pending p;
    pending_setup(&p);
    float grad_y[BATCH * OUTPUTS];
    fill_floats(grad_y, BATCH * OUTPUTS, 0.5f);
    grad_y[3] = NAN;
    assert_int_equal(mlp_backward_grad(p.net, grad_y), MLP_ERR_NONFINITE);
    grad_y[3] = INFINITY;
    assert_int_equal(mlp_backward_grad(p.net, grad_y), MLP_ERR_NONFINITE);
    pending_check_kept(&p);
    pending_teardown(&p);
}

static void test_backward_grad_nan_behind_relu_is_nonfinite(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS], grad_y[BATCH * OUTPUTS];
    mlp *net = create_dead_relu_output(x, target);
    snapshot s = take_snapshot(net);
    fill_floats(grad_y, BATCH * OUTPUTS, 0.5f);
    grad_y[0] = NAN;
    assert_int_equal(mlp_backward_grad(net, grad_y), MLP_ERR_NONFINITE);
    assert_unchanged(net, &s);
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_step(net, &sgd), MLP_ERR_STATE);
    grad_y[0] = 0.5f;
    assert_int_equal(mlp_backward_grad(net, grad_y), MLP_OK);
    drop_snapshot(&s);
    mlp_free(net);
}

/* ---- mlp_step --------------------------------------------------------- */

static void test_step_null_args_is_invalid(void **state)
{
    (void)state;
    pending p;
    pending_setup(&p);
    assert_int_equal(mlp_backward(p.net, &mlp_mse, p.target, NULL), MLP_OK);
    drop_snapshot(&p.before);
    p.before = take_snapshot(p.net);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    assert_int_equal(mlp_step(NULL, &adam), MLP_ERR_INVALID);
    assert_int_equal(mlp_step(p.net, NULL), MLP_ERR_INVALID);
    assert_unchanged(p.net, &p.before);
    /* The gradients are still pending. */
    assert_int_equal(mlp_step(p.net, &adam), MLP_OK);
    pending_teardown(&p);
}

static void test_step_without_backward_is_state(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    snapshot s = take_snapshot(net);
    assert_int_equal(mlp_step(net, &adam), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    /* A forward alone accumulates nothing. */
    assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
    assert_int_equal(mlp_step(net, &adam), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    /* Each step needs its own backward; mlp_zero_grad also clears. */
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_OK);
    assert_int_equal(mlp_step(net, &adam), MLP_OK);
    s = take_snapshot(net);
    assert_int_equal(mlp_step(net, &adam), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    accumulate(net, BATCH, x, target);
    assert_int_equal(mlp_zero_grad(net), MLP_OK);
    s = take_snapshot(net);
    assert_false(any_nonzero(s.grads, s.n));
    assert_int_equal(mlp_step(net, &adam), MLP_ERR_STATE);
    assert_unchanged(net, &s);
    drop_snapshot(&s);
    mlp_free(net);
}

static void test_step_bad_hyperparameters_is_invalid(void **state)
{
    (void)state;
    pending p;
    pending_setup(&p);
    assert_int_equal(mlp_backward(p.net, &mlp_mse, p.target, NULL), MLP_OK);
    drop_snapshot(&p.before);
    p.before = take_snapshot(p.net);
    mlp_optimizer bad[12];
    for (size_t i = 0; i < 12; i++)
        bad[i] = mlp_optimizer_default(MLP_OPT_ADAM);
    bad[0].kind = (mlp_optimizer_kind)(MLP_OPT_ADAMW + 1);
    bad[1].learning_rate = 0.0;
    bad[2].learning_rate = -0.1;
    bad[3].learning_rate = NAN;
    bad[4].learning_rate = INFINITY;
    bad[5].beta1 = 1.0;
    bad[6].beta2 = NAN;
    bad[7].epsilon = 0.0;
    bad[8].weight_decay = -1.0;
    bad[9].clip_norm = INFINITY;
    bad[10] = mlp_optimizer_default(MLP_OPT_MOMENTUM);
    bad[10].momentum = 1.0;
    bad[11] = mlp_optimizer_default(MLP_OPT_RMSPROP);
    bad[11].rho = -0.5;
    for (size_t i = 0; i < 12; i++) {
        assert_int_equal(mlp_step(p.net, &bad[i]), MLP_ERR_INVALID);
        assert_unchanged(p.net, &p.before);
    }
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    assert_int_equal(mlp_step(p.net, &adam), MLP_OK);
    pending_teardown(&p);
}

/* ---- mlp_predict ------------------------------------------------------ */

static void test_predict_null_args_is_invalid(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], y[BATCH * OUTPUTS];
    fill_data(BATCH, x, NULL);
    fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_int_equal(mlp_predict(NULL, BATCH, x, y), MLP_ERR_INVALID);
    assert_int_equal(mlp_predict(net, BATCH, NULL, y), MLP_ERR_INVALID);
    assert_int_equal(mlp_predict(net, BATCH, x, NULL), MLP_ERR_INVALID);
    assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    mlp_free(net);
}

static void test_predict_bad_batch_is_invalid(void **state)
{
    (void)state;
    mlp *net = create_small();
    float x[BATCH * INPUTS], y[BATCH * OUTPUTS];
    fill_data(BATCH, x, NULL);
    fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    assert_int_equal(mlp_predict(net, 0, x, y), MLP_ERR_INVALID);
    assert_int_equal(mlp_predict(net, MLP_MAX_BATCH + 1, x, y), MLP_ERR_INVALID);
    assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
    mlp_free(net);
}

static void test_predict_nan_input_is_nonfinite(void **state)
{
    (void)state;
    mlp *net = create_small();
    static float x[LARGE_BATCH * INPUTS], y[LARGE_BATCH * OUTPUTS];
    const size_t batches[] = {1, BATCH, LARGE_BATCH}; /* stack and heap workspaces */
    for (size_t i = 0; i < 3; i++) {
        size_t batch = batches[i];
        fill_data(batch, x, NULL);
        x[batch * INPUTS - 1] = NAN;
        fill_floats(y, batch * OUTPUTS, SENTINEL_FLOAT);
        assert_int_equal(mlp_predict(net, batch, x, y), MLP_ERR_NONFINITE);
        x[batch * INPUTS - 1] = -INFINITY;
        assert_int_equal(mlp_predict(net, batch, x, y), MLP_ERR_NONFINITE);
        assert_all_equal(y, batch * OUTPUTS, SENTINEL_FLOAT);
    }
    mlp_free(net);
}

/* ---- mlp_gradcheck ---------------------------------------------------- */

static void test_gradcheck_null_args_is_invalid(void **state)
{
    (void)state;
    pending p;
    pending_setup(&p);
    double err = SENTINEL_DOUBLE;
    mlp_loss no_name = mlp_mse;
    no_name.name = NULL;
    assert_int_equal(mlp_gradcheck(NULL, &mlp_mse, BATCH, p.x, p.target, &err), MLP_ERR_INVALID);
    assert_int_equal(mlp_gradcheck(p.net, NULL, BATCH, p.x, p.target, &err), MLP_ERR_INVALID);
    assert_int_equal(mlp_gradcheck(p.net, &no_name, BATCH, p.x, p.target, &err), MLP_ERR_INVALID);
    assert_int_equal(mlp_gradcheck(p.net, &mlp_mse, 0, p.x, p.target, &err), MLP_ERR_INVALID);
    assert_int_equal(mlp_gradcheck(p.net, &mlp_mse, MLP_MAX_BATCH + 1, p.x, p.target, &err),
                     MLP_ERR_INVALID);
    assert_int_equal(mlp_gradcheck(p.net, &mlp_mse, BATCH, NULL, p.target, &err), MLP_ERR_INVALID);
    assert_int_equal(mlp_gradcheck(p.net, &mlp_mse, BATCH, p.x, NULL, &err), MLP_ERR_INVALID);
    assert_int_equal(mlp_gradcheck(p.net, &mlp_mse, BATCH, p.x, p.target, NULL), MLP_ERR_INVALID);
    assert_true(err == SENTINEL_DOUBLE);
    pending_check_kept(&p);
    pending_teardown(&p);
}

static void test_gradcheck_ex_null_result_is_invalid(void **state)
{
    (void)state;
    pending p;
    pending_setup(&p);
    assert_int_equal(mlp_gradcheck_ex(p.net, &mlp_mse, BATCH, p.x, p.target, NULL),
                     MLP_ERR_INVALID);
    pending_check_kept(&p);
    pending_teardown(&p);
}

/* gradcheck on bad data: NONFINITE, *max_rel_err untouched, parameters and
 * accumulated gradients unchanged, and no forward left pending. */
static void assert_gradcheck_refuses(const float *x, const float *target)
{
    pending p;
    pending_setup(&p);
    double err = SENTINEL_DOUBLE;
    assert_int_equal(mlp_gradcheck(p.net, &mlp_mse, BATCH, x, target, &err), MLP_ERR_NONFINITE);
    assert_true(err == SENTINEL_DOUBLE);
    assert_unchanged(p.net, &p.before);
    assert_int_equal(mlp_backward(p.net, &mlp_mse, p.target, NULL), MLP_ERR_STATE);
    /* The accumulated gradients are still pending. */
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_step(p.net, &sgd), MLP_OK);
    pending_teardown(&p);
}

static void test_gradcheck_nan_input_is_nonfinite(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    x[2] = NAN;
    assert_gradcheck_refuses(x, target);
}

static void test_gradcheck_nan_target_is_nonfinite(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    target[1] = NAN;
    assert_gradcheck_refuses(x, target);
}

static void test_gradcheck_success_leaves_params_and_grads_unchanged(void **state)
{
    (void)state;
    pending p;
    pending_setup(&p);
    assert_int_equal(mlp_backward(p.net, &mlp_mse, p.target, NULL), MLP_OK);
    drop_snapshot(&p.before);
    p.before = take_snapshot(p.net);
    assert_true(any_nonzero(p.before.grads, p.before.n));
    /* Different data than the accumulated batch, so its own gradient differs. */
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    uint64_t rng = 99;
    test_fill(&rng, x, BATCH * INPUTS, -2.0f, 2.0f);
    test_fill(&rng, target, BATCH * OUTPUTS, -2.0f, 2.0f);
    double err = SENTINEL_DOUBLE;
    assert_int_equal(mlp_gradcheck(p.net, &mlp_mse, BATCH, x, target, &err), MLP_OK);
    assert_true(err >= 0.0 && err < 2e-2);
    assert_unchanged(p.net, &p.before);
    /* Gradcheck ended the forward it ran; the gradients are still pending. */
    assert_int_equal(mlp_backward(p.net, &mlp_mse, target, NULL), MLP_ERR_STATE);
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_step(p.net, &sgd), MLP_OK);
    pending_teardown(&p);
}

static void test_gradcheck_leaves_optimizer_state_unchanged(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    mlp *checked = create_small(), *plain = create_small();
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    double err = 0.0;
    for (int step = 0; step < 3; step++) {
        accumulate(checked, BATCH, x, target);
        accumulate(plain, BATCH, x, target);
        assert_int_equal(mlp_gradcheck(checked, &mlp_mse, BATCH, x, target, &err), MLP_OK);
        assert_int_equal(mlp_step(checked, &adam), MLP_OK);
        assert_int_equal(mlp_step(plain, &adam), MLP_OK);
    }
    snapshot s = take_snapshot(plain);
    assert_unchanged(checked, &s);
    drop_snapshot(&s);
    mlp_free(checked);
    mlp_free(plain);
}

/* ---- NULL handling of the small functions -------------------------------- */

static void test_zero_grad_null_is_invalid(void **state)
{
    (void)state;
    assert_int_equal(mlp_zero_grad(NULL), MLP_ERR_INVALID);
}

static void test_free_null_is_noop(void **state)
{
    (void)state;
    mlp_free(NULL);
    /* Still a working library afterwards. */
    mlp *net = create_small();
    assert_int_equal(mlp_inputs(net), INPUTS);
    mlp_free(net);
}

static void test_shape_queries_on_null_return_zero(void **state)
{
    (void)state;
    assert_int_equal(mlp_inputs(NULL), 0);
    assert_int_equal(mlp_outputs(NULL), 0);
    assert_int_equal(mlp_param_count(NULL), 0);
}

static void test_params_and_grads_on_null_return_null_and_zero(void **state)
{
    (void)state;
    size_t count = 123;
    assert_null(mlp_params(NULL, &count));
    assert_int_equal(count, 0);
    count = 123;
    assert_null(mlp_grads(NULL, &count));
    assert_int_equal(count, 0);
    assert_null(mlp_params(NULL, NULL));
    assert_null(mlp_grads(NULL, NULL));
}

/* ---- mlp_strerror ----------------------------------------------------- */

static const mlp_status all_statuses[] = {
    MLP_OK,         MLP_ERR_INVALID,    MLP_ERR_NOMEM,     MLP_ERR_IO,
    MLP_ERR_FORMAT, MLP_ERR_ACTIVATION, MLP_ERR_NONFINITE, MLP_ERR_STATE,
};
#define N_STATUSES (sizeof all_statuses / sizeof all_statuses[0])

static void test_strerror_distinct_for_every_status(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_STATUSES; i++) {
        const char *text = mlp_strerror(all_statuses[i]);
        assert_non_null(text);
        assert_true(strlen(text) > 0);
        assert_string_not_equal(text, "unknown status");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(text, mlp_strerror(all_statuses[j]));
    }
}

static void test_strerror_unknown_status(void **state)
{
    (void)state;
    assert_string_equal(mlp_strerror((mlp_status)(MLP_ERR_STATE + 1)), "unknown status");
    assert_string_equal(mlp_strerror((mlp_status)1000), "unknown status");
    assert_string_equal(mlp_strerror((mlp_status)-1), "unknown status");
}

/* ---- allocation failure, SQLite style ---------------------------------- */

/* Each test below fails the k-th allocation of one call for k = 1, 2, ...
 * until the call succeeds, and checks: MLP_ERR_NOMEM, nothing changed,
 * nothing leaked, and the same call then succeeds. `failures` counts the
 * injected failures, so a call that never allocates is caught too. */

static void test_create_allocation_failure_is_nomem(void **state)
{
    (void)state;
    long failures = 0;
    for (long k = 1; k <= MAX_FAILURE_POINTS; k++) {
        test_allocator t;
        test_allocator_init(&t, k);
        mlp_config cfg = small_config();
        cfg.allocator = &t.base;
        mlp *net = SENTINEL_NET;
        mlp_status st = mlp_create(&net, &cfg);
        if (st == MLP_OK) {
            mlp_free(net);
            assert_int_equal(t.live, 0);
            break;
        }
        failures++;
        assert_int_equal(st, MLP_ERR_NOMEM);
        assert_ptr_equal(net, SENTINEL_NET);
        assert_int_equal(t.live, 0);
        t.fail_at = 0;
        assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
        assert_ptr_not_equal(net, SENTINEL_NET);
        mlp_free(net);
        assert_int_equal(t.live, 0);
    }
    assert_true(failures > 0 && failures < MAX_FAILURE_POINTS);
}

static void test_forward_allocation_failure_is_nomem(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS], y[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    long failures = 0;
    for (long k = 1; k <= MAX_FAILURE_POINTS; k++) {
        test_allocator t;
        test_allocator_init(&t, 0);
        mlp *net = create_with(&t.base);
        snapshot s = take_snapshot(net);
        t.fail_at = t.calls + k;
        fill_floats(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
        mlp_status st = mlp_forward(net, BATCH, x, y);
        if (st == MLP_OK) {
            drop_snapshot(&s);
            mlp_free(net);
            assert_int_equal(t.live, 0);
            break;
        }
        failures++;
        assert_int_equal(st, MLP_ERR_NOMEM);
        assert_all_equal(y, BATCH * OUTPUTS, SENTINEL_FLOAT);
        assert_unchanged(net, &s);
        assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_ERR_STATE);
        t.fail_at = 0;
        assert_int_equal(mlp_forward(net, BATCH, x, y), MLP_OK);
        assert_false(y[0] == SENTINEL_FLOAT);
        assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_OK);
        drop_snapshot(&s);
        mlp_free(net);
        assert_int_equal(t.live, 0);
    }
    assert_true(failures > 0 && failures < MAX_FAILURE_POINTS);
}

/* Growing the workspace for a larger batch fails: the old one still serves
 * the smaller batch. */
static void test_forward_growth_allocation_failure_keeps_workspace(void **state)
{
    (void)state;
    static float x[LARGE_BATCH * INPUTS], target[LARGE_BATCH * OUTPUTS];
    fill_data(LARGE_BATCH, x, target);
    test_allocator t;
    test_allocator_init(&t, 0);
    mlp *net = create_with(&t.base);
    float y_small[BATCH * OUTPUTS], y_again[BATCH * OUTPUTS];
    assert_int_equal(mlp_forward(net, BATCH, x, y_small), MLP_OK);
    t.fail_at = t.calls + 1;
    assert_int_equal(mlp_forward(net, LARGE_BATCH, x, NULL), MLP_ERR_NOMEM);
    long calls = t.calls;
    assert_int_equal(mlp_forward(net, BATCH, x, y_again), MLP_OK);
    assert_int_equal(t.calls, calls);
    assert_memory_equal(y_again, y_small, sizeof y_small);
    assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_OK);
    mlp_free(net);
    assert_int_equal(t.live, 0);
}

static void test_backward_allocation_failure_is_nomem(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    /* What the gradients must be after the two backwards. */
    mlp *reference = create_small();
    accumulate(reference, BATCH, x, target);
    accumulate(reference, BATCH, x, target);
    snapshot expected = take_snapshot(reference);
    mlp_free(reference);

    long failures = 0;
    for (long k = 1; k <= MAX_FAILURE_POINTS; k++) {
        test_allocator t;
        test_allocator_init(&t, 0);
        mlp *net = create_with(&t.base);
        accumulate(net, BATCH, x, target);
        assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
        snapshot s = take_snapshot(net);
        t.fail_at = t.calls + k;
        float loss_out = SENTINEL_FLOAT;
        mlp_status st = mlp_backward(net, &mlp_mse, target, &loss_out);
        if (st != MLP_OK) {
            failures++;
            assert_int_equal(st, MLP_ERR_NOMEM);
            assert_true(loss_out == SENTINEL_FLOAT);
            assert_unchanged(net, &s);
            t.fail_at = 0;
            assert_int_equal(mlp_backward(net, &mlp_mse, target, &loss_out), MLP_OK);
        }
        assert_true(loss_out != SENTINEL_FLOAT);
        assert_unchanged(net, &expected);
        drop_snapshot(&s);
        mlp_free(net);
        assert_int_equal(t.live, 0);
        if (st == MLP_OK)
            break;
    }
    assert_true(failures > 0 && failures < MAX_FAILURE_POINTS);
    drop_snapshot(&expected);
}

static void test_step_allocation_failure_is_nomem(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    /* Two Adam steps that never failed: a failed first step must not have
     * advanced the step count or touched the moments. */
    mlp *reference = create_small();
    for (int step = 0; step < 2; step++) {
        accumulate(reference, BATCH, x, target);
        assert_int_equal(mlp_step(reference, &adam), MLP_OK);
    }
    snapshot expected = take_snapshot(reference);
    mlp_free(reference);

    long failures = 0;
    for (long k = 1; k <= MAX_FAILURE_POINTS; k++) {
        test_allocator t;
        test_allocator_init(&t, 0);
        mlp *net = create_with(&t.base);
        accumulate(net, BATCH, x, target);
        snapshot s = take_snapshot(net);
        t.fail_at = t.calls + k;
        mlp_status st = mlp_step(net, &adam);
        if (st != MLP_OK) {
            failures++;
            assert_int_equal(st, MLP_ERR_NOMEM);
            assert_unchanged(net, &s);
            t.fail_at = 0;
            assert_int_equal(mlp_step(net, &adam), MLP_OK);
        }
        accumulate(net, BATCH, x, target);
        assert_int_equal(mlp_step(net, &adam), MLP_OK);
        assert_unchanged(net, &expected);
        drop_snapshot(&s);
        mlp_free(net);
        assert_int_equal(t.live, 0);
        if (st == MLP_OK)
            break;
    }
    assert_true(failures > 0 && failures < MAX_FAILURE_POINTS);
    drop_snapshot(&expected);
}

static void test_predict_allocation_failure_is_nomem(void **state)
{
    (void)state;
    assert_true(3 * LARGE_BATCH * HIDDEN > 3072);
    static float x[LARGE_BATCH * INPUTS], y[LARGE_BATCH * OUTPUTS];
    static float expected[LARGE_BATCH * OUTPUTS];
    fill_data(LARGE_BATCH, x, NULL);
    long failures = 0;
    for (long k = 1; k <= MAX_FAILURE_POINTS; k++) {
        test_allocator t;
        test_allocator_init(&t, 0);
        mlp *net = create_with(&t.base);
        long live = t.live;
        snapshot s = take_snapshot(net);
        t.fail_at = t.calls + k;
        fill_floats(y, LARGE_BATCH * OUTPUTS, SENTINEL_FLOAT);
        mlp_status st = mlp_predict(net, LARGE_BATCH, x, y);
        if (st != MLP_OK) {
            failures++;
            assert_int_equal(st, MLP_ERR_NOMEM);
            assert_all_equal(y, LARGE_BATCH * OUTPUTS, SENTINEL_FLOAT);
            assert_unchanged(net, &s);
            assert_int_equal(t.live, live);
            t.fail_at = 0;
            assert_int_equal(mlp_predict(net, LARGE_BATCH, x, y), MLP_OK);
        }
        if (k == 1)
            memcpy(expected, y, sizeof expected);
        assert_memory_equal(y, expected, sizeof expected);
        assert_unchanged(net, &s);
        drop_snapshot(&s);
        mlp_free(net);
        assert_int_equal(t.live, 0);
        if (st == MLP_OK)
            break;
    }
    assert_true(failures > 0 && failures < MAX_FAILURE_POINTS);
}

static void test_gradcheck_allocation_failure_is_nomem(void **state)
{
    (void)state;
    float x[BATCH * INPUTS], target[BATCH * OUTPUTS];
    fill_data(BATCH, x, target);
    long failures = 0;
    for (long k = 1; k <= MAX_FAILURE_POINTS; k++) {
        test_allocator t;
        test_allocator_init(&t, 0);
        mlp *net = create_with(&t.base);
        /* Gradients pending from a smaller batch, so gradcheck's own forward
         * must grow the workspace as well. */
        accumulate(net, 2, x, target);
        snapshot s = take_snapshot(net);
        t.fail_at = t.calls + k;
        double err = SENTINEL_DOUBLE;
        mlp_status st = mlp_gradcheck(net, &mlp_mse, BATCH, x, target, &err);
        if (st != MLP_OK) {
            failures++;
            assert_int_equal(st, MLP_ERR_NOMEM);
            assert_true(err == SENTINEL_DOUBLE);
            assert_unchanged(net, &s);
            t.fail_at = 0;
            assert_int_equal(mlp_gradcheck(net, &mlp_mse, BATCH, x, target, &err), MLP_OK);
        }
        assert_true(err >= 0.0 && err < 2e-2);
        assert_unchanged(net, &s);
        drop_snapshot(&s);
        mlp_free(net);
        assert_int_equal(t.live, 0);
        if (st == MLP_OK)
            break;
    }
    assert_true(failures > 0 && failures < MAX_FAILURE_POINTS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_null_out_is_invalid),
        cmocka_unit_test(test_create_null_config_is_invalid),
        cmocka_unit_test(test_create_zero_inputs_is_invalid),
        cmocka_unit_test(test_create_inputs_above_max_units_is_invalid),
        cmocka_unit_test(test_create_zero_layers_is_invalid),
        cmocka_unit_test(test_create_layers_above_max_is_invalid),
        cmocka_unit_test(test_create_null_layers_is_invalid),
        cmocka_unit_test(test_create_zero_units_is_invalid),
        cmocka_unit_test(test_create_units_above_max_is_invalid),
        cmocka_unit_test(test_create_null_activation_is_invalid),
        cmocka_unit_test(test_create_activation_without_backward_is_invalid),
        cmocka_unit_test(test_create_activation_without_forward_is_invalid),
        cmocka_unit_test(test_create_activation_without_name_is_invalid),
        cmocka_unit_test(test_create_activation_wrong_abi_is_invalid),
        cmocka_unit_test(test_create_unknown_init_is_invalid),
        cmocka_unit_test(test_create_allocator_with_only_alloc_is_invalid),
        cmocka_unit_test(test_create_allocator_with_only_free_is_invalid),
        cmocka_unit_test(test_create_params_above_max_is_invalid),
        cmocka_unit_test(test_forward_null_net_is_invalid),
        cmocka_unit_test(test_forward_null_x_is_invalid),
        cmocka_unit_test(test_forward_zero_batch_is_invalid),
        cmocka_unit_test(test_forward_batch_above_max_is_invalid),
        cmocka_unit_test(test_forward_invalid_ends_pending_forward),
        cmocka_unit_test(test_forward_nan_input_is_nonfinite),
        cmocka_unit_test(test_forward_inf_input_is_nonfinite),
        cmocka_unit_test(test_forward_nan_input_is_nonfinite_before_allocating),
        cmocka_unit_test(test_forward_overflowing_output_is_nonfinite),
        cmocka_unit_test(test_backward_null_net_is_invalid),
        cmocka_unit_test(test_backward_null_loss_is_invalid),
        cmocka_unit_test(test_backward_null_target_is_invalid),
        cmocka_unit_test(test_backward_loss_wrong_abi_is_invalid),
        cmocka_unit_test(test_backward_loss_without_function_is_invalid),
        cmocka_unit_test(test_backward_loss_without_name_is_invalid),
        cmocka_unit_test(test_backward_loss_with_only_fused_activation_is_invalid),
        cmocka_unit_test(test_backward_loss_with_only_loss_logits_is_invalid),
        cmocka_unit_test(test_backward_without_forward_is_state),
        cmocka_unit_test(test_backward_twice_after_one_forward_is_state),
        cmocka_unit_test(test_backward_after_step_is_state),
        cmocka_unit_test(test_backward_nan_target_is_nonfinite),
        cmocka_unit_test(test_backward_inf_target_is_nonfinite),
        cmocka_unit_test(test_backward_nan_loss_gradient_after_step_is_nonfinite),
        cmocka_unit_test(test_backward_nan_loss_gradient_on_accumulated_grads_is_nonfinite),
        cmocka_unit_test(test_backward_nan_loss_value_is_nonfinite),
        cmocka_unit_test(test_backward_overflowing_gradient_after_step_is_nonfinite),
        cmocka_unit_test(test_backward_overflowing_gradient_on_accumulated_grads_is_nonfinite),
        cmocka_unit_test(test_backward_nan_loss_gradient_behind_relu_is_nonfinite),
        cmocka_unit_test(test_backward_grad_null_args_is_invalid),
        cmocka_unit_test(test_backward_grad_without_forward_is_state),
        cmocka_unit_test(test_backward_grad_nan_is_nonfinite),
        cmocka_unit_test(test_backward_grad_nan_behind_relu_is_nonfinite),
        cmocka_unit_test(test_step_null_args_is_invalid),
        cmocka_unit_test(test_step_without_backward_is_state),
        cmocka_unit_test(test_step_bad_hyperparameters_is_invalid),
        cmocka_unit_test(test_predict_null_args_is_invalid),
        cmocka_unit_test(test_predict_bad_batch_is_invalid),
        cmocka_unit_test(test_predict_nan_input_is_nonfinite),
        cmocka_unit_test(test_gradcheck_null_args_is_invalid),
        cmocka_unit_test(test_gradcheck_ex_null_result_is_invalid),
        cmocka_unit_test(test_gradcheck_nan_input_is_nonfinite),
        cmocka_unit_test(test_gradcheck_nan_target_is_nonfinite),
        cmocka_unit_test(test_gradcheck_success_leaves_params_and_grads_unchanged),
        cmocka_unit_test(test_gradcheck_leaves_optimizer_state_unchanged),
        cmocka_unit_test(test_zero_grad_null_is_invalid),
        cmocka_unit_test(test_free_null_is_noop),
        cmocka_unit_test(test_shape_queries_on_null_return_zero),
        cmocka_unit_test(test_params_and_grads_on_null_return_null_and_zero),
        cmocka_unit_test(test_strerror_distinct_for_every_status),
        cmocka_unit_test(test_strerror_unknown_status),
        cmocka_unit_test(test_create_allocation_failure_is_nomem),
        cmocka_unit_test(test_forward_allocation_failure_is_nomem),
        cmocka_unit_test(test_forward_growth_allocation_failure_keeps_workspace),
        cmocka_unit_test(test_backward_allocation_failure_is_nomem),
        cmocka_unit_test(test_step_allocation_failure_is_nomem),
        cmocka_unit_test(test_predict_allocation_failure_is_nomem),
        cmocka_unit_test(test_gradcheck_allocation_failure_is_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
