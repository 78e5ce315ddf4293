/* The three products of a dense layer, on row-major buffers. Summation order
 * is fixed, so results are bit-identical from run to run. */
#ifndef MLP_KERNELS_H
#define MLP_KERNELS_H

#include <stddef.h>

/* z = x W^T + b.  x: (rows, in), W: (out, in), b: (out), z: (rows, out). */
void mlp_dense_forward(size_t rows, size_t in, size_t out, const float *x, const float *w,
                       const float *b, float *z);

/* dW = dz^T x, db = column sums of dz (both overwritten).
 * dz: (rows, out), x: (rows, in), dW: (out, in), db: (out). */
void mlp_dense_grad_params(size_t rows, size_t in, size_t out, const float *dz, const float *x,
                           float *dw, float *db);

/* dx = dz W.  dz: (rows, out), W: (out, in), dx: (rows, in). */
void mlp_dense_grad_input(size_t rows, size_t in, size_t out, const float *dz, const float *w,
                          float *dx);

#endif
