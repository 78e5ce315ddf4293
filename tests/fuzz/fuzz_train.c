/* libFuzzer target: training a tiny network on hostile data.
 *
 * The input chooses a network (1-8 inputs, 1-3 layers of 1-8 units, built-in
 * activations), a batch of 1-4 samples, a loss, an optimizer (valid or not:
 * kinds, learning rates and other hyperparameters include out-of-range and
 * NaN ones), inputs and targets (small numbers, or NaN, Inf, huge,
 * subnormal, any bit pattern), then up to MAX_OPS calls among mlp_forward,
 * mlp_backward, mlp_backward_grad, mlp_step, mlp_train_step (against the
 * three calls on a copy), mlp_predict, mlp_gradcheck(_ex),
 * mlp_zero_grad, mlp_reset_optimizer and a save/load round trip, with
 * injected allocation failures. After every call it checks:
 * - the status is one the call documents;
 * - after any failing call, parameters, optimizer state (compared through
 *   mlp_save_buffer's bytes), gradients and the output arguments are
 *   bit-identical to before it; mlp_predict and mlp_gradcheck never change
 *   them at all;
 * - mlp_predict's outputs equal mlp_forward's when both succeed;
 * - MLP_ERR_STATE exactly when the call is out of order, MLP_ERR_INVALID
 *   exactly when the optimizer breaks a documented range;
 * - a saved network reloads (unless it holds NaN/Inf) to the same bytes and
 *   resumes training exactly as the original.
 * A violation aborts.
 *
 * Build and run (clang only):
 *   CC=clang meson setup build-fuzz -Dfuzzing=enabled
 *   ninja -C build-fuzz tests/fuzz/fuzz_train
 *   cp -r tests/fuzz/corpus/train /tmp/corpus-train   # keep the seeds small
 *   ./build-fuzz/tests/fuzz/fuzz_train -max_total_time=600 -print_final_stats=1 \
 *       /tmp/corpus-train tests/fuzz/corpus/train
 */
#include "mlp.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define MAX_WIDTH 40 /* batch x width x width passes 4096: the GEMM kernels run too */
#define MAX_BATCH 8
#define MAX_OPS 64
/* Gradient checks cost two forwards per parameter and attempt: keep them
 * to small networks and a few per input. */
#define GRADCHECK_MAX_PARAMS 100
#define GRADCHECK_MAX_CALLS 2
#define SENTINEL_FLOAT -12345.5f

/* ---- input bytes ------------------------------------------------------- */

/* The fuzzer's bytes, consumed front to back; 0 once exhausted. */
typedef struct source {
    const uint8_t *p;
    size_t n;
} source;

static uint8_t take(source *s)
{
    if (s->n == 0)
        return 0;
    s->n--;
    return *s->p++;
}

static float take_float(source *s)
{
    uint8_t mode = take(s);
    if (mode < 192)
        return ((float)mode - 96.0f) / 32.0f; /* [-3, 3) in steps of 1/32 */
    switch (mode % 8) {
    case 0: return -0.0f;
    case 1: return 3e38f;
    case 2: return -1e20f;
    case 3: return 1e-40f; /* subnormal */
    case 4: return NAN;
    case 5: return INFINITY;
    case 6: return -INFINITY;
    default: {
        uint32_t bits = 0;
        for (int i = 0; i < 4; i++)
            bits |= (uint32_t)take(s) << (8 * i);
        float v;
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    }
}

/* ---- an allocator that fails on demand --------------------------------- */

typedef struct fuzz_allocator {
    mlp_allocator base;
    int countdown; /* > 0: the countdown-th allocation from now fails */
} fuzz_allocator;

static void *fuzz_alloc(void *opaque, size_t size)
{
    fuzz_allocator *fa = opaque;
    if (fa->countdown > 0 && --fa->countdown == 0)
        return NULL;
    return malloc(size);
}

static void fuzz_free(void *opaque, void *ptr)
{
    (void)opaque;
    free(ptr);
}

/* ---- the case ---------------------------------------------------------- */

static const mlp_activation *const activations[] = {
    &mlp_identity, &mlp_sigmoid,  &mlp_tanh, &mlp_relu, &mlp_leaky_relu,
    &mlp_elu,      &mlp_softplus, &mlp_gelu, &mlp_silu, &mlp_softmax,
};
static const mlp_loss *const losses[] = {&mlp_mse, &mlp_bce, &mlp_cross_entropy};

static const double learning_rates[] = {1e-3, 1e-2, 0.1,  0.5, 1.0, 10.0,    1e3,
                                        1e6,  0.0,  -1.0, NAN, 2e6, INFINITY};
static const double decays[] = {0.0, 0.5, 0.9, 0.999, 1.0, -0.1, NAN};
static const double epsilons[] = {1e-8, 1e-3, 1.0, 0.0, 2.0, NAN};
static const double weight_decays[] = {0.0, 1e-2, 1.0, 1e6, -1.0, 2e6};
static const double clip_norms[] = {0.0, 1e-3, 1.0, 1e30, -1.0, 2e30, NAN};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define PICK(s, a) ((a)[take(s) % COUNT(a)])

typedef struct fuzz_case {
    source in;
    fuzz_allocator fa;
    mlp *net;
    size_t inputs, outputs, batch;
    const mlp_loss *loss;
    mlp_optimizer opt;
    float x[MAX_BATCH * MAX_WIDTH], target[MAX_BATCH * MAX_WIDTH];
    int forward_pending; /* 0 no, 1 yes, -1 unknown */
    bool grads_pending;
    int gradchecks;
} fuzz_case;

static bool unit_interval(double v)
{
    return v >= 0.0 && v < 1.0;
}

/* The ranges documented at mlp_optimizer, written out independently. */
static bool optimizer_valid(const mlp_optimizer *o)
{
    if ((int)o->kind < MLP_OPT_SGD || (int)o->kind > MLP_OPT_ADAMW)
        return false;
    if (!(o->learning_rate > 0.0 && o->learning_rate <= 1e6 && o->weight_decay >= 0.0 &&
          o->weight_decay <= 1e6 &&
          (o->clip_norm == 0.0 || (o->clip_norm > 0.0 && o->clip_norm <= 1e30))))
        return false;
    bool eps_ok = o->epsilon > 0.0 && o->epsilon <= 1.0;
    switch (o->kind) {
    case MLP_OPT_MOMENTUM:
    case MLP_OPT_NESTEROV: return unit_interval(o->momentum);
    case MLP_OPT_RMSPROP: return unit_interval(o->rho) && eps_ok;
    case MLP_OPT_ADAM:
    case MLP_OPT_ADAMW: return unit_interval(o->beta1) && unit_interval(o->beta2) && eps_ok;
    default: return true;
    }
}

static void take_optimizer(fuzz_case *c)
{
    int kind = take(&c->in) % 7; /* 6: not a kind */
    mlp_optimizer o = mlp_optimizer_default((mlp_optimizer_kind)kind);
    uint8_t flags = take(&c->in);
    if (flags & 1)
        o.learning_rate = PICK(&c->in, learning_rates);
    if (flags & 2)
        o.momentum = PICK(&c->in, decays);
    if (flags & 4) {
        o.rho = PICK(&c->in, decays);
        o.beta1 = PICK(&c->in, decays);
        o.beta2 = PICK(&c->in, decays);
    }
    if (flags & 8)
        o.epsilon = PICK(&c->in, epsilons);
    if (flags & 16)
        o.weight_decay = PICK(&c->in, weight_decays);
    if (flags & 32)
        o.clip_norm = PICK(&c->in, clip_norms);
    c->opt = o;
}

/* Fills n floats: each from the input, a seeded pattern, the pattern with
 * one value from the input, or one value from the input everywhere. */
static void take_floats(source *s, float *v, size_t n)
{
    uint8_t mode = take(s);
    uint32_t state = 0x9e3779b9u ^ take(s);
    float constant = mode % 4 == 3 ? take_float(s) : 0.0f;
    for (size_t i = 0; i < n; i++) {
        state = state * 1664525u + 1013904223u;
        float pattern = (float)(state >> 8) * 0x1.0p-22f - 2.0f; /* [-2, 2) */
        switch (mode % 4) {
        case 0: v[i] = take_float(s); break;
        case 1: v[i] = pattern; break;
        case 2: v[i] = pattern; break;
        default: v[i] = constant; break;
        }
    }
    if (mode % 4 == 2)
        v[take(s) % n] = take_float(s);
}

static void take_data(fuzz_case *c)
{
    c->batch = 1 + take(&c->in) % MAX_BATCH;
    take_floats(&c->in, c->x, c->batch * c->inputs);
    take_floats(&c->in, c->target, c->batch * c->outputs);
}

/* ---- snapshots --------------------------------------------------------- */

static uint8_t *save(const mlp *net, size_t *len)
{
    CHECK(mlp_save_buffer(net, NULL, 0, len) == MLP_OK);
    uint8_t *buf = malloc(*len);
    CHECK(buf);
    size_t written = 0;
    CHECK(mlp_save_buffer(net, buf, *len, &written) == MLP_OK && written == *len);
    return buf;
}

/* Parameters and optimizer state (as saved) and the gradients. */
typedef struct snapshot {
    uint8_t *saved;
    size_t saved_len;
    float grads[3 * MAX_WIDTH * (MAX_WIDTH + 1)];
    size_t n_params;
} snapshot;

static void take_snapshot(mlp *net, snapshot *snap)
{
    snap->saved = save(net, &snap->saved_len);
    const float *g = mlp_grads(net, &snap->n_params);
    CHECK(snap->n_params <= COUNT(snap->grads));
    memcpy(snap->grads, g, snap->n_params * sizeof *g);
}

/* Frees the snapshot; aborts if the network no longer matches it. */
static void check_unchanged(mlp *net, snapshot *snap)
{
    size_t len;
    uint8_t *now = save(net, &len);
    CHECK(len == snap->saved_len && memcmp(now, snap->saved, len) == 0);
    size_t n;
    const float *g = mlp_grads(net, &n);
    CHECK(n == snap->n_params && memcmp(g, snap->grads, n * sizeof *g) == 0);
    free(now);
    free(snap->saved);
    snap->saved = NULL;
}

static void drop_snapshot(snapshot *snap)
{
    free(snap->saved);
    snap->saved = NULL;
}

static bool all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

static bool all_zero(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f)
            return false;
    return true;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool floats_finite(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = le32(p + 4 * i);
        float v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            return false;
    }
    return true;
}

/* Whether every float of a saved model (parameters and moments) is finite,
 * read from the bytes as docs/model-format.md lays them out: magic,
 * version, flags; ARCH; PARM (header, u64 count, floats); optionally OPTM
 * (header, kind, moment count, u64 steps, moments). */
static bool saved_floats_finite(const uint8_t *buf, size_t len)
{
    size_t parm = 16 + 12 + (size_t)le32(buf + 16 + 4);
    size_t n = (size_t)le32(buf + parm + 12);
    size_t optm = parm + 20 + 4 * n;
    CHECK(optm + 12 <= len);
    if (!floats_finite(buf + parm + 20, n))
        return false;
    if (memcmp(buf + optm, "OPTM", 4) != 0)
        return true;
    size_t moments = le32(buf + optm + 16);
    CHECK(optm + 28 + 4 * moments * n <= len);
    return floats_finite(buf + optm + 28, moments * n);
}

/* ---- the calls --------------------------------------------------------- */

static void op_forward(fuzz_case *c)
{
    float y[MAX_BATCH * MAX_WIDTH], y_pred[MAX_BATCH * MAX_WIDTH];
    size_t n_out = c->batch * c->outputs;
    for (size_t i = 0; i < n_out; i++)
        y[i] = y_pred[i] = SENTINEL_FLOAT;
    snapshot snap;
    take_snapshot(c->net, &snap);
    mlp_status st = mlp_forward(c->net, c->batch, c->x, y);
    c->fa.countdown = 0;
    CHECK(st == MLP_OK || st == MLP_ERR_NONFINITE || st == MLP_ERR_NOMEM);
    check_unchanged(c->net, &snap); /* forward never changes them */
    bool x_finite = all_finite(c->x, c->batch * c->inputs);
    CHECK(x_finite || st == MLP_ERR_NONFINITE);
    if (st != MLP_OK)
        for (size_t i = 0; i < n_out; i++)
            CHECK(y[i] == SENTINEL_FLOAT);
    c->forward_pending = st == MLP_OK;

    take_snapshot(c->net, &snap);
    mlp_status predicted = mlp_predict(c->net, c->batch, c->x, y_pred);
    check_unchanged(c->net, &snap);
    CHECK(predicted == MLP_OK || predicted == MLP_ERR_NONFINITE);
    CHECK(x_finite || predicted == MLP_ERR_NONFINITE);
    /* Forward checks the output layer's z as well as its outputs, so it
     * may refuse what predict accepts (a saturated sigmoid of z = Inf),
     * never the reverse. */
    if (st == MLP_OK)
        CHECK(predicted == MLP_OK && all_finite(y, n_out) &&
              memcmp(y, y_pred, n_out * sizeof *y) == 0);
}

static void op_predict(fuzz_case *c)
{
    float y[MAX_BATCH * MAX_WIDTH];
    for (size_t i = 0; i < COUNT(y); i++)
        y[i] = SENTINEL_FLOAT;
    snapshot snap;
    take_snapshot(c->net, &snap);
    mlp_status st = mlp_predict(c->net, c->batch, c->x, y);
    CHECK(st == MLP_OK || st == MLP_ERR_NONFINITE || st == MLP_ERR_NOMEM);
    check_unchanged(c->net, &snap);
    /* NaN/Inf in x leaves y untouched; overflowed outputs are written and
     * reported. */
    size_t n_out = c->batch * c->outputs, written = n_out;
    if (!all_finite(c->x, c->batch * c->inputs)) {
        CHECK(st == MLP_ERR_NONFINITE);
        written = 0;
    } else if (st == MLP_OK) {
        CHECK(all_finite(y, n_out));
    } else if (st == MLP_ERR_NONFINITE) {
        CHECK(!all_finite(y, n_out));
    }
    for (size_t i = written; i < COUNT(y); i++)
        CHECK(y[i] == SENTINEL_FLOAT);
}

/* The bookkeeping shared by both backwards. */
static void after_backward(fuzz_case *c, mlp_status st, snapshot *snap)
{
    c->fa.countdown = 0;
    CHECK(st == MLP_OK || st == MLP_ERR_STATE || st == MLP_ERR_NONFINITE || st == MLP_ERR_NOMEM);
    if (c->forward_pending == 0)
        CHECK(st == MLP_ERR_STATE);
    if (c->forward_pending == 1)
        CHECK(st != MLP_ERR_STATE);
    size_t n;
    const float *g = mlp_grads(c->net, &n);
    if (st == MLP_OK) {
        CHECK(all_finite(g, n));
        drop_snapshot(snap);
        c->forward_pending = 0;
        c->grads_pending = true;
    } else {
        check_unchanged(c->net, snap);
        c->forward_pending = st == MLP_ERR_STATE ? 0 : 1;
    }
}

static void op_backward(fuzz_case *c)
{
    snapshot snap;
    take_snapshot(c->net, &snap);
    float loss = SENTINEL_FLOAT;
    mlp_status st = mlp_backward(c->net, c->loss, c->target, &loss);
    if (st == MLP_OK)
        CHECK(isfinite(loss));
    else
        CHECK(loss == SENTINEL_FLOAT);
    after_backward(c, st, &snap);
}

static void op_backward_grad(fuzz_case *c)
{
    snapshot snap;
    take_snapshot(c->net, &snap);
    after_backward(c, mlp_backward_grad(c->net, c->target), &snap);
}

static void op_step(fuzz_case *c)
{
    snapshot snap;
    take_snapshot(c->net, &snap);
    mlp_status st = mlp_step(c->net, &c->opt);
    c->fa.countdown = 0;
    CHECK(st == MLP_OK || st == MLP_ERR_INVALID || st == MLP_ERR_STATE || st == MLP_ERR_NONFINITE ||
          st == MLP_ERR_NOMEM);
    bool valid = optimizer_valid(&c->opt);
    CHECK((st == MLP_ERR_INVALID) == !valid);
    if (valid)
        CHECK((st == MLP_ERR_STATE) == !c->grads_pending);
    if (st == MLP_OK) {
        size_t n;
        CHECK(all_zero(mlp_grads(c->net, &n), n));
        /* A step refuses updates that would overflow: what it leaves is
         * finite, so it saves to a loadable file. */
        size_t len;
        uint8_t *bytes = save(c->net, &len);
        CHECK(saved_floats_finite(bytes, len));
        free(bytes);
        drop_snapshot(&snap);
        c->forward_pending = 0;
        c->grads_pending = false;
    } else {
        check_unchanged(c->net, &snap);
    }
}

static void op_gradcheck(fuzz_case *c, bool extended)
{
    if (mlp_param_count(c->net) > GRADCHECK_MAX_PARAMS || c->gradchecks >= GRADCHECK_MAX_CALLS)
        return;
    c->gradchecks++;
    snapshot snap;
    take_snapshot(c->net, &snap);
    mlp_gradcheck_result result = {0};
    double max_rel_err = -1.0;
    mlp_status st = extended
                        ? mlp_gradcheck_ex(c->net, c->loss, c->batch, c->x, c->target, &result)
                        : mlp_gradcheck(c->net, c->loss, c->batch, c->x, c->target, &max_rel_err);
    c->fa.countdown = 0;
    CHECK(st == MLP_OK || st == MLP_ERR_NONFINITE || st == MLP_ERR_NOMEM);
    check_unchanged(c->net, &snap);
    /* NaN means nothing could be measured. */
    if (st == MLP_OK && extended) {
        CHECK(result.resolved <= result.checked);
        CHECK(result.checked + result.skipped == mlp_param_count(c->net));
        CHECK(isnan(result.max_rel_err) == (result.resolved == 0));
        CHECK(isnan(result.max_rel_err) ||
              (isfinite(result.max_rel_err) && result.max_rel_err >= 0.0));
    } else if (st == MLP_OK) {
        CHECK(isnan(max_rel_err) || (isfinite(max_rel_err) && max_rel_err >= 0.0));
    } else if (!extended) {
        CHECK(max_rel_err == -1.0);
    }
    c->forward_pending = st == MLP_ERR_NOMEM ? -1 : 0;
}

/* Trains one step on (x, target) with the current optimizer; *stage
 * receives how many of forward, backward and step succeeded. */
static mlp_status train_step(fuzz_case *c, mlp *net, int *stage)
{
    *stage = 0;
    mlp_status st = mlp_forward(net, c->batch, c->x, NULL);
    if (st == MLP_OK && ++*stage)
        st = mlp_backward(net, c->loss, c->target, NULL);
    if (st == MLP_OK && ++*stage)
        st = mlp_step(net, &c->opt);
    if (st == MLP_OK)
        ++*stage;
    return st;
}

/* Save, load, compare; the loaded network must resume training exactly as
 * the original, and then replaces it. */
static void op_save_load(fuzz_case *c)
{
    size_t len;
    uint8_t *bytes = save(c->net, &len);
    mlp_load_options options = {MLP_LOAD_OPTIONS_ABI, &c->fa.base, NULL, NULL};
    mlp *copy = NULL;
    bool armed = c->fa.countdown > 0;
    mlp_status st = mlp_load_buffer(&copy, bytes, len, &options);
    c->fa.countdown = 0;
    bool finite = saved_floats_finite(bytes, len);
    if (st != MLP_OK) {
        CHECK(copy == NULL);
        CHECK((st == MLP_ERR_FORMAT && !finite) || (st == MLP_ERR_NOMEM && armed));
        free(bytes);
        return;
    }
    CHECK(finite);
    size_t len_again;
    uint8_t *again = save(copy, &len_again);
    CHECK(len_again == len && memcmp(again, bytes, len) == 0);
    free(again);
    free(bytes);

    CHECK(mlp_zero_grad(c->net) == MLP_OK);
    int stage_net, stage_copy;
    mlp_status st_net = train_step(c, c->net, &stage_net);
    mlp_status st_copy = train_step(c, copy, &stage_copy);
    CHECK(st_net == st_copy && stage_net == stage_copy);
    size_t len_net, len_copy;
    uint8_t *after_net = save(c->net, &len_net), *after_copy = save(copy, &len_copy);
    CHECK(len_net == len_copy && memcmp(after_net, after_copy, len_net) == 0);
    free(after_net);
    free(after_copy);

    mlp_free(c->net);
    c->net = copy;
    /* Only a forward whose backward failed is left pending; only a
     * backward whose step failed leaves gradients. */
    c->forward_pending = stage_copy == 1;
    c->grads_pending = stage_copy == 2;
}

/* mlp_train_step against the three calls on a copy of the network: the
 * same status and, on success, the same network and loss bit for bit; on
 * failure nothing changed. */
static void op_train_step(fuzz_case *c)
{
    snapshot snap;
    take_snapshot(c->net, &snap);
    mlp *copy = NULL;
    if (!c->grads_pending) {
        size_t len;
        uint8_t *bytes = save(c->net, &len);
        mlp_status loaded = mlp_load_buffer(&copy, bytes, len, NULL);
        free(bytes);
        if (loaded != MLP_OK) { /* a saved overflow: nothing to compare with */
            CHECK(loaded == MLP_ERR_FORMAT);
            drop_snapshot(&snap);
            return;
        }
    }
    float loss = SENTINEL_FLOAT, loss_copy = SENTINEL_FLOAT;
    mlp_status st = mlp_train_step(c->net, c->batch, c->x, c->loss, c->target, &c->opt, &loss);
    c->fa.countdown = 0;
    /* Whatever happened, no forward is left pending (a refused backward
     * changes nothing). */
    CHECK(mlp_backward(c->net, c->loss, c->target, NULL) == MLP_ERR_STATE);
    c->forward_pending = 0;
    /* The arguments are checked first: an invalid optimizer is reported
     * as such, where the three calls might fail before the step. */
    bool valid = optimizer_valid(&c->opt);
    CHECK((st == MLP_ERR_INVALID) == !valid);
    if (c->grads_pending) {
        CHECK(!valid || st == MLP_ERR_STATE);
        check_unchanged(c->net, &snap);
        return;
    }
    mlp_status st_copy = mlp_forward(copy, c->batch, c->x, NULL);
    if (st_copy == MLP_OK)
        st_copy = mlp_backward(copy, c->loss, c->target, &loss_copy);
    if (st_copy == MLP_OK)
        st_copy = mlp_step(copy, &c->opt);
    if (st == MLP_OK) {
        CHECK(st_copy == MLP_OK && memcmp(&loss, &loss_copy, sizeof loss) == 0);
        size_t len, len_copy, n;
        uint8_t *after = save(c->net, &len), *after_copy = save(copy, &len_copy);
        CHECK(len == len_copy && memcmp(after, after_copy, len) == 0);
        CHECK(all_zero(mlp_grads(c->net, &n), n));
        free(after);
        free(after_copy);
        drop_snapshot(&snap);
    } else {
        CHECK(!valid || st == MLP_ERR_NOMEM || st == st_copy);
        CHECK(loss == SENTINEL_FLOAT);
        check_unchanged(c->net, &snap);
    }
    mlp_free(copy);
}

enum {
    OP_TRAIN_STEP,
    OP_FORWARD,
    OP_BACKWARD,
    OP_BACKWARD_GRAD,
    OP_STEP,
    OP_PREDICT,
    OP_GRADCHECK,
    OP_GRADCHECK_EX,
    OP_SAVE_LOAD,
    OP_ZERO_GRAD,
    OP_RESET_OPTIMIZER,
    OP_NEW_DATA,
    OP_NEW_OPTIMIZER,
    OP_NEW_LOSS,
    OP_FAIL_ALLOCATION,
    OP_COUNT
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_case c = {.in = {data, size}};
    c.fa.base = (mlp_allocator){fuzz_alloc, fuzz_free, &c.fa};

    mlp_layer layers[3];
    c.inputs = 1 + take(&c.in) % MAX_WIDTH;
    size_t n_layers = 1 + take(&c.in) % 3;
    for (size_t l = 0; l < n_layers; l++) {
        layers[l].units = 1 + take(&c.in) % MAX_WIDTH;
        layers[l].activation = PICK(&c.in, activations);
    }
    c.outputs = layers[n_layers - 1].units;
    uint64_t seed = take(&c.in);
    int init = take(&c.in) % 3;
    mlp_config cfg = {c.inputs, n_layers, layers, seed, init, &c.fa.base};
    CHECK(mlp_create(&c.net, &cfg) == MLP_OK);
    c.loss = PICK(&c.in, losses);
    take_optimizer(&c);
    take_data(&c);

    for (int op = 0; op < MAX_OPS && c.in.n > 0; op++) {
        switch (take(&c.in) % OP_COUNT) {
        case OP_TRAIN_STEP: op_train_step(&c); break;
        case OP_FORWARD: op_forward(&c); break;
        case OP_BACKWARD: op_backward(&c); break;
        case OP_BACKWARD_GRAD: op_backward_grad(&c); break;
        case OP_STEP: op_step(&c); break;
        case OP_PREDICT: op_predict(&c); break;
        case OP_GRADCHECK: op_gradcheck(&c, false); break;
        case OP_GRADCHECK_EX: op_gradcheck(&c, true); break;
        case OP_SAVE_LOAD: op_save_load(&c); break;
        case OP_ZERO_GRAD: {
            CHECK(mlp_zero_grad(c.net) == MLP_OK);
            size_t n;
            CHECK(all_zero(mlp_grads(c.net, &n), n));
            c.grads_pending = false;
            break;
        }
        case OP_RESET_OPTIMIZER: CHECK(mlp_reset_optimizer(c.net) == MLP_OK); break;
        case OP_NEW_DATA: take_data(&c); break;
        case OP_NEW_OPTIMIZER: take_optimizer(&c); break;
        case OP_NEW_LOSS: c.loss = PICK(&c.in, losses); break;
        case OP_FAIL_ALLOCATION: c.fa.countdown = 1 + take(&c.in) % 4; continue;
        }
        c.fa.countdown = 0;
    }
    mlp_free(c.net);
    return 0;
}
