#include "kernels.h"

#include <string.h>

/* Eight independent partial sums let the compiler vectorise the dot product
 * without reassociating float additions behind our back. */
static float dot(size_t n, const float *a, const float *b)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++)
            acc[k] += a[i + k] * b[i + k];
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

void mlp_dense_forward(size_t rows, size_t in, size_t out, const float *x, const float *w,
                       const float *b, float *z)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++)
            z[r * out + o] = b[o] + dot(in, x + r * in, w + o * in);
}

void mlp_dense_grad_params(size_t rows, size_t in, size_t out, const float *dz, const float *x,
                           float *dw, float *db)
{
    memset(dw, 0, out * in * sizeof *dw);
    memset(db, 0, out * sizeof *db);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * in, *dzr = dz + r * out;
        for (size_t o = 0; o < out; o++) {
            float g = dzr[o];
            float *dwo = dw + o * in;
            for (size_t i = 0; i < in; i++)
                dwo[i] += g * xr[i];
            db[o] += g;
        }
    }
}

void mlp_dense_grad_input(size_t rows, size_t in, size_t out, const float *dz, const float *w,
                          float *dx)
{
    memset(dx, 0, rows * in * sizeof *dx);
    for (size_t r = 0; r < rows; r++) {
        float *dxr = dx + r * in;
        for (size_t o = 0; o < out; o++) {
            float g = dz[r * out + o];
            const float *wo = w + o * in;
            for (size_t i = 0; i < in; i++)
                dxr[i] += g * wo[i];
        }
    }
}
