/* The three products of a dense layer, on row-major buffers, and the
 * matrix kernels behind them. Summation order depends only on the shapes
 * (and the instruction set picked at run time), so results are
 * bit-identical from run to run on one machine. */
#ifndef MLP_KERNELS_H
#define MLP_KERNELS_H

#include <stddef.h>

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

/* z = x W^T + b.  x: (rows, in), W: (out, in), b: (out), z: (rows, out). */
void mlp_dense_forward(size_t rows, size_t in, size_t out, const float *x, const float *w,
                       const float *b, float *z, mlp_work work);

/* dW = dz^T x, db = column sums of dz (both overwritten).
 * dz: (rows, out), x: (rows, in), dW: (out, in), db: (out). */
void mlp_dense_grad_params(size_t rows, size_t in, size_t out, const float *dz, const float *x,
                           float *dw, float *db, mlp_work work);

/* dx = dz W.  dz: (rows, out), W: (out, in), dx: (rows, in). */
void mlp_dense_grad_input(size_t rows, size_t in, size_t out, const float *dz, const float *w,
                          float *dx, mlp_work work);

/* A matrix operand by its strides: element (i, j) is data[i * row_stride +
 * j * col_stride], so a transpose is a swap of the strides. */
typedef struct mlp_matrix {
    const float *data;
    size_t row_stride, col_stride;
} mlp_matrix;

/* One set per instruction set (gemm.c compiled with each suffix):
 * gemm:      C (m x n, leading dimension ldc) = A (m x k) B (k x n), plus C
 *            if add (else C is only written); work holds gemm_workspace(n)
 *            floats.
 * gemv:      y (out) += W (out x in, row-major) x (in). */
#define MLP_KERNEL_DECLARE(suffix)                                                                 \
    size_t mlp_gemm_workspace_##suffix(size_t n);                                                  \
    void mlp_gemm_##suffix(size_t m, size_t n, size_t k, const mlp_matrix *a, const mlp_matrix *b, \
                           float *c, size_t ldc, int add, float *work);                            \
    void mlp_gemv_##suffix(size_t out, size_t in, const float *w, const float *x, float *y)
MLP_KERNEL_DECLARE(generic);
MLP_KERNEL_DECLARE(avx2);
MLP_KERNEL_DECLARE(avx512);

#endif
