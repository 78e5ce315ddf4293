/* Private to libmlp: the network's layout and helpers shared by its files. */
#ifndef MLP_INTERNAL_H
#define MLP_INTERNAL_H

#include "mlp.h"

#include "kernels.h"

#include <math.h>
#include <stdbool.h>

typedef struct mlp_dense {
    size_t fan_in, units;
    size_t w_offset;                  /* W: (units, fan_in) at params + w_offset */
    size_t b_offset;                  /* b: (units) right after W */
    size_t z_offset;                  /* z, a: (batch, units) in the forward cache */
    const mlp_activation *activation; /* borrowed; outlives the network */
    mlp_fused fused;                  /* which built-in activation it is */
    bool small;                       /* units * fan_in <= MLP_SMALL_MADDS */
} mlp_dense;

struct mlp {
    mlp_allocator allocator;
    size_t inputs, n_layers, max_width;
    size_t max_batch; /* see mlp_batch_ok */
    mlp_dense *layers;

    size_t n_params;
    float *params;        /* every W and b, layer after layer */
    float *grads;         /* same layout, accumulated by backward */
    float *grads_scratch; /* lazily: backward's result before it is added, or
                           * mlp_train_step's copy of the parameters */

    /* Optimizer state: moments in the parameters' layout, allocated by the
     * first step of a kind that needs them. */
    int opt_kind; /* kind of the last step; -1 before any */
    uint64_t opt_steps;
    float *moment1, *moment2;

    /* Training cache for the pending forward: x copy (batch, inputs), then
     * each layer's z and a (batch, units); two (batch, max_width) buffers for
     * backward's gradients. Sized for batch_capacity samples. */
    size_t batch_capacity, batch;
    float *x_cache, *z_cache, *a_cache, *grad_a, *grad_z;
    /* The inputs of the cached forward: x_cache, or during mlp_train_step
     * (which needs them no longer than the call) the caller's own. */
    const float *x_in;
    mlp_work kernel_work; /* packing space for the layer products */
    bool forward_pending;
    bool grads_pending; /* a backward since the last step or zero_grad */
    bool all_small;     /* every layer is small (mlp_dense.small) */
};

/* For the element-wise loops over all parameters (optimizer, checks): one
 * copy per x86-64 level, the best picked by the loader, so they run as
 * wide as the processor allows while the default build stays portable. */
/* ThreadSanitizer cannot run the loader's resolver of the clones (it runs
 * before the sanitizer is up), so its builds keep one portable copy. */
#if defined(__SANITIZE_THREAD__)
#define MLP_NO_CLONES
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MLP_NO_CLONES
#endif
#endif
#if defined(MLP_X86_KERNELS) && !defined(MLP_NO_CLONES) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MLP_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef MLP_VECTOR_CLONES
#define MLP_VECTOR_CLONES
#endif
/* A loop body shared by such clones must be inlined into each of them to
 * be compiled for its instruction set (clang does not inline it otherwise). */
#if defined(__GNUC__)
#define MLP_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MLP_ALWAYS_INLINE inline
#endif

void *mlp_alloc(const mlp_allocator *al, size_t count, size_t size);
void mlp_dealloc(const mlp_allocator *al, void *ptr);

/* The allocator, or malloc/free for NULL. */
mlp_allocator mlp_allocator_or_default(const mlp_allocator *al);

/* Weights and biases a config's shapes need; 0 if a shape is out of its
 * limit or the total exceeds MLP_MAX_PARAMS. */
size_t mlp_config_param_count(const mlp_config *cfg);

/* Layers of at most this many multiply-adds take the tiny-network path
 * (small.c) for a single sample. */
#define MLP_SMALL_MADDS 4096

static inline bool mlp_small_layer(const mlp_dense *d, size_t rows)
{
    return rows == 1 && d->small;
}

mlp_fused mlp_fused_kind(const mlp_activation *act);

/* Backward's hand-over to the layer before, prev: *spare holds dL/d(prev
 * a), already taken on to dL/d(prev z) in place if prev's activation is a
 * built-in one (then the two buffers trade places), else prev's vtable
 * takes it into *dz, from prev's z and a. */
static inline void mlp_next_dz(const mlp_dense *prev, size_t rows, const float *z, const float *a,
                               float **dz, float **spare)
{
    if (prev->fused) {
        float *t = *dz;
        *dz = *spare, *spare = t;
    } else {
        prev->activation->backward(prev->activation, rows, prev->units, z, a, *spare, *dz);
    }
}

/* One sample through a small layer: z = W x + b, a = f(z) (unless a is
 * NULL). */
void mlp_small_forward(const mlp_dense *d, const float *params, const float *x, float *z, float *a);

/* One sample back through a small layer: dz (units) is dL/dz, x (fan_in)
 * the layer's input. Writes dW and db into grads (in the parameters'
 * layout); if prev (the layer before) is not NULL, also dx = dL/dx, taken
 * on in place through prev's activation to dL/d(prev z) if it is a
 * built-in one (prev->fused), from prev_z and prev_a. Returns nonzero if
 * dW or db holds a NaN or Inf. */
int mlp_small_backward(const mlp_dense *d, const float *params, const float *x, const float *dz,
                       float *grads, const mlp_dense *prev, const float *prev_z,
                       const float *prev_a, float *dx);

/* One sample forward through a network whose layers are all small
 * (net->all_small) into its training cache: each layer as
 * mlp_small_forward, without a call per layer; the output layer's
 * activation only if outputs is set. */
void mlp_small_forward_net(const mlp *net, const float *x, bool outputs);

/* The tiny path's plain-SGD step for one sample through a network whose
 * layers are all small, fused with backward: from dL/dz of the output layer
 * in grad_z (grad_a is scratch), each layer's dL/dx as mlp_small_backward
 * would, from the weights before the step, then the layer's weights and
 * biases updated in place by mlp_sgd of each gradient, the old values kept
 * in old (the parameters' layout). Returns nonzero if any new value is NaN
 * or Inf: then the caller puts old back. */
int mlp_small_sgd_net(mlp *net, const mlp_sgd_rule *sgd, float *old);

/* A plain-SGD step on n parameters w from their gradients in g (mlp_sgd),
 * in place, the old values taking the gradients' place in g. Returns
 * nonzero if any new value is NaN or Inf. On all OpenMP threads when n is
 * large. */
int mlp_sgd_span(size_t n, float *w, float *g, float lr, float wd);

/* A plain-SGD step for one sample's gradients, straight from their
 * factors: the out x in weights w (then the out biases) step on dW = dz x^T
 * (and db = dz) without the gradients being stored; the old values go to
 * old. Returns nonzero if any new value is NaN or Inf. */
int mlp_sgd_outer(size_t out, size_t in, float *w, const float *dz, const float *x, float *old,
                  float lr, float wd);

static inline bool mlp_unit_interval(double v)
{
    return v >= 0.0 && v < 1.0;
}

/* Whether an optimizer description is valid (mlp_step's MLP_ERR_INVALID).
 * Inline, like the other checks of a call's arguments here: a tiny
 * network's train step is a few hundred instructions. */
static inline bool mlp_optimizer_ok(const mlp_optimizer *opt)
{
    if (opt->kind < MLP_OPT_SGD || opt->kind > MLP_OPT_ADAMW)
        return false;
    /* Comparisons are false for NaN, and the upper bound rejects infinity. */
    bool ok = opt->learning_rate > 0.0 && opt->learning_rate <= 1e6 && opt->weight_decay >= 0.0 &&
              opt->weight_decay <= 1e6 && opt->clip_norm >= 0.0 && opt->clip_norm <= 1e30;
    switch (opt->kind) {
    case MLP_OPT_MOMENTUM:
    case MLP_OPT_NESTEROV: return ok && mlp_unit_interval(opt->momentum);
    case MLP_OPT_RMSPROP:
        return ok && mlp_unit_interval(opt->rho) && opt->epsilon > 0.0 && opt->epsilon <= 1.0;
    case MLP_OPT_ADAM:
    case MLP_OPT_ADAMW:
        return ok && mlp_unit_interval(opt->beta1) && mlp_unit_interval(opt->beta2) &&
               opt->epsilon > 0.0 && opt->epsilon <= 1.0;
    default: return ok;
    }
}

/* The number of a step of kind about to be taken: 1 for a new kind, at
 * most UINT64_MAX (it saturates rather than wrap to 0: a loaded file may
 * hold any count, and at such counts Adam's bias corrections are exactly 1
 * anyway). */
static inline uint64_t mlp_step_number(const mlp *net, mlp_optimizer_kind kind)
{
    if ((int)kind != net->opt_kind)
        return 1;
    return net->opt_steps + (net->opt_steps < UINT64_MAX);
}

/* Records a successful step of kind: the step count, the kind, and that no
 * forward or gradients are pending. */
static inline void mlp_record_step(mlp *net, mlp_optimizer_kind kind)
{
    net->opt_steps = mlp_step_number(net, kind);
    net->opt_kind = (int)kind;
    net->forward_pending = false;
    net->grads_pending = false; /* and the gradients are zero again */
}

/* Moment buffers an optimizer kind keeps (0, 1 or 2). */
int mlp_moments_needed(int kind);

/* part(ctx, lo, len) over [0, n) in one contiguous range per OpenMP thread
 * when n >= threshold (and there are threads), else in one call; returns
 * the OR of what the calls return. */
int mlp_split(size_t n, size_t threshold, int (*part)(void *ctx, size_t lo, size_t len), void *ctx);

/* Whether every value is finite; a few values inline (a tiny network's
 * forward checks its inputs and outputs), more vectorised. */
bool mlp_all_finite_wide(const float *v, size_t n);
static inline bool mlp_all_finite(const float *v, size_t n)
{
    if (n > 8)
        return mlp_all_finite_wide(v, n);
    for (size_t i = 0; i < n; i++)
        if (v[i] - v[i] != 0.0f)
            return false;
    return true;
}
mlp_status mlp_check_activation(const mlp_activation *act);

static inline mlp_status mlp_check_loss(const mlp_loss *loss)
{
    if (loss == &mlp_bce || loss == &mlp_cross_entropy || loss == &mlp_mse)
        return MLP_OK; /* the usual ones, valid by construction */
    if (!loss || loss->abi_version != MLP_LOSS_ABI || !loss->name || !loss->loss ||
        (!loss->fused_activation != !loss->loss_logits))
        return MLP_ERR_INVALID;
    return MLP_OK;
}

/* Units of all layers together: a sample's share of the training cache. */
size_t mlp_total_units(const mlp *net);

/* Whether a batch size is allowed: 1..MLP_MAX_BATCH, and batch * (inputs +
 * all units) within MLP_MAX_PARAMS, so the training cache and every batch *
 * width product can be indexed. */
static inline bool mlp_batch_ok(const mlp *net, size_t batch)
{
    return batch > 0 && batch <= net->max_batch;
}

/* Floats of kernel workspace the layers need for a batch of this size. */
size_t mlp_kernel_workspace(const mlp *net, size_t batch);

/* Runs every layer over x with the same kernels as mlp_forward, so results
 * are bit-identical, without touching the network. work: 3 * batch *
 * max_width floats, holding z and two alternating activation buffers, then
 * room for the kernels (mlp_kernel_workspace(net, batch), or less: fewer
 * threads); the output layer's z is left at its start. The output activations go to out,
 * or stay in work if out is NULL; returns them. If signs is not NULL, for
 * each layer with kinked[l] set, signs[batch * z_offset + i] records
 * whether that layer's pre-activation i is > 0. */
const float *mlp_run_layers(const mlp *net, size_t batch, const float *x, mlp_work work, float *out,
                            unsigned char *signs, const bool *kinked);

/* Whether the loss pairs with the output activation: then it works on z,
 * its gradient is dL/dz, and the activation's output is not needed. */
static inline bool mlp_loss_fused(const mlp_loss *loss, const mlp_activation *out_act)
{
    return loss->fused_activation && loss->fused_activation == out_act;
}

/* 2^(i/256) for i = 0..255, as double bits, with i << 44 subtracted (see
 * mlp_exp_split). */
extern const uint64_t mlp_exp2_table[256];

/* For -700 <= x <= 0: k = round(x 256/ln2), returned as a double, and s =
 * 2^(k/256), from the table with floor(k/256) added to its exponent (s
 * stays a normal double down to x = -700). Then e^x = s e^(x - k ln2/256),
 * the second factor's argument at most ln2/512 in magnitude. */
static inline double mlp_exp_split(double x, double *s)
{
    const double shift = 0x1.8p52;                /* adding it rounds to an integer */
    double kd = x * 0x1.71547652b82fep+8 + shift; /* 256 / ln 2 */
    uint64_t ki, bits;
    memcpy(&ki, &kd, sizeof ki);
    bits = mlp_exp2_table[ki & 255] + (ki << 44);
    memcpy(s, &bits, sizeof *s);
    return kd - shift;
}

/* Inline exponentials for x <= 0 (a softmax's z - max, a logistic's
 * -|z|), in double, from the table and a Taylor polynomial (as glibc's
 * exp, which a call would reach with every vector register clobbered).
 * mlp_exp_nonpositive is within 1.5 ulp of double: its reduced argument is x
 * - k ln2/256 with ln2/256 in two parts (k times the first is exact), and
 * its polynomial has terms to r^4. The fast one is within 2^-31 and
 * shorter, on a tiny network's train step: the reduced argument in units
 * of ln2/256, rounded as x 256/ln2 is, and terms to r^2. Below -700, both
 * are 0: e^x is under 1e-304 there, and what they serve adds it to 1 or
 * more, or rounds it to float. A NaN stays NaN. */
static inline double mlp_exp_nonpositive(double x)
{
    if (!(x >= -700.0))
        return x < -700.0 ? 0.0 : x; /* NaN stays NaN */
    double s, kd = mlp_exp_split(x, &s);
    double r = (x - kd * 0x1.62e42fef80000p-9) - kd * 0x1.1cf79abc9e3b4p-44, r2 = r * r;
    double p = r + r2 * (0.5 + r * (1.0 / 6.0) + r2 * (1.0 / 24.0));
    return s + s * p;
}

static inline double mlp_exp_nonpositive_fast(double x)
{
    if (!(x >= -700.0))
        return x < -700.0 ? 0.0 : x; /* NaN stays NaN */
    double s, z = x * 0x1.71547652b82fep+8, r = z - mlp_exp_split(x, &s);
    const double c1 = 0x1.62e42fefa39efp-9, c2 = 0x1.ebfbdff82c58fp-19; /* (ln2/256)^n / n! */
    return s * (1.0 + c1 * r + c2 * (r * r));
}

/* Binary cross-entropy on logits z, the mean over n values, with value. */
double mlp_bce_logits_value(size_t n, const float *z, const float *target);

/* Binary cross-entropy on logits z and its gradient dL/dz (grad_z may be
 * NULL), the mean over n values. With p = sigmoid(z): -t log p - (1-t)
 * log(1-p) = max(z,0) - t z + log(1 + e^-|z|), accurate and finite for any
 * z, and dL/dz = p - t. Without value the loss is skipped (0 is returned)
 * where it is certainly finite as a float: below 1e30 for |z| (1 + |t|), as
 * the log term is at most log 2. Inline: a tiny network's train step spends
 * more on a call than on one output's loss. */
static inline double mlp_bce_logits_n(size_t n, const float *z, const float *target, float *grad_z,
                                      bool value)
{
    double sum = 0.0;
    bool large = false;
    for (size_t i = 0; i < n; i++) {
        /* e^-|z|, for a target of 0 or 1 to 2^-31 (the shorter way, on a
         * tiny step's longest chain): num below is then e, -e, 1 or -1, and
         * keeps e's relative precision. For a target in between, num
         * cancels as p nears t and needs e to double precision. */
        double zi = z[i], t = target[i];
        bool hard = t == 0.0 || t == 1.0;
        double e = hard ? mlp_exp_nonpositive_fast(-fabs(zi)) : mlp_exp_nonpositive(-fabs(zi));
        double d = 1.0 + e;
        if (value)
            sum += (zi > 0.0 ? zi : 0.0) - t * zi + log1p(e);
        else
            large |= fabs(zi) * (1.0 + fabs(t)) >= 1e30;
        /* With d = 1 + e: p - t = ((1 - t) - t e) / d for z >= 0 (p = 1 /
         * d), else (e (1 - t) - t) / d. One division, on the path to every
         * gradient of a step; no 1 - t d, which would cancel to a rounding
         * error where p nears t = 1 (large z) or t = 0. For t = 0 or 1 the
         * numerator is chosen, not computed (the same values, sooner). */
        if (grad_z) {
            double num;
            if (hard) {
                num = (zi >= 0.0) == (t == 1.0) ? e : 1.0;
                num = t == 1.0 ? -num : num;
            } else {
                num = zi >= 0.0 ? (1.0 - t) - t * e : e * (1.0 - t) - t;
            }
            grad_z[i] = (float)(num / (n == 1 ? d : d * (double)n)); /* d * 1 is d */
        }
    }
    if (large)
        return mlp_bce_logits_value(n, z, target);
    return sum / (double)n;
}

/* Loss of outputs for a finished forward of the last layer: fused on z when
 * the loss pairs with the output activation, else on a. grad (may be NULL)
 * receives dL/dz (fused, *fused set true) or dL/da. Without value, a
 * built-in loss may skip the loss itself and return 0 where it is certainly
 * finite as a float. */
static inline double mlp_loss_eval(const mlp_loss *loss, const mlp_activation *out_act, size_t rows,
                                   size_t cols, const float *z, const float *a, const float *target,
                                   float *grad, bool *fused, bool value)
{
    bool use_logits = mlp_loss_fused(loss, out_act);
    if (fused)
        *fused = use_logits;
    if (use_logits && loss == &mlp_bce) /* the one whose value can be skipped */
        return mlp_bce_logits_n(rows * cols, z, target, grad, value);
    if (use_logits)
        return loss->loss_logits(loss, rows, cols, z, target, grad);
    return loss->loss(loss, rows, cols, a, target, grad);
}

#endif
