/* Optimizers: the update rules documented at mlp_optimizer in mlp.h. State
 * (moments, step count) lives in the network so a step is just a call. */
#include "internal.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

mlp_optimizer mlp_optimizer_default(mlp_optimizer_kind kind)
{
    mlp_optimizer opt = {
        .kind = kind,
        .learning_rate = 0.01,
        .momentum = 0.9,
        .beta1 = 0.9,
        .beta2 = 0.999,
        .rho = 0.9,
        .epsilon = 1e-8,
        .weight_decay = 0.0,
        .clip_norm = 0.0,
    };
    switch (kind) {
    case MLP_OPT_ADAMW:
        opt.weight_decay = 0.01;
        /* fall through */
    case MLP_OPT_RMSPROP:
    case MLP_OPT_ADAM: opt.learning_rate = 0.001; break;
    default: break;
    }
    return opt;
}

int mlp_moments_needed(int kind)
{
    switch (kind) {
    case MLP_OPT_SGD: return 0;
    case MLP_OPT_ADAM:
    case MLP_OPT_ADAMW: return 2;
    default: return 1;
    }
}

/* Allocates the moment buffers a kind needs and does not have yet. Nothing
 * else changes, so a step that fails later leaves the state as it was. */
static mlp_status reserve_moments(mlp *net, mlp_optimizer_kind kind)
{
    int needed = mlp_moments_needed((int)kind);
    float *m1 = net->moment1, *m2 = net->moment2;
    if (needed >= 1 && !m1)
        m1 = mlp_alloc(&net->allocator, net->n_params, sizeof(float));
    if (needed >= 2 && !m2)
        m2 = mlp_alloc(&net->allocator, net->n_params, sizeof(float));
    if ((needed >= 1 && !m1) || (needed >= 2 && !m2)) {
        if (m1 != net->moment1)
            mlp_dealloc(&net->allocator, m1);
        if (m2 != net->moment2)
            mlp_dealloc(&net->allocator, m2);
        return MLP_ERR_NOMEM;
    }
    /* New buffers start at zero, so every stored moment is always finite. */
    if (m1 != net->moment1)
        memset(m1, 0, net->n_params * sizeof(float));
    if (m2 != net->moment2)
        memset(m2, 0, net->n_params * sizeof(float));
    net->moment1 = m1;
    net->moment2 = m2;
    return MLP_OK;
}

/* Factor that brings the global gradient norm down to clip_norm. */
static float clip_scale(const mlp *net, double clip_norm)
{
    if (clip_norm <= 0.0)
        return 1.0f;
    double sq = 0.0;
    for (size_t i = 0; i < net->n_params; i++)
        sq += (double)net->grads[i] * net->grads[i];
    double norm = sqrt(sq);
    return norm > clip_norm ? (float)(clip_norm / norm) : 1.0f;
}

mlp_status mlp_reset_optimizer(mlp *net)
{
    if (!net)
        return MLP_ERR_INVALID;
    mlp_dealloc(&net->allocator, net->moment1);
    mlp_dealloc(&net->allocator, net->moment2);
    net->moment1 = net->moment2 = NULL;
    net->opt_kind = -1;
    net->opt_steps = 0;
    return MLP_OK;
}

/* One step's constants, in float as the update runs. */
typedef struct step_rule {
    mlp_optimizer_kind kind;
    float scale, lr, wd, decay, mu, eps;
    float rho, one_minus_rho, b1, one_minus_b1, b2, one_minus_b2;
    float lr_t, inv_sqrt_bc2;
} step_rule;

static step_rule make_rule(const mlp *net, const mlp_optimizer *opt, uint64_t t)
{
    step_rule r;
    r.kind = opt->kind;
    r.scale = clip_scale(net, opt->clip_norm);
    r.lr = (float)opt->learning_rate;
    /* AdamW decays the weight directly; every other kind adds wd * w to g. */
    r.wd = opt->kind == MLP_OPT_ADAMW ? 0.0f : (float)opt->weight_decay;
    r.decay =
        opt->kind == MLP_OPT_ADAMW ? (float)(1.0 - opt->learning_rate * opt->weight_decay) : 1.0f;
    r.mu = (float)opt->momentum;
    r.eps = (float)opt->epsilon;
    /* Each decay and its complement rounded from double separately, so the
     * complement of beta2 = 0.999 is not 1 - (float)0.999. */
    r.rho = (float)opt->rho, r.one_minus_rho = (float)(1.0 - opt->rho);
    r.b1 = (float)opt->beta1, r.one_minus_b1 = (float)(1.0 - opt->beta1);
    r.b2 = (float)opt->beta2, r.one_minus_b2 = (float)(1.0 - opt->beta2);
    /* Adam's bias corrections folded into two constants (Kingma & Ba, end
     * of section 2): w -= lr_t m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
    bool adam = opt->kind == MLP_OPT_ADAM || opt->kind == MLP_OPT_ADAMW;
    r.lr_t = adam ? (float)(opt->learning_rate / (1.0 - pow(opt->beta1, (double)t))) : 0.0f;
    r.inv_sqrt_bc2 = adam ? (float)(1.0 / sqrt(1.0 - pow(opt->beta2, (double)t))) : 0.0f;
    return r;
}

/* One pass of the update rule of mlp.h over all parameters. Returns
 * nonzero if any new weight or moment would be NaN or Inf, and by mode (a
 * constant in each caller) stores nothing (CHECK), stores in place and
 * clears the gradients (STORE: no separate pass over them), or writes the
 * new values to wo, mo, vo (INTO). keep is all ones, or 0 to read the
 * moments as +0 for a kind's first step (whatever an earlier kind left
 * there, even -0 or a negative value, whose product with 0 would be -0:
 * a network and its saved copy, which holds only the current kind's
 * moments, must step alike). One branch-free loop per kind, so each
 * vectorises. */
enum { CHECK, STORE, INTO };

/* m, or +0 where keep is 0: the bits masked, not multiplied. */
static inline float kept(float m, uint32_t keep)
{
    uint32_t bits;
    memcpy(&bits, &m, sizeof bits);
    bits &= keep;
    memcpy(&m, &bits, sizeof m);
    return m;
}
static MLP_ALWAYS_INLINE int step_pass(const step_rule *r, size_t n, float *restrict w,
                                       float *restrict m, float *restrict v, float *restrict grads,
                                       uint32_t keep, const int mode, float *restrict wo,
                                       float *restrict mo, float *restrict vo)
{
    int bad = 0;
    switch (r->kind) {
    case MLP_OPT_SGD:
        for (size_t i = 0; i < n; i++) {
            float wi = mlp_sgd(w[i], grads[i] * r->scale, r->lr, r->wd);
            if (mode == STORE)
                w[i] = wi, grads[i] = 0.0f;
            else if (mode == INTO)
                wo[i] = wi;
            bad |= mlp_nonfinite(wi);
        }
        break;
    case MLP_OPT_MOMENTUM:
        for (size_t i = 0; i < n; i++) {
            float g = grads[i] * r->scale + r->wd * w[i];
            float mi = r->mu * kept(m[i], keep) + g;
            float wi = w[i] - r->lr * mi;
            if (mode == STORE)
                w[i] = wi, m[i] = mi, grads[i] = 0.0f;
            else if (mode == INTO)
                wo[i] = wi, mo[i] = mi;
            bad |= mlp_nonfinite(wi) | mlp_nonfinite(mi);
        }
        break;
    case MLP_OPT_NESTEROV:
        for (size_t i = 0; i < n; i++) {
            float g = grads[i] * r->scale + r->wd * w[i];
            float mi = r->mu * kept(m[i], keep) + g;
            float wi = w[i] - r->lr * (g + r->mu * mi);
            if (mode == STORE)
                w[i] = wi, m[i] = mi, grads[i] = 0.0f;
            else if (mode == INTO)
                wo[i] = wi, mo[i] = mi;
            bad |= mlp_nonfinite(wi) | mlp_nonfinite(mi);
        }
        break;
    case MLP_OPT_RMSPROP:
        for (size_t i = 0; i < n; i++) {
            float g = grads[i] * r->scale + r->wd * w[i];
            float mi = r->rho * kept(m[i], keep) + r->one_minus_rho * g * g;
            float wi = w[i] - r->lr * g / (sqrtf(mi) + r->eps);
            if (mode == STORE)
                w[i] = wi, m[i] = mi, grads[i] = 0.0f;
            else if (mode == INTO)
                wo[i] = wi, mo[i] = mi;
            bad |= mlp_nonfinite(wi) | mlp_nonfinite(mi);
        }
        break;
    case MLP_OPT_ADAM:
    case MLP_OPT_ADAMW:
        for (size_t i = 0; i < n; i++) {
            float g = grads[i] * r->scale + r->wd * w[i];
            float mi = r->b1 * kept(m[i], keep) + r->one_minus_b1 * g;
            float vi = r->b2 * kept(v[i], keep) + r->one_minus_b2 * g * g;
            float wi = w[i] * r->decay - r->lr_t * mi / (sqrtf(vi) * r->inv_sqrt_bc2 + r->eps);
            if (mode == STORE)
                w[i] = wi, m[i] = mi, v[i] = vi, grads[i] = 0.0f;
            else if (mode == INTO)
                wo[i] = wi, mo[i] = mi, vo[i] = vi;
            bad |= mlp_nonfinite(wi) | mlp_nonfinite(mi) | mlp_nonfinite(vi);
        }
        break;
    }
    return bad;
}

/* The clones are resolved inside this file: clang wants a multiversioned
 * function's first declaration to carry the attribute. */
MLP_VECTOR_CLONES static int sgd_span(size_t n, float *restrict w, float *restrict g, float lr,
                                      float wd)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float wi = w[i], v = mlp_sgd(wi, g[i], lr, wd);
        g[i] = wi;
        w[i] = v;
        bad |= mlp_nonfinite(v);
    }
    return bad;
}

/* From this many parameters a step is shared among threads (with OpenMP);
 * each element is updated on its own, so the result is the same. */
#define PARALLEL_PARAMS 16384

typedef struct span_job {
    float *w, *g;
    float lr, wd;
} span_job;

static int span_part(void *ctx, size_t lo, size_t len)
{
    const span_job *j = ctx;
    return sgd_span(len, j->w + lo, j->g + lo, j->lr, j->wd);
}

int mlp_sgd_span(size_t n, float *w, float *g, float lr, float wd)
{
    span_job job = {w, g, lr, wd};
    return mlp_split(n, PARALLEL_PARAMS, span_part, &job);
}

/* Rows [o0, o1) of mlp_sgd_outer. */
MLP_VECTOR_CLONES static int sgd_outer_rows(size_t o0, size_t o1, size_t in, float *w,
                                            const float *dz, const float *x, float *old, float lr,
                                            float wd)
{
    int bad = 0;
    for (size_t o = o0; o < o1; o++) {
        float g = dz[o], *wo = w + o * in, *oldo = old + o * in;
        for (size_t i = 0; i < in; i++) {
            float wi = wo[i], v = mlp_sgd(wi, g * x[i], lr, wd);
            oldo[i] = wi;
            wo[i] = v;
            bad |= mlp_nonfinite(v);
        }
    }
    return bad;
}

typedef struct outer_job {
    size_t in;
    float *w, *old;
    const float *dz, *x;
    float lr, wd;
} outer_job;

static int outer_part(void *ctx, size_t lo, size_t len)
{
    const outer_job *j = ctx;
    return sgd_outer_rows(lo, lo + len, j->in, j->w, j->dz, j->x, j->old, j->lr, j->wd);
}

int mlp_sgd_outer(size_t out, size_t in, float *w, const float *dz, const float *x, float *old,
                  float lr, float wd)
{
    outer_job job = {in, w, old, dz, x, lr, wd};
    /* Rows on threads from PARALLEL_PARAMS weights. */
    int bad = mlp_split(out, (PARALLEL_PARAMS + in - 1) / in, outer_part, &job);
    /* The biases, right after W, one per row: their gradient is dz. */
    const float one = 1.0f;
    return bad | sgd_outer_rows(0, out, 1, w + out * in, dz, &one, old + out * in, lr, wd);
}

MLP_VECTOR_CLONES static int step_check(const step_rule *r, size_t n, float *w, float *m, float *v,
                                        float *grads, uint32_t keep)
{
    return step_pass(r, n, w, m, v, grads, keep, CHECK, NULL, NULL, NULL);
}

MLP_VECTOR_CLONES static void step_store(const step_rule *r, size_t n, float *w, float *m, float *v,
                                         float *grads, uint32_t keep)
{
    step_pass(r, n, w, m, v, grads, keep, STORE, NULL, NULL, NULL);
}

MLP_VECTOR_CLONES static int step_into(const step_rule *r, size_t n, float *w, float *m, float *v,
                                       float *grads, uint32_t keep, float *wo, float *mo, float *vo)
{
    return step_pass(r, n, w, m, v, grads, keep, INTO, wo, mo, vo);
}

/* Up to this many parameters a step computes into the stack and copies
 * the result back if it is finite: one pass instead of two, which is most
 * of a tiny network's step. */
#define SMALL_STEP_PARAMS 256

static int step_small(mlp *net, const step_rule *rule, uint32_t keep)
{
    float wo[SMALL_STEP_PARAMS], mo[SMALL_STEP_PARAMS], vo[SMALL_STEP_PARAMS];
    size_t n = net->n_params, bytes = n * sizeof(float);
    if (step_into(rule, n, net->params, net->moment1, net->moment2, net->grads, keep, wo, mo, vo))
        return 1;
    memcpy(net->params, wo, bytes);
    if (net->moment1 && rule->kind != MLP_OPT_SGD)
        memcpy(net->moment1, mo, bytes);
    if (net->moment2 && (rule->kind == MLP_OPT_ADAM || rule->kind == MLP_OPT_ADAMW))
        memcpy(net->moment2, vo, bytes);
    memset(net->grads, 0, bytes);
    return 0;
}

#ifdef _OPENMP
/* A moment buffer from parameter lo on; a kind that does not use it may
 * have none (NULL), and NULL takes no offset. */
static float *from(float *moment, size_t lo)
{
    return moment ? moment + lo : NULL;
}
#endif

/* The two passes over all parameters, all or nothing: returns nonzero,
 * having stored nothing, if any new value would not be finite. With
 * threads, in one parallel region: each checks its contiguous range, they
 * meet at a barrier, and each stores its range if no range failed. */
static int step_all(mlp *net, const step_rule *rule, uint32_t keep)
{
    size_t n = net->n_params;
    float *w = net->params, *m = net->moment1, *v = net->moment2, *g = net->grads;
#ifdef _OPENMP
    if (n >= PARALLEL_PARAMS && omp_get_max_threads() > 1) {
        int bad = 0;
#pragma omp parallel
        {
            size_t t = (size_t)omp_get_thread_num(), ranges = (size_t)omp_get_num_threads();
            size_t width = (n + ranges - 1) / ranges, lo = t * width;
            size_t len = lo < n ? (n - lo < width ? n - lo : width) : 0;
            int mine =
                len ? step_check(rule, len, w + lo, from(m, lo), from(v, lo), g + lo, keep) : 0;
            if (mine) {
#pragma omp atomic
                bad |= mine;
            }
#pragma omp barrier
            int any;
#pragma omp atomic read
            any = bad;
            if (!any && len)
                step_store(rule, len, w + lo, from(m, lo), from(v, lo), g + lo, keep);
        }
        return bad;
    }
#endif
    if (step_check(rule, n, w, m, v, g, keep))
        return 1;
    step_store(rule, n, w, m, v, g, keep);
    return 0;
}

mlp_status mlp_step(mlp *net, const mlp_optimizer *opt)
{
    if (!net || !opt || !mlp_optimizer_ok(opt))
        return MLP_ERR_INVALID;
    if (!net->grads_pending)
        return MLP_ERR_STATE;
    mlp_status st = reserve_moments(net, opt->kind);
    if (st != MLP_OK)
        return st;

    step_rule rule = make_rule(net, opt, mlp_step_number(net, opt->kind));
    /* Two passes, all or nothing: the first computes every new value and
     * only checks that it is finite (a NaN gradient, or an update that
     * overflows a weight or g^2); the second, identical, stores them.
     * A new kind starts from zero moments: read as zero, written there. */
    uint32_t keep = (int)opt->kind != net->opt_kind ? 0u : ~0u;
    if (net->n_params <= SMALL_STEP_PARAMS) {
        if (step_small(net, &rule, keep))
            return MLP_ERR_NONFINITE;
    } else {
        if (step_all(net, &rule, keep))
            return MLP_ERR_NONFINITE;
    }
    mlp_record_step(net, opt->kind);
    return MLP_OK;
}
