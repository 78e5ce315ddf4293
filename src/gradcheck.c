/* Gradient checking: mlp_backward against finite differences of the loss.
 *
 * Float forward passes limit what differences can resolve, so the check
 * (1) uses Richardson extrapolation of two central differences, which
 * cancels the O(h^2) truncation error and lets the step be large against
 * rounding; (2) compares on a floor below which float cannot tell values
 * apart; (3) shrinks the step, then skips the parameter, when the loss is
 * not smooth within it: a step moves a pre-activation of a kinked
 * activation (ReLU at 0) across the kink, or the two quotients disagree. */
#include "internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Relative finite-difference step: large enough that float rounding of the
 * loss stays small against the change it measures. */
#define STEP 1e-2f
/* The float forward pass rounds the loss by up to this many ulps of its
 * magnitude (measured: a few hundred); differences below that are noise. */
#define ROUNDING_ULPS 1024.0

/* Whether an activation's derivative jumps at z = 0, probed with its own
 * backward on either side. Only such activations make a sign change of z
 * spoil a difference quotient; smooth ones (sigmoid, GELU, ELU...) don't. */
static bool kinked_at_zero(const mlp_activation *act)
{
    const float z[2] = {-1e-3f, 1e-3f}, one[2] = {1.0f, 1.0f};
    float a[2], slope[2];
    for (int i = 0; i < 2; i++) {
        act->forward(act, 1, 1, &z[i], &a[i]);
        act->backward(act, 1, 1, &z[i], &a[i], &one[i], &slope[i]);
    }
    return !(fabsf(slope[1] - slope[0]) <= 1e-2f * fmaxf(1.0f, fabsf(slope[1])));
}

typedef struct workspace {
    float *saved, *analytic, *grad; /* grad: scratch for the loss */
    mlp_work layers;                /* for mlp_run_layers */
    unsigned char *signs;           /* 2 x batch * total units */
    bool *kinked;                   /* one per layer */
} workspace;

/* Loss at the current parameters without touching the training cache;
 * signs receives the kinked layers' pre-activation signs. */
static double eval_loss(const mlp *net, const mlp_loss *loss, size_t batch, const float *x,
                        const float *target, const workspace *ws, unsigned char *signs)
{
    const float *a = mlp_run_layers(net, batch, x, ws->layers, NULL, signs, ws->kinked);
    const mlp_dense *last = &net->layers[net->n_layers - 1];
    /* The output layer's z is at the start of the layer workspace. A
     * scratch gradient is passed so a user's loss never sees NULL. */
    return mlp_loss_eval(loss, last->activation, batch, last->units, ws->layers.data, a, target,
                         ws->grad, NULL, true);
}

/* The analytic gradient of this batch alone, leaving the accumulated
 * gradients and the forward state as they were documented to be. */
static mlp_status analytic_grads(mlp *net, const mlp_loss *loss, size_t batch, const float *x,
                                 const float *target, const workspace *ws)
{
    size_t bytes = net->n_params * sizeof(float);
    bool pending = net->grads_pending;
    memcpy(ws->saved, net->grads, bytes);
    mlp_zero_grad(net);
    mlp_status st = mlp_forward(net, batch, x, NULL);
    if (st == MLP_OK)
        st = mlp_backward(net, loss, target, NULL);
    memcpy(ws->analytic, net->grads, bytes);
    memcpy(net->grads, ws->saved, bytes);
    net->grads_pending = pending;
    net->forward_pending = false;
    return st;
}

static mlp_status alloc_workspace(const mlp *net, size_t batch, workspace *ws)
{
    size_t n = net->n_params, units = batch * mlp_total_units(net);
    size_t outputs = batch * net->layers[net->n_layers - 1].units;
    memset(ws, 0, sizeof *ws);
    size_t layers = 3 * batch * net->max_width + mlp_kernel_workspace(net, batch);
    ws->saved = mlp_alloc(&net->allocator, 2 * n + layers + outputs, sizeof(float));
    ws->signs = mlp_alloc(&net->allocator, 2 * units + net->n_layers, 1);
    if (!ws->saved || !ws->signs) {
        mlp_dealloc(&net->allocator, ws->saved);
        mlp_dealloc(&net->allocator, ws->signs);
        return MLP_ERR_NOMEM;
    }
    ws->analytic = ws->saved + n;
    ws->layers = (mlp_work){ws->analytic + n, layers};
    ws->grad = ws->layers.data + layers;
    memset(ws->signs, 0, 2 * units); /* smooth layers' entries stay 0 */
    ws->kinked = (bool *)(ws->signs + 2 * units);
    for (size_t l = 0; l < net->n_layers; l++)
        ws->kinked[l] = kinked_at_zero(net->layers[l].activation);
    return MLP_OK;
}

/* One difference quotient at step h: (L(w + h) - L(w - h)) / step, with
 * the step as represented. Returns false if a kinked pre-activation changed
 * sign between the two points. */
typedef struct quotient {
    double value, noise;
    bool crossed, finite;
} quotient;

static quotient difference(mlp *net, size_t i, float h, const mlp_loss *loss, size_t batch,
                           const float *x, const float *target, const workspace *ws)
{
    size_t units = batch * mlp_total_units(net);
    float *p = &net->params[i], w = *p, w_plus = w + h, w_minus = w - h;
    *p = w_plus;
    double loss_plus = eval_loss(net, loss, batch, x, target, ws, ws->signs);
    *p = w_minus;
    double loss_minus = eval_loss(net, loss, batch, x, target, ws, ws->signs + units);
    *p = w;
    double step = (double)w_plus - (double)w_minus;
    quotient q;
    q.finite = isfinite(loss_plus) && isfinite(loss_minus);
    q.crossed = memcmp(ws->signs, ws->signs + units, units) != 0;
    q.value = (loss_plus - loss_minus) / step;
    q.noise = ROUNDING_ULPS * FLT_EPSILON * fmax(fabs(loss_plus), fabs(loss_minus)) / step;
    return q;
}

mlp_status mlp_gradcheck_ex(mlp *net, const mlp_loss *loss, size_t batch, const float *x,
                            const float *target, mlp_gradcheck_result *result)
{
    if (!net || !x || !target || !result || mlp_check_loss(loss) != MLP_OK ||
        !mlp_batch_ok(net, batch))
        return MLP_ERR_INVALID;
    workspace ws;
    mlp_status st = alloc_workspace(net, batch, &ws);
    if (st != MLP_OK)
        return st;
    st = analytic_grads(net, loss, batch, x, target, &ws);

    mlp_gradcheck_result found = {0.0, 0, 0, 0, 0, 0.0};
    for (size_t i = 0; i < net->n_params; i++)
        found.max_abs_grad = fmax(found.max_abs_grad, fabs(ws.analytic[i]));
    for (size_t i = 0; i < net->n_params && st == MLP_OK; i++) {
        float h = STEP * fmaxf(1.0f, fabsf(net->params[i]));
        bool compared = false;
        for (int attempt = 0; attempt < 3 && !compared; attempt++, h *= 0.1f) {
            quotient full = difference(net, i, h, loss, batch, x, target, &ws);
            quotient half = difference(net, i, 0.5f * h, loss, batch, x, target, &ws);
            if (!full.finite || !half.finite) {
                st = MLP_ERR_NONFINITE;
                break;
            }
            if (full.crossed || half.crossed)
                continue;
            /* On a smooth loss the two quotients differ by O(h^2); far apart
             * means a kink inside the step that no activation announced (a
             * clamp in a loss, a user activation bending elsewhere). */
            if (fabs(full.value - half.value) >
                0.1 * fmax(fabs(full.value), fabs(half.value)) + full.noise + half.noise)
                continue;
            /* Richardson: (4 D(h/2) - D(h)) / 3 cancels the h^2 term; its
             * rounding noise combines the two quotients' the same way. */
            double numeric = (4.0 * half.value - full.value) / 3.0;
            double noise = (4.0 * half.noise + full.noise) / 3.0;
            double a = ws.analytic[i];
            double resolvable = fmax(1e-3 * found.max_abs_grad, noise);
            double scale = fmax(fmax(fabs(a), fabs(numeric)), resolvable);
            double err = a == numeric ? 0.0 : fabs(a - numeric) / scale;
            if (err > found.max_rel_err) {
                found.max_rel_err = err;
                found.worst_param = i;
            }
            /* Measured: rounding moves a quotient by at most ~25 ulps of the
             * loss, so a value above 64 of them is told apart from zero. */
            found.resolved += fmax(fabs(a), fabs(numeric)) > noise * (64.0 / ROUNDING_ULPS);
            compared = true;
        }
        found.checked += compared;
        found.skipped += !compared && st == MLP_OK;
    }
    mlp_dealloc(&net->allocator, ws.saved);
    mlp_dealloc(&net->allocator, ws.signs);
    /* Agreement where nothing could be measured proves nothing. */
    if (found.resolved == 0)
        found.max_rel_err = NAN;
    if (st == MLP_OK)
        *result = found;
    return st;
}

mlp_status mlp_gradcheck(mlp *net, const mlp_loss *loss, size_t batch, const float *x,
                         const float *target, double *max_rel_err)
{
    if (!max_rel_err)
        return MLP_ERR_INVALID;
    mlp_gradcheck_result result;
    mlp_status st = mlp_gradcheck_ex(net, loss, batch, x, target, &result);
    if (st == MLP_OK)
        *max_rel_err = result.max_rel_err;
    return st;
}
