/* Optimizers: the update rules documented at mlp_optimizer in mlp.h. State
 * (moments, step count) lives in the network so a step is just a call. */
#include "internal.h"

#include <math.h>
#include <string.h>

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

static bool unit_interval(double v)
{
    return v >= 0.0 && v < 1.0;
}

static bool optimizer_ok(const mlp_optimizer *opt)
{
    if (opt->kind < MLP_OPT_SGD || opt->kind > MLP_OPT_ADAMW)
        return false;
    /* Comparisons are false for NaN, and the upper bound rejects infinity. */
    bool ok = opt->learning_rate > 0.0 && opt->learning_rate <= 1e6 && opt->weight_decay >= 0.0 &&
              opt->weight_decay <= 1e6 && opt->clip_norm >= 0.0 && opt->clip_norm <= 1e30;
    switch (opt->kind) {
    case MLP_OPT_MOMENTUM:
    case MLP_OPT_NESTEROV: return ok && unit_interval(opt->momentum);
    case MLP_OPT_RMSPROP:
        return ok && unit_interval(opt->rho) && opt->epsilon > 0.0 && opt->epsilon <= 1.0;
    case MLP_OPT_ADAM:
    case MLP_OPT_ADAMW:
        return ok && unit_interval(opt->beta1) && unit_interval(opt->beta2) && opt->epsilon > 0.0 &&
               opt->epsilon <= 1.0;
    default: return ok;
    }
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

/* Makes sure the moments exist, zeroed, when the kind changes. Allocates
 * first and changes nothing if that fails. */
static mlp_status prepare_state(mlp *net, mlp_optimizer_kind kind)
{
    if ((int)kind == net->opt_kind)
        return MLP_OK;
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
    net->moment1 = m1;
    net->moment2 = m2;
    if (m1)
        memset(m1, 0, net->n_params * sizeof(float));
    if (m2)
        memset(m2, 0, net->n_params * sizeof(float));
    net->opt_kind = (int)kind;
    net->opt_steps = 0;
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

mlp_status mlp_step(mlp *net, const mlp_optimizer *opt)
{
    if (!net || !opt || !optimizer_ok(opt))
        return MLP_ERR_INVALID;
    if (!net->grads_pending)
        return MLP_ERR_STATE;
    mlp_status st = prepare_state(net, opt->kind);
    if (st != MLP_OK)
        return st;

    uint64_t t = net->opt_steps + 1;
    float scale = clip_scale(net, opt->clip_norm);
    float lr = (float)opt->learning_rate;
    /* AdamW decays the weight directly; every other kind adds wd * w to g. */
    float wd = opt->kind == MLP_OPT_ADAMW ? 0.0f : (float)opt->weight_decay;
    float decay =
        opt->kind == MLP_OPT_ADAMW ? (float)(1.0 - opt->learning_rate * opt->weight_decay) : 1.0f;
    float mu = (float)opt->momentum, eps = (float)opt->epsilon;
    /* Each decay and its complement rounded from double separately, so the
     * complement of beta2 = 0.999 is not 1 - (float)0.999. */
    float rho = (float)opt->rho, one_minus_rho = (float)(1.0 - opt->rho);
    float b1 = (float)opt->beta1, one_minus_b1 = (float)(1.0 - opt->beta1);
    float b2 = (float)opt->beta2, one_minus_b2 = (float)(1.0 - opt->beta2);
    /* Adam's bias corrections folded into two constants (Kingma & Ba, end
     * of section 2): w -= lr_t m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
    double t_d = (double)t;
    float lr_t = (float)(opt->learning_rate / (1.0 - pow(opt->beta1, t_d)));
    float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(opt->beta2, t_d)));

    float *w = net->params, *m = net->moment1, *v = net->moment2;
    const float *grads = net->grads;
    for (size_t i = 0, n = net->n_params; i < n; i++) {
        float g = grads[i] * scale + wd * w[i];
        switch (opt->kind) {
        case MLP_OPT_SGD: w[i] -= lr * g; break;
        case MLP_OPT_MOMENTUM:
            m[i] = mu * m[i] + g;
            w[i] -= lr * m[i];
            break;
        case MLP_OPT_NESTEROV:
            m[i] = mu * m[i] + g;
            w[i] -= lr * (g + mu * m[i]);
            break;
        case MLP_OPT_RMSPROP:
            m[i] = rho * m[i] + one_minus_rho * g * g;
            w[i] -= lr * g / (sqrtf(m[i]) + eps);
            break;
        case MLP_OPT_ADAM:
        case MLP_OPT_ADAMW:
            w[i] *= decay;
            m[i] = b1 * m[i] + one_minus_b1 * g;
            v[i] = b2 * v[i] + one_minus_b2 * g * g;
            w[i] -= lr_t * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
            break;
        }
    }
    net->opt_steps = t;
    net->forward_pending = false;
    return mlp_zero_grad(net);
}
