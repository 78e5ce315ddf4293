/* Built-in loss vtables. Losses are means over the batch (see mlp.h), summed
 * in double; gradients are of that mean. */
#include "internal.h"

#include <math.h>

#define UNUSED(x) (void)(x)

/* Keeps log finite where an unfused probability reaches 0 or 1 in float. */
#define PROB_CLAMP 1e-7

/* ---- mean squared error ------------------------------------------------ */

static double mse_loss(const mlp_loss *self, size_t rows, size_t cols, const float *y,
                       const float *target, float *grad_y)
{
    UNUSED(self);
    size_t n = rows * cols;
    double sum = 0.0, scale = 2.0 / (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - target[i];
        sum += d * d;
        if (grad_y)
            grad_y[i] = (float)(scale * d);
    }
    return sum / (double)n;
}

/* ---- binary cross-entropy ---------------------------------------------- */

static double bce_loss(const mlp_loss *self, size_t rows, size_t cols, const float *y,
                       const float *target, float *grad_y)
{
    UNUSED(self);
    size_t n = rows * cols;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double p = fmin(fmax((double)y[i], PROB_CLAMP), 1.0 - PROB_CLAMP), t = target[i];
        sum -= t * log(p) + (1.0 - t) * log(1.0 - p);
        /* Where the clamp holds, the loss is flat in y: its gradient is 0. */
        if (grad_y)
            grad_y[i] = p == y[i] ? (float)((p - t) / (p * (1.0 - p)) / (double)n) : 0.0f;
    }
    return sum / (double)n;
}

double mlp_bce_logits_value(size_t n, const float *z, const float *target)
{
    return mlp_bce_logits_n(n, z, target, NULL, true);
}

static double bce_logits(const mlp_loss *self, size_t rows, size_t cols, const float *z,
                         const float *target, float *grad_z)
{
    UNUSED(self);
    return mlp_bce_logits_n(rows * cols, z, target, grad_z, true);
}

/* ---- categorical cross-entropy ----------------------------------------- */

static double ce_loss(const mlp_loss *self, size_t rows, size_t cols, const float *y,
                      const float *target, float *grad_y)
{
    UNUSED(self);
    double sum = 0.0;
    for (size_t i = 0, n = rows * cols; i < n; i++) {
        double p = fmax((double)y[i], PROB_CLAMP);
        sum -= target[i] * log(p);
        if (grad_y)
            grad_y[i] = p == y[i] ? (float)(-target[i] / p / (double)rows) : 0.0f;
    }
    return sum / (double)rows;
}

/* With log p_c = z_c - lse(z), lse taken after subtracting the row max:
 * L = sum_c t_c (lse - z_c) and dL/dz_c = p_c sum(t) - t_c, with p_c =
 * e^(z_c - max) / sum_c' e^(z_c' - max): the same exponentials as the
 * sum, kept for rows of up to KEPT_EXPS outputs (else taken again, to the
 * same values) rather than e^(z_c - lse), one exp less per output. */
#define KEPT_EXPS 64
static double ce_logits(const mlp_loss *self, size_t rows, size_t cols, const float *z,
                        const float *target, float *grad_z)
{
    UNUSED(self);
    double sum = 0.0, kept[KEPT_EXPS];
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols, *tr = target + r * cols;
        double max = zr[0], exp_sum = 0.0, t_sum = 0.0;
        for (size_t c = 1; c < cols; c++)
            max = fmax(max, zr[c]);
        for (size_t c = 0; c < cols; c++) {
            double e = exp(zr[c] - max);
            if (c < KEPT_EXPS)
                kept[c] = e;
            exp_sum += e;
            t_sum += tr[c];
        }
        double lse = max + log(exp_sum);
        for (size_t c = 0; c < cols; c++) {
            sum += tr[c] * (lse - zr[c]);
            if (grad_z) {
                double p = (c < KEPT_EXPS ? kept[c] : exp(zr[c] - max)) / exp_sum;
                grad_z[r * cols + c] = (float)((p * t_sum - tr[c]) / (double)rows);
            }
        }
    }
    return sum / (double)rows;
}

const mlp_loss mlp_mse = {MLP_LOSS_ABI, "mse", mse_loss, NULL, NULL, NULL};
const mlp_loss mlp_bce = {MLP_LOSS_ABI, "bce", bce_loss, &mlp_sigmoid, bce_logits, NULL};
const mlp_loss mlp_cross_entropy = {MLP_LOSS_ABI, "cross_entropy", ce_loss,
                                    &mlp_softmax, ce_logits,       NULL};
