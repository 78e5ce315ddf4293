/* The three products of a dense layer, on row-major buffers, the matrix
 * kernels behind them, and the element-wise work they do on each finished
 * block (the epilogue: built-in activations and NaN/Inf checks). Summation order depends only on
 * the shapes (and the instruction set picked at run time), so results are bit-identical from run to
 * run on one machine. */
#ifndef MLP_KERNELS_H
#define MLP_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The built-in element-wise activations, which the kernels apply to a
 * product as they finish each block of it (while it is in the L1 cache,
 * and on the thread that computed it). Any other activation runs through
 * its vtable after the product. */
typedef enum mlp_fused {
    MLP_FUSED_NONE,
    MLP_FUSED_IDENTITY,
    MLP_FUSED_RELU,
    MLP_FUSED_LEAKY_RELU,
    MLP_FUSED_SIGMOID,
    MLP_FUSED_TANH
} mlp_fused;

/* The slope of mlp_leaky_relu for z <= 0. */
#define MLP_LEAKY_SLOPE 0.01f

/* The logistic function, with two branches so exp never overflows: for
 * z < 0, e^z / (1 + e^z). */
static inline float mlp_sigmoidf(float z)
{
    if (z >= 0.0f)
        return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

/* 1 if x is NaN or Inf: its exponent bits all set. Integer work, so loops
 * that use it vectorise without reassociating any float arithmetic. */
static inline int mlp_nonfinite(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (bits & 0x7f800000u) == 0x7f800000u;
}

/* Plain SGD's update of one weight w with gradient g (mlp.h): g += wd w;
 * w -= lr g. One definition for mlp_step and the fused steps, so all round
 * alike (no file of the library contracts a multiply and an add into one
 * fused operation behind the code's back), and each operation rounded to
 * float by an assignment, as vector code rounds it, also where float
 * arithmetic runs in a wider format (x87: FLT_EVAL_METHOD 2). */
static inline float mlp_sgd(float w, float g, float lr, float wd)
{
    float decay = wd * w, sum = g + decay, step = lr * sum;
    return w - step;
}

typedef struct mlp_sgd_rule {
    float lr, wd;
} mlp_sgd_rule;

/* What a product does with its result C (rows x cols, leading dimension
 * ldc) as each block of it is finished, for an activation of kind kind
 * (MLP_FUSED_NONE: none):
 *   forward:  out = f(C);
 *   backward: C = C * f'(z), in place: C holds dL/da, and becomes dL/dz;
 *             z and a are the activation's input and output.
 * out, z and a have leading dimension ld. Then, if nonfinite is not NULL,
 * *nonfinite is set to 1 if C holds a NaN or Inf (and left alone if not),
 * while C is in the cache. A NULL epilogue does nothing.
 * With sgd (and kind MLP_FUSED_NONE), C is the gradient of the weights in
 * out, and each of them takes a step, w = mlp_sgd(w, C): out gets the new
 * weights, C the old ones (to put back if the step fails), and nonfinite
 * reports on the new weights. The weights are then stepped while their
 * gradients are in L1, just stored by the micro-kernel, and on the thread
 * that computed them, instead of in a pass of their own over memory. */
typedef struct mlp_epilogue {
    mlp_fused kind;
    int backward;
    float *out;
    const float *z, *a;
    size_t ld;
    int *nonfinite;
    const mlp_sgd_rule *sgd;
} mlp_epilogue;

/* The epilogue on rows [r0, r0 + rows) x columns [c0, c0 + cols) of C,
 * whose element (0, 0) is at c. Inline, so each kernel build vectorises it
 * for its own instruction set. The formulas are the vtables'. */
static inline void mlp_epilogue_block(const mlp_epilogue *e, size_t r0, size_t c0, size_t rows,
                                      size_t cols, float *c, size_t ldc)
{
    int bad = 0;
    for (size_t r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        size_t at = (r0 + r) * e->ld + c0;
        if (e->sgd) {
            float *restrict w = e->out + at, *restrict g = cr;
            float lr = e->sgd->lr, wd = e->sgd->wd;
            for (size_t j = 0; j < cols; j++) {
                float old = w[j], v = mlp_sgd(old, g[j], lr, wd);
                w[j] = v;
                g[j] = old;
                bad |= mlp_nonfinite(v);
            }
            continue;
        }
        if (e->kind != MLP_FUSED_NONE && !e->backward) {
            float *out = e->out + at;
            switch (e->kind) {
            case MLP_FUSED_RELU:
                for (size_t j = 0; j < cols; j++)
                    out[j] = cr[j] > 0.0f ? cr[j] : 0.0f;
                break;
            case MLP_FUSED_LEAKY_RELU:
                for (size_t j = 0; j < cols; j++)
                    out[j] = cr[j] > 0.0f ? cr[j] : MLP_LEAKY_SLOPE * cr[j];
                break;
            case MLP_FUSED_SIGMOID:
                for (size_t j = 0; j < cols; j++)
                    out[j] = mlp_sigmoidf(cr[j]);
                break;
            case MLP_FUSED_TANH:
                for (size_t j = 0; j < cols; j++)
                    out[j] = tanhf(cr[j]);
                break;
            default:
                for (size_t j = 0; j < cols; j++)
                    out[j] = cr[j];
                break;
            }
        } else if (e->kind != MLP_FUSED_NONE) {
            const float *z = e->z + at, *a = e->a + at;
            switch (e->kind) {
            case MLP_FUSED_RELU:
                for (size_t j = 0; j < cols; j++)
                    cr[j] = z[j] > 0.0f ? cr[j] : 0.0f;
                break;
            case MLP_FUSED_LEAKY_RELU:
                for (size_t j = 0; j < cols; j++)
                    cr[j] = z[j] > 0.0f ? cr[j] : MLP_LEAKY_SLOPE * cr[j];
                break;
            case MLP_FUSED_SIGMOID:
                for (size_t j = 0; j < cols; j++)
                    cr[j] = cr[j] * a[j] * (1.0f - a[j]);
                break;
            case MLP_FUSED_TANH:
                for (size_t j = 0; j < cols; j++)
                    cr[j] = cr[j] * (1.0f - a[j]) * (1.0f + a[j]);
                break;
            default: break;
            }
        }
        if (e->nonfinite)
            for (size_t j = 0; j < cols; j++)
                bad |= mlp_nonfinite(cr[j]);
    }
    if (bad && e->nonfinite)
        *e->nonfinite = 1;
}

/* Scratch memory for the products: packing buffers, one set per thread. */
typedef struct mlp_work {
    float *data;
    size_t floats;
} mlp_work;

/* Floats of workspace the three products of a layer need at this shape
 * (for as many threads as OpenMP may use now); 0 when they need none.
 * Given less, the products use fewer threads: the results are the same
 * for any thread count. */
size_t mlp_dense_workspace(size_t rows, size_t in, size_t out);

/* z = x W^T + b, then the epilogue (NULL: none) on z.
 * x: (rows, in), W: (out, in), b: (out), z: (rows, out). */
void mlp_dense_forward(size_t rows, size_t in, size_t out, const float *x, const float *w,
                       const float *b, float *z, const mlp_epilogue *epi, mlp_work work);

/* A layer's weights w (out, in) and biases b, to take a plain-SGD step. */
typedef struct mlp_dense_step {
    float *w, *b;
    mlp_sgd_rule rule;
} mlp_dense_step;

/* dW = dz^T x, db = column sums of dz (both overwritten); returns nonzero
 * if either holds a NaN or Inf (checked as they are computed).
 * With step (else NULL), the weights and biases then take a step on them,
 * w = mlp_sgd(w, dW) (for a batch, dW tile by tile as soon as it is
 * computed, unless W's rows are a multiple of 4 KiB long; on all OpenMP
 * threads): dW and db are left holding the old values, and the return
 * value reports NaN or Inf among the new ones (any among the gradients
 * makes one there).
 * dz: (rows, out), x: (rows, in), dW: (out, in), db: (out). */
int mlp_dense_grad_params(size_t rows, size_t in, size_t out, const float *dz, const float *x,
                          float *dw, float *db, const mlp_dense_step *step, mlp_work work);

/* dx = dz W, then the epilogue (NULL: none) on dx.
 * dz: (rows, out), W: (out, in), dx: (rows, in). */
void mlp_dense_grad_input(size_t rows, size_t in, size_t out, const float *dz, const float *w,
                          float *dx, const mlp_epilogue *epi, mlp_work work);

/* A matrix operand by its strides: element (i, j) is data[i * row_stride +
 * j * col_stride], so a transpose is a swap of the strides. */
typedef struct mlp_matrix {
    const float *data;
    size_t row_stride, col_stride;
} mlp_matrix;

/* One set per instruction set (gemm.c compiled with each suffix):
 * gemm:      C (m x n, leading dimension ldc) = A (m x k) B (k x n), plus C
 *            if add (else C is only written), then the epilogue (NULL:
 *            none) on C, whose element (0, 0) is its (0, col0); work
 *            holds gemm_workspace(n) floats.
 * gemv:      y (out) += W (out x in, row-major) x (in). */
#define MLP_KERNEL_DECLARE(suffix)                                                                 \
    size_t mlp_gemm_workspace_##suffix(size_t n);                                                  \
    void mlp_gemm_##suffix(size_t m, size_t n, size_t k, const mlp_matrix *a, const mlp_matrix *b, \
                           float *c, size_t ldc, int add, const mlp_epilogue *epi, size_t col0,    \
                           float *work);                                                           \
    void mlp_gemv_##suffix(size_t out, size_t in, const float *w, const float *x, float *y)
MLP_KERNEL_DECLARE(generic);
MLP_KERNEL_DECLARE(avx2);
MLP_KERNEL_DECLARE(avx512);

#endif
