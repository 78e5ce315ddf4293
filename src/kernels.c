/* The dense-layer products, routed to the best kernel for the shape and the
 * processor: tiny products run as plain loops (no packing, no dispatch: the
 * XOR and control-loop case), single samples as matrix-vector products,
 * batches through the packed GEMM of gemm.c, built for AVX-512, AVX2+FMA
 * and plain C and chosen by what the processor supports. */
#include "internal.h" /* mlp_all_finite */
#include "kernels.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef MLP_HAVE_CBLAS
#include <cblas.h>
#endif

/* Below this many multiply-adds a product runs as plain loops: packing
 * would cost more than it saves. */
#define DIRECT_MADDS 4096
/* From this many multiply-adds a product is shared among threads (with
 * OpenMP), if each element of it takes at least PARALLEL_DEPTH of them or
 * the product is 16 times as large: a shallow product is mostly writing
 * its result, and waking the threads costs more than they save (a 10-unit
 * output layer's dL/dx, 64 x 128 x 10, takes 1.0 us on one thread, 1.9 on
 * two). */
#define PARALLEL_MADDS (1u << 16)
#define PARALLEL_DEPTH 16
/* Threads split C by blocks of this many columns, a multiple of every tile
 * width (8, 16, 32) so only the last block has edge tiles, and what is left
 * by blocks of this many rows (a multiple of the AVX-512 and portable tile
 * heights, 8 and 4; with AVX2's 6 a share may end in an edge tile). Each
 * element is still summed over k in the same order as on one thread, edge
 * tile or not: results do not depend on the number of threads. */
#define COLUMN_BLOCK 32
#define ROW_BLOCK 8

typedef struct kernel_set {
    size_t (*workspace)(size_t n);
    void (*gemm)(size_t m, size_t n, size_t k, const mlp_matrix *a, const mlp_matrix *b, float *c,
                 size_t ldc, int add, const mlp_epilogue *epi, size_t col0, float *work);
    void (*gemv)(size_t out, size_t in, const float *w, const float *x, float *y);
} kernel_set;

static const kernel_set *kernels(void)
{
    static const kernel_set generic = {mlp_gemm_workspace_generic, mlp_gemm_generic,
                                       mlp_gemv_generic};
#ifdef MLP_X86_KERNELS
    static const kernel_set avx512 = {mlp_gemm_workspace_avx512, mlp_gemm_avx512, mlp_gemv_avx512};
    static const kernel_set avx2 = {mlp_gemm_workspace_avx2, mlp_gemm_avx2, mlp_gemv_avx2};
    if (__builtin_cpu_supports("avx512f"))
        return &avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &avx2;
#endif
    return &generic;
}

static int use_gemm(size_t rows, size_t in, size_t out)
{
    return rows > 1 && rows * in * out > DIRECT_MADDS;
}

static size_t max_threads(void)
{
#ifdef _OPENMP
    return (size_t)omp_get_max_threads();
#else
    return 1;
#endif
}

size_t mlp_dense_workspace(size_t rows, size_t in, size_t out)
{
    if (!use_gemm(rows, in, out))
        return 0;
    size_t threads = rows * in * out >= PARALLEL_MADDS ? max_threads() : 1;
    return threads * kernels()->workspace(in > out ? in : out);
}

#ifdef MLP_HAVE_CBLAS
/* An operand of rows x cols as CBLAS sees it: row-major, transposed if its
 * rows are the unit stride. The layer products always have one unit
 * stride; a single row or column may have two, and then the stride that
 * does not matter must still satisfy CBLAS (ld >= the row's length). */
static enum CBLAS_TRANSPOSE blas_op(const mlp_matrix *x, size_t rows, size_t cols, int *ld)
{
    if (x->col_stride == 1) {
        *ld = (int)(rows > 1 ? x->row_stride : cols);
        return CblasNoTrans;
    }
    *ld = (int)(cols > 1 ? x->col_stride : rows);
    return CblasTrans;
}
#endif

/* Rows [0, m) of C, columns [j0, j1), set to bias[j0, j1): for a product
 * that adds to them, on the thread that computes those columns. */
static void set_bias(size_t m, size_t j0, size_t j1, const float *bias, float *c, size_t ldc)
{
    for (size_t r = 0; bias && r < m; r++)
        memcpy(c + r * ldc + j0, bias + j0, (j1 - j0) * sizeof(float));
}

#ifndef MLP_HAVE_CBLAS
/* Rows [r0, r1) x columns [j0, j1) of the product on the calling thread:
 * their bias first, then A's rows times B's columns, then the epilogue on
 * them, which reports into *bad. */
static void gemm_block(const kernel_set *ks, size_t r0, size_t r1, size_t j0, size_t j1, size_t k,
                       const mlp_matrix *a, const mlp_matrix *b, float *c, size_t ldc, int add,
                       const float *bias, const mlp_epilogue *epi, float *work, int *bad)
{
    if (r0 >= r1 || j0 >= j1)
        return;
    mlp_epilogue own = epi ? *epi : (mlp_epilogue){0};
    own.nonfinite = epi && epi->nonfinite ? bad : NULL;
    own.out = own.out ? own.out + r0 * own.ld : NULL; /* the epilogue's operands from row r0 */
    own.z = own.z ? own.z + r0 * own.ld : NULL;
    own.a = own.a ? own.a + r0 * own.ld : NULL;
    float *rows = c + r0 * ldc;
    set_bias(r1 - r0, j0, j1, bias, rows, ldc);
    const mlp_matrix ap = {a->data + r0 * a->row_stride, a->row_stride, a->col_stride};
    const mlp_matrix bp = {b->data + j0 * b->col_stride, b->row_stride, b->col_stride};
    ks->gemm(r1 - r0, j1 - j0, k, &ap, &bp, rows + j0, ldc, add, epi ? &own : NULL, j0, work);
}
#endif

/* C = A B (+ C if add), then the epilogue, through the chosen kernels, on
 * several threads when it is large and the workspace holds a packing set
 * for each. With bias, C first has it in every row (and add is set). */
static void gemm(size_t m, size_t n, size_t k, const mlp_matrix *a, const mlp_matrix *b, float *c,
                 size_t ldc, int add, const float *bias, const mlp_epilogue *epi, mlp_work work)
{
#ifdef MLP_HAVE_CBLAS
    /* Shapes are bounded by MLP_MAX_UNITS and MLP_MAX_BATCH: they fit int. */
    int lda, ldb;
    enum CBLAS_TRANSPOSE op_a = blas_op(a, m, k, &lda), op_b = blas_op(b, k, n, &ldb);
    set_bias(m, 0, n, bias, c, ldc);
    cblas_sgemm(CblasRowMajor, op_a, op_b, (int)m, (int)n, (int)k, 1.0f, a->data, lda, b->data, ldb,
                add ? 1.0f : 0.0f, c, (int)ldc);
    if (epi)
        mlp_epilogue_block(epi, 0, 0, m, n, c, ldc);
    (void)work;
#else
    const kernel_set *ks = kernels();
    size_t per_thread = ks->workspace(n);
    size_t threads = max_threads();
    threads = threads < work.floats / per_thread ? threads : work.floats / per_thread;
    /* Each thread takes whole blocks of columns, as many as every thread
     * can; the blocks left over are shared by rows, so that no thread waits
     * for another's extra block (or, with too few rows, go whole to the
     * first threads). */
    size_t blocks = (n + COLUMN_BLOCK - 1) / COLUMN_BLOCK, whole = threads ? blocks / threads : 0;
    int by_rows = m >= threads * ROW_BLOCK;
    size_t madds = m * n * k;
    if (threads > 1 && madds >= PARALLEL_MADDS &&
        (k >= PARALLEL_DEPTH || madds >= 16 * PARALLEL_MADDS) && (whole > 0 || by_rows)) {
        size_t width = whole * COLUMN_BLOCK, rest = threads * width < n ? threads * width : n;
        size_t height = (m / ROW_BLOCK + threads - 1) / threads * ROW_BLOCK;
        int bad = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads((int)threads) schedule(static, 1) reduction(| : bad)
#endif
        for (size_t t = 0; t < threads; t++) {
            int mine = 0; /* each thread's epilogue reports into its own flag */
            float *own = work.data + t * per_thread;
            gemm_block(ks, 0, m, t * width, (t + 1) * width < n ? (t + 1) * width : n, k, a, b, c,
                       ldc, add, bias, epi, own, &mine);
            if (by_rows) {
                size_t r0 = t * height, r1 = t + 1 == threads || r0 + height > m ? m : r0 + height;
                gemm_block(ks, r0 < m ? r0 : m, r1, rest, n, k, a, b, c, ldc, add, bias, epi, own,
                           &mine);
            } else {
                size_t j0 = rest + t * COLUMN_BLOCK, j1 = j0 + COLUMN_BLOCK;
                gemm_block(ks, 0, m, j0 < n ? j0 : n, j1 < n ? j1 : n, k, a, b, c, ldc, add, bias,
                           epi, own, &mine);
            }
            bad |= mine;
        }
        if (bad)
            *epi->nonfinite = 1;
        return;
    }
    set_bias(m, 0, n, bias, c, ldc);
    ks->gemm(m, n, k, a, b, c, ldc, add, epi, 0, work.data);
#endif
}

void mlp_dense_forward(size_t rows, size_t in, size_t out, const float *x, const float *w,
                       const float *b, float *z, const mlp_epilogue *epi, mlp_work work)
{
    if (rows * in * out <= DIRECT_MADDS) {
        for (size_t r = 0; r < rows; r++)
            for (size_t o = 0; o < out; o++) {
                float sum = 0.0f;
                for (size_t i = 0; i < in; i++)
                    sum += x[r * in + i] * w[o * in + i];
                z[r * out + o] = b[o] + sum;
            }
    } else if (use_gemm(rows, in, out)) {
        const mlp_matrix xm = {x, in, 1}, wt = {w, 1, in}; /* W^T: (in, out) */
        gemm(rows, out, in, &xm, &wt, z, out, 1, b, epi, work);
        return; /* the epilogue ran tile by tile */
    } else {
        memcpy(z, b, out * sizeof(float));
        kernels()->gemv(out, in, w, x, z);
    }
    if (epi)
        mlp_epilogue_block(epi, 0, 0, rows, out, z, out);
}

/* max |v[i]| over finite values (NaN compares false and is skipped). */
static float largest_magnitude(const float *v, size_t n)
{
    float most = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float m = fabsf(v[i]);
        most = m > most ? m : most;
    }
    return most;
}

/* Whether mlp_dense_grad_params takes its step in the product's epilogue
 * for a layer of `in` inputs, rather than in a pass of its own: not when
 * the rows of W are a multiple of 4 KiB apart. The epilogue then reads and
 * writes 8 rows of W and 8 of dW that all fall in the same few sets of the
 * L1 cache (and alias in their low 12 bits): a 1024 x 1024 layer's dW and
 * step at batch 16 took 1250 us fused against 320 as product and pass. */
static int step_fuses(size_t in)
{
    return in % 1024 != 0;
}

/* The step on W and b as a pass over each (mlp_sgd_span). */
static int step_in_passes(const mlp_dense_step *step, size_t in, size_t out, float *dw, float *db)
{
    return mlp_sgd_span(out * in, step->w, dw, step->rule.lr, step->rule.wd) |
           mlp_sgd_span(out, step->b, db, step->rule.lr, step->rule.wd);
}

int mlp_dense_grad_params(size_t rows, size_t in, size_t out, const float *dz, const float *x,
                          float *dw, float *db, const mlp_dense_step *step, mlp_work work)
{
    int bad;
    if (rows == 1) { /* an outer product: written, not accumulated */
        for (size_t o = 0; o < out; o++) {
            db[o] = dz[o];
            for (size_t i = 0; i < in; i++)
                dw[o * in + i] = dz[o] * x[i];
        }
        /* Rounding is monotonic: every product is finite if the largest
         * is, so in + out values are checked rather than in * out. */
        bad = !mlp_all_finite(dz, out) || !mlp_all_finite(x, in) ||
              mlp_nonfinite(largest_magnitude(dz, out) * largest_magnitude(x, in));
    } else {
        memset(db, 0, out * sizeof *db);
        for (size_t r = 0; r < rows; r++)
            for (size_t o = 0; o < out; o++)
                db[o] += dz[r * out + o];
        bad = !mlp_all_finite(db, out);
        if (use_gemm(rows, in, out)) {
            /* dW checked, or the weights stepped, tile by tile on the
             * thread that computed it. */
            const mlp_dense_step *fused = step && step_fuses(in) ? step : NULL;
            float *w = fused ? fused->w : NULL;
            const mlp_sgd_rule *rule = fused ? &fused->rule : NULL;
            const mlp_epilogue finish = {MLP_FUSED_NONE, 0, w, NULL, NULL, in, &bad, rule};
            const mlp_matrix dzt = {dz, 1, out}, xm = {x, in, 1}; /* dz^T: (out, rows) */
            gemm(out, in, rows, &dzt, &xm, dw, in, 0, NULL, &finish, work);
            if (fused)
                return mlp_sgd_span(out, step->b, db, step->rule.lr, step->rule.wd) | bad;
            return step ? step_in_passes(step, in, out, dw, db) : bad;
        }
        memset(dw, 0, out * in * sizeof *dw);
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * in, *dzr = dz + r * out;
            for (size_t o = 0; o < out; o++) {
                float g = dzr[o];
                float *dwo = dw + o * in;
                for (size_t i = 0; i < in; i++)
                    dwo[i] += g * xr[i];
            }
        }
        bad |= !mlp_all_finite(dw, out * in);
    }
    /* a NaN or Inf among the gradients makes one among the new values */
    return step ? step_in_passes(step, in, out, dw, db) : bad;
}

void mlp_dense_grad_input(size_t rows, size_t in, size_t out, const float *dz, const float *w,
                          float *dx, const mlp_epilogue *epi, mlp_work work)
{
    if (use_gemm(rows, in, out)) {
        const mlp_matrix dzm = {dz, out, 1}, wm = {w, in, 1};
        gemm(rows, in, out, &dzm, &wm, dx, in, 0, NULL, epi, work);
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        float *dxr = dx + r * in;
        const float *dzr = dz + r * out;
        for (size_t i = 0; i < in; i++)
            dxr[i] = dzr[0] * w[i];
        for (size_t o = 1; o < out; o++) {
            const float *wo = w + o * in;
            for (size_t i = 0; i < in; i++)
                dxr[i] += dzr[o] * wo[i];
        }
    }
    if (epi)
        mlp_epilogue_block(epi, 0, 0, rows, in, dx, in);
}
