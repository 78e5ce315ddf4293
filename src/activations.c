/* Built-in activation vtables. Each forward sits next to its backward; all
 * buffers are (rows, cols) row-major. Element-wise activations treat the
 * batch as one flat array of n = rows * cols values. */
#include "internal.h"

#include <math.h>
#include <string.h>

#define UNUSED(x) (void)(x)

/* ---- identity ---------------------------------------------------------- */

static void identity_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                             float *a)
{
    UNUSED(self);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = z[i];
}

static void identity_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                              const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(z), UNUSED(a);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        grad_z[i] = grad_a[i];
}

/* ---- sigmoid ----------------------------------------------------------- */

static void sigmoid_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                            float *a)
{
    UNUSED(self);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = mlp_sigmoidf(z[i]);
}

static void sigmoid_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                             const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(z);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        grad_z[i] = grad_a[i] * a[i] * (1.0f - a[i]);
}

/* ---- tanh -------------------------------------------------------------- */

static void tanh_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                         float *a)
{
    UNUSED(self);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = tanhf(z[i]);
}

static void tanh_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                          const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(z);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        grad_z[i] = grad_a[i] * (1.0f - a[i]) * (1.0f + a[i]);
}

/* ---- ReLU and leaky ReLU ----------------------------------------------- */

static void relu_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                         float *a)
{
    UNUSED(self);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = z[i] > 0.0f ? z[i] : 0.0f;
}

/* The derivative is read off z, not a: it is 1 where z > 0 and 0 elsewhere
 * (0 at the kink, as in PyTorch). */
static void relu_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                          const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(a);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        grad_z[i] = z[i] > 0.0f ? grad_a[i] : 0.0f;
}

static const float leaky_slope = MLP_LEAKY_SLOPE;

static void leaky_relu_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                               float *a)
{
    float slope = *(const float *)self->data;
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = z[i] > 0.0f ? z[i] : slope * z[i];
}

static void leaky_relu_backward(const mlp_activation *self, size_t rows, size_t cols,
                                const float *z, const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(a);
    float slope = *(const float *)self->data;
    for (size_t i = 0, n = rows * cols; i < n; i++)
        grad_z[i] = z[i] > 0.0f ? grad_a[i] : slope * grad_a[i];
}

/* ---- ELU (alpha = 1) --------------------------------------------------- */

static void elu_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                        float *a)
{
    UNUSED(self);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = z[i] > 0.0f ? z[i] : expm1f(z[i]);
}

static void elu_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                         const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(a);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        grad_z[i] = z[i] > 0.0f ? grad_a[i] : grad_a[i] * expf(z[i]);
}

/* ---- softplus ---------------------------------------------------------- */

/* log(1 + e^z) = max(z, 0) + log1p(e^-|z|): no overflow for any z. */
static void softplus_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                             float *a)
{
    UNUSED(self);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = fmaxf(z[i], 0.0f) + log1pf(expf(-fabsf(z[i])));
}

static void softplus_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                              const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(a);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        grad_z[i] = grad_a[i] * mlp_sigmoidf(z[i]);
}

/* ---- GELU, exact form: z * Phi(z) -------------------------------------- */

static void gelu_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                         float *a)
{
    UNUSED(self);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = 0.5f * z[i] * (1.0f + erff(z[i] * 0.70710678f));
}

/* d/dz z Phi(z) = Phi(z) + z phi(z). */
static void gelu_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                          const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(a);
    for (size_t i = 0, n = rows * cols; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(z[i] * 0.70710678f));
        float pdf = 0.39894228f * expf(-0.5f * z[i] * z[i]);
        grad_z[i] = grad_a[i] * (cdf + z[i] * pdf);
    }
}

/* ---- SiLU: z * sigmoid(z) ---------------------------------------------- */

static void silu_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                         float *a)
{
    UNUSED(self);
    for (size_t i = 0, n = rows * cols; i < n; i++)
        a[i] = z[i] * mlp_sigmoidf(z[i]);
}

/* d/dz z s(z) = s + z s (1 - s). */
static void silu_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                          const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(a);
    for (size_t i = 0, n = rows * cols; i < n; i++) {
        float s = mlp_sigmoidf(z[i]);
        grad_z[i] = grad_a[i] * (s + z[i] * s * (1.0f - s));
    }
}

/* ---- softmax, per row -------------------------------------------------- */

/* Subtracting the row max makes every exponent <= 0: no overflow, and the
 * largest term is exactly 1 so the sum is >= 1. */
static void softmax_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                            float *a)
{
    UNUSED(self);
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        float *ar = a + r * cols;
        float max = zr[0];
        for (size_t c = 1; c < cols; c++)
            max = fmaxf(max, zr[c]);
        double sum = 0.0;
        for (size_t c = 0; c < cols; c++) {
            ar[c] = expf(zr[c] - max);
            sum += ar[c];
        }
        float inv = (float)(1.0 / sum);
        for (size_t c = 0; c < cols; c++)
            ar[c] *= inv;
    }
}

/* The Jacobian is diag(a) - a a^T, so grad_z = a * (grad_a - <grad_a, a>). */
static void softmax_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                             const float *a, const float *grad_a, float *grad_z)
{
    UNUSED(self), UNUSED(z);
    for (size_t r = 0; r < rows; r++) {
        const float *ar = a + r * cols, *gar = grad_a + r * cols;
        double dot = 0.0;
        for (size_t c = 0; c < cols; c++)
            dot += (double)gar[c] * ar[c];
        for (size_t c = 0; c < cols; c++)
            grad_z[r * cols + c] = ar[c] * (gar[c] - (float)dot);
    }
}

/* ---- the vtables ------------------------------------------------------- */

#define ACTIVATION(id, label, init_kind, constants)                                                \
    const mlp_activation mlp_##id = {MLP_ACTIVATION_ABI, label,     id##_forward,                  \
                                     id##_backward,      init_kind, constants}

ACTIVATION(identity, "identity", MLP_INIT_XAVIER, NULL);
ACTIVATION(sigmoid, "sigmoid", MLP_INIT_XAVIER, NULL);
ACTIVATION(tanh, "tanh", MLP_INIT_XAVIER, NULL);
ACTIVATION(relu, "relu", MLP_INIT_HE, NULL);
ACTIVATION(leaky_relu, "leaky_relu", MLP_INIT_HE, &leaky_slope);
ACTIVATION(elu, "elu", MLP_INIT_HE, NULL);
ACTIVATION(softplus, "softplus", MLP_INIT_XAVIER, NULL);
ACTIVATION(gelu, "gelu", MLP_INIT_HE, NULL);
ACTIVATION(silu, "silu", MLP_INIT_HE, NULL);
ACTIVATION(softmax, "softmax", MLP_INIT_XAVIER, NULL);

const mlp_activation *mlp_activation_by_name(const char *name)
{
    static const mlp_activation *const builtins[] = {
        &mlp_identity, &mlp_sigmoid,  &mlp_tanh, &mlp_relu, &mlp_leaky_relu,
        &mlp_elu,      &mlp_softplus, &mlp_gelu, &mlp_silu, &mlp_softmax,
    };
    for (size_t i = 0; name && i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(name, builtins[i]->name) == 0)
            return builtins[i];
    return NULL;
}

mlp_status mlp_check_activation(const mlp_activation *act)
{
    if (!act || act->abi_version != MLP_ACTIVATION_ABI || !act->name || !act->forward ||
        !act->backward ||
        (act->init != MLP_INIT_AUTO && act->init != MLP_INIT_XAVIER && act->init != MLP_INIT_HE))
        return MLP_ERR_INVALID;
    return MLP_OK;
}
