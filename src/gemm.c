/* Single-precision GEMM and GEMV for the dense layers.
 *
 * GEMM, C = op(A) op(B) (+ C), blocked for the caches and register-tiled
 * after Goto & van de Geijn, "Anatomy of High-Performance Matrix
 * Multiplication" (2008), as in BLIS:
 *
 *   for each KC-deep slice of k:          pack B's slice into NR-wide panels
 *     for each MC-tall block of rows:     pack A's block into MR-tall panels
 *       for each MR x NR tile:            micro-kernel, accumulators in registers
 *
 * Packing turns any layout (either operand transposed or not: any row and
 * column stride) into one contiguous stream for the micro-kernel, so one
 * code path serves the three products of a dense layer.
 *
 * This file is compiled once per instruction set (see meson.build) with
 * KERNEL_SUFFIX and the target flags set; kernels.c picks one at run time.
 * The tile follows the register file: 32 zmm registers hold 8 x 32
 * accumulators, 16 ymm hold 6 x 16. Summation order depends only on the
 * shapes, never on the data, so results are reproducible run to run. */
#include "kernels.h"

#include <string.h>

#ifndef KERNEL_SUFFIX
#define KERNEL_SUFFIX generic
#endif
#define KERNEL_CAT2(a, b) a##_##b
#define KERNEL_CAT(a, b) KERNEL_CAT2(a, b)
#define KERNEL_NAME(name) KERNEL_CAT(name, KERNEL_SUFFIX)

#if defined(__AVX512F__)
#include <immintrin.h>
#define MR 8
#define NR 32
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MR 6
#define NR 16
#else
#define MR 4
#define NR 8
#endif
/* A KC x NR panel of B (up to 32 KiB) stays in L1 while a block's tiles
 * stream past it; the MC x KC block of A (up to 64 KiB) stays in L2. */
#define KC 256
#define MC (MR * 8)

/* ---- packing ----------------------------------------------------------- */

/* The forward product reads both operands along k, so packing transposes
 * them: x into MR-tall panels, and the weights (the larger operand, packed
 * anew each call since they change every step) into NR-wide ones. Done an
 * element at a time, that was a quarter of a training step; the vector
 * versions below transpose 8 x 8 or 16 x 16 blocks in registers. */
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
/* dst[c * dld + r] = src[r * ld + c] for r, c < 8. */
static inline void transpose8(const float *src, size_t ld, float *dst, size_t dld)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(src + (size_t)i * ld);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* r[4g + q], in each 128-bit lane l: column 4l + q of rows 4g .. 4g + 3 */
    for (int g = 0; g < 8; g += 4) {
        r[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        r[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xee);
        r[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        r[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xee);
    }
    for (int q = 0; q < 4; q++) {
        _mm256_storeu_ps(dst + (size_t)q * dld, _mm256_permute2f128_ps(r[q], r[q + 4], 0x20));
        _mm256_storeu_ps(dst + (size_t)(q + 4) * dld, _mm256_permute2f128_ps(r[q], r[q + 4], 0x31));
    }
}
#define TRANSPOSE_BLOCK 8
#define transpose_block transpose8
#endif

#if defined(__AVX512F__)
/* dst[c * dld + r] = src[r * ld + c] for r, c < 16: as transpose8, then
 * the 128-bit lanes transposed as a 4 x 4 matrix in two more steps. */
static inline void transpose16(const float *src, size_t ld, float *dst, size_t dld)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + (size_t)i * ld);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {
        r[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
        r[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xee);
        r[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        r[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xee);
    }
    for (int q = 0; q < 4; q++) { /* lanes of rows 0-3, 4-7, 8-11, 12-15 */
        __m512 v0 = _mm512_shuffle_f32x4(r[q], r[q + 4], 0x44);
        __m512 v1 = _mm512_shuffle_f32x4(r[q], r[q + 4], 0xee);
        __m512 v2 = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0x44);
        __m512 v3 = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0xee);
        _mm512_storeu_ps(dst + (size_t)q * dld, _mm512_shuffle_f32x4(v0, v2, 0x88));
        _mm512_storeu_ps(dst + (size_t)(q + 4) * dld, _mm512_shuffle_f32x4(v0, v2, 0xdd));
        _mm512_storeu_ps(dst + (size_t)(q + 8) * dld, _mm512_shuffle_f32x4(v1, v3, 0x88));
        _mm512_storeu_ps(dst + (size_t)(q + 12) * dld, _mm512_shuffle_f32x4(v1, v3, 0xdd));
    }
}
#undef TRANSPOSE_BLOCK
#undef transpose_block
#define TRANSPOSE_BLOCK 16
#define transpose_block transpose16
#endif

/* Packs rows [0, mc) x columns [0, kc) of A into MR-tall panels, each laid
 * out column by column (MR consecutive floats per k), zero-padded. The
 * loops walk A along its unit stride, whichever that is: the packed panel
 * is small enough to take the scattered writes in L1. */
static void pack_a(size_t mc, size_t kc, const float *a, size_t rs, size_t cs, float *dst)
{
    for (size_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
        size_t rows = mc - i0 < MR ? mc - i0 : MR;
        if (rows < MR)
            memset(dst, 0, MR * kc * sizeof(float));
        if (cs == 1) {
            size_t p0 = 0;
#if MR == 8 && defined(TRANSPOSE_BLOCK)
            if (rows == MR)
                for (; p0 + 8 <= kc; p0 += 8)
                    transpose8(a + i0 * rs + p0, rs, dst + p0 * MR, MR);
#endif
            for (size_t i = 0; i < rows; i++)
                for (size_t p = p0; p < kc; p++)
                    dst[p * MR + i] = a[(i0 + i) * rs + p];
        } else {
            for (size_t p = 0; p < kc; p++)
                for (size_t i = 0; i < rows; i++)
                    dst[p * MR + i] = a[(i0 + i) * rs + p * cs];
        }
    }
}

/* Packs rows [0, kc) x columns [0, nc) of B into NR-wide panels, row by
 * row (NR consecutive floats per k), zero-padded; again along B's unit
 * stride. */
static void pack_b(size_t kc, size_t nc, const float *b, size_t rs, size_t cs, float *dst)
{
    size_t j0 = 0;
    if (cs == 1 && rs % 1024 == 0) {
        /* Rows 4 KiB apart share their L1 sets: a panel's 128 bytes from
         * each row leave the next lines, fetched with them, to be evicted
         * before the next panel reads them. Four panels at a time read 512
         * bytes of each row. */
        enum { GROUP = 4 };
        for (; j0 + GROUP * NR <= nc; j0 += GROUP * NR, dst += GROUP * NR * kc)
            for (size_t p = 0; p < kc; p++)
                for (size_t q = 0; q < GROUP; q++)
                    for (size_t j = 0; j < NR; j++)
                        dst[q * NR * kc + p * NR + j] = b[p * rs + j0 + q * NR + j];
    }
    for (; j0 < nc; j0 += NR, dst += NR * kc) {
        size_t cols = nc - j0 < NR ? nc - j0 : NR;
        if (cols < NR)
            memset(dst, 0, NR * kc * sizeof(float));
        if (cs == 1 && cols == NR) { /* a fixed-length copy: a few vector moves */
            for (size_t p = 0; p < kc; p++)
                for (size_t j = 0; j < NR; j++)
                    dst[p * NR + j] = b[p * rs + j0 + j];
        } else if (cs == 1) {
            for (size_t p = 0; p < kc; p++)
                memcpy(dst + p * NR, b + p * rs + j0, cols * sizeof(float));
        } else {
            size_t p0 = 0;
#ifdef TRANSPOSE_BLOCK
            /* Across the panel's rows first; with rows a multiple of 4 KiB
             * apart (1024 floats), down a block of rows first: all rows
             * then fall in the same L1 sets, and the lines prefetched after
             * the ones read are lost unless they are read next (a forward
             * product of 16 x 1024 x 1024: 294 -> 245 us; for other
             * strides the other order is 2-4% faster). */
            size_t end = cols == NR && rs == 1 ? kc / TRANSPOSE_BLOCK * TRANSPOSE_BLOCK : 0;
            if (cs % 1024 == 0)
                for (size_t j = 0; j < NR; j += TRANSPOSE_BLOCK)
                    for (p0 = 0; p0 < end; p0 += TRANSPOSE_BLOCK)
                        transpose_block(b + p0 + (j0 + j) * cs, cs, dst + p0 * NR + j, NR);
            else
                for (p0 = 0; p0 < end; p0 += TRANSPOSE_BLOCK)
                    for (size_t j = 0; j < NR; j += TRANSPOSE_BLOCK)
                        transpose_block(b + p0 + (j0 + j) * cs, cs, dst + p0 * NR + j, NR);
            p0 = end;
#endif
            for (size_t j = 0; j < cols; j++)
                for (size_t p = p0; p < kc; p++)
                    dst[p * NR + j] = b[p * rs + (j0 + j) * cs];
        }
    }
}

/* ---- micro-kernels: C (MR x NR, leading dimension ldc) = a b (+ C if add) */

/* Intrinsics, not vector-extension arrays: each accumulator is then its own
 * register for the whole loop, where arrays get spilled to the stack. */
#if defined(__AVX512F__)

#define TILE_LOAD(i)                                                                               \
    __m512 c##i##0 = add ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps(),                     \
           c##i##1 = add ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps()
#define TILE_FMA(i)                                                                                \
    do {                                                                                           \
        __m512 ai = _mm512_set1_ps(a[i]);                                                          \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                                                \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);                                                \
    } while (0)
#define TILE_STORE(i)                                                                              \
    do {                                                                                           \
        _mm512_storeu_ps(c + i * ldc, c##i##0);                                                    \
        _mm512_storeu_ps(c + i * ldc + 16, c##i##1);                                               \
    } while (0)

static void micro_kernel(size_t kc, const float *a, const float *b, float *c, size_t ldc, int add)
{
    TILE_LOAD(0);
    TILE_LOAD(1);
    TILE_LOAD(2);
    TILE_LOAD(3);
    TILE_LOAD(4);
    TILE_LOAD(5);
    TILE_LOAD(6);
    TILE_LOAD(7);
    for (size_t p = 0; p < kc; p++, a += MR, b += NR) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        TILE_FMA(0);
        TILE_FMA(1);
        TILE_FMA(2);
        TILE_FMA(3);
        TILE_FMA(4);
        TILE_FMA(5);
        TILE_FMA(6);
        TILE_FMA(7);
    }
    TILE_STORE(0);
    TILE_STORE(1);
    TILE_STORE(2);
    TILE_STORE(3);
    TILE_STORE(4);
    TILE_STORE(5);
    TILE_STORE(6);
    TILE_STORE(7);
}

#elif defined(__AVX2__) && defined(__FMA__)

#define TILE_LOAD(i)                                                                               \
    __m256 c##i##0 = add ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps(),                     \
           c##i##1 = add ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps()
#define TILE_FMA(i)                                                                                \
    do {                                                                                           \
        __m256 ai = _mm256_broadcast_ss(a + i);                                                    \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                                                \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                                                \
    } while (0)
#define TILE_STORE(i)                                                                              \
    do {                                                                                           \
        _mm256_storeu_ps(c + i * ldc, c##i##0);                                                    \
        _mm256_storeu_ps(c + i * ldc + 8, c##i##1);                                                \
    } while (0)

static void micro_kernel(size_t kc, const float *a, const float *b, float *c, size_t ldc, int add)
{
    TILE_LOAD(0);
    TILE_LOAD(1);
    TILE_LOAD(2);
    TILE_LOAD(3);
    TILE_LOAD(4);
    TILE_LOAD(5);
    for (size_t p = 0; p < kc; p++, a += MR, b += NR) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        TILE_FMA(0);
        TILE_FMA(1);
        TILE_FMA(2);
        TILE_FMA(3);
        TILE_FMA(4);
        TILE_FMA(5);
    }
    TILE_STORE(0);
    TILE_STORE(1);
    TILE_STORE(2);
    TILE_STORE(3);
    TILE_STORE(4);
    TILE_STORE(5);
}

#else

/* Portable: plain loops over a small tile, which compilers vectorise for
 * whatever the baseline (SSE2 on x86-64, NEON on arm64) offers. */
static void micro_kernel(size_t kc, const float *a, const float *b, float *c, size_t ldc, int add)
{
    float acc[MR][NR];
    for (size_t i = 0; i < MR; i++)
        for (size_t j = 0; j < NR; j++)
            acc[i][j] = add ? c[i * ldc + j] : 0.0f;
    for (size_t p = 0; p < kc; p++, a += MR, b += NR)
        for (size_t i = 0; i < MR; i++)
            for (size_t j = 0; j < NR; j++)
                acc[i][j] += a[i] * b[j];
    for (size_t i = 0; i < MR; i++)
        for (size_t j = 0; j < NR; j++)
            c[i * ldc + j] = acc[i][j];
}

#endif

/* The epilogue's SGD step (kernels.h) on a full tile, in vector registers:
 * the same operations in the same order as mlp_sgd, so the same rounding,
 * without the per-row loop set-up and checks of mlp_epilogue_block, which
 * cost as much as the pass over memory that fusing the step saves. Returns
 * nonzero if a new weight is NaN or Inf. */
#if defined(__AVX512F__)
#define SGD_TILE
static int sgd_tile(float *c, size_t ldc, float *w, size_t ldw, const mlp_sgd_rule *rule)
{
    const __m512 lr = _mm512_set1_ps(rule->lr), wd = _mm512_set1_ps(rule->wd);
    const __m512i inf = _mm512_set1_epi32(0x7f800000);
    __mmask16 bad = 0;
    for (size_t i = 0; i < MR; i++)
        for (size_t h = 0; h < NR; h += 16) {
            float *wi = w + i * ldw + h, *ci = c + i * ldc + h;
            __m512 old = _mm512_loadu_ps(wi);
            __m512 sum = _mm512_add_ps(_mm512_loadu_ps(ci), _mm512_mul_ps(wd, old));
            __m512 v = _mm512_sub_ps(old, _mm512_mul_ps(lr, sum));
            _mm512_storeu_ps(wi, v);
            _mm512_storeu_ps(ci, old);
            bad |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(v), inf), inf);
        }
    return bad != 0;
}
#elif defined(__AVX2__) && defined(__FMA__)
#define SGD_TILE
static int sgd_tile(float *c, size_t ldc, float *w, size_t ldw, const mlp_sgd_rule *rule)
{
    const __m256 lr = _mm256_set1_ps(rule->lr), wd = _mm256_set1_ps(rule->wd);
    const __m256i inf = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    for (size_t i = 0; i < MR; i++)
        for (size_t h = 0; h < NR; h += 8) {
            float *wi = w + i * ldw + h, *ci = c + i * ldc + h;
            __m256 old = _mm256_loadu_ps(wi);
            __m256 sum = _mm256_add_ps(_mm256_loadu_ps(ci), _mm256_mul_ps(wd, old));
            __m256 v = _mm256_sub_ps(old, _mm256_mul_ps(lr, sum));
            _mm256_storeu_ps(wi, v);
            _mm256_storeu_ps(ci, old);
            __m256i exponent = _mm256_and_si256(_mm256_castps_si256(v), inf);
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(exponent, inf));
        }
    return !_mm256_testz_si256(bad, bad);
}
#endif

/* A tile at the matrix's edge goes through a full-size scratch tile. */
static void edge_kernel(size_t kc, const float *a, const float *b, float *c, size_t ldc,
                        size_t rows, size_t cols, int add)
{
    float tile[MR * NR];
    for (size_t r = 0; r < MR; r++)
        for (size_t s = 0; s < NR; s++)
            tile[r * NR + s] = add && r < rows && s < cols ? c[r * ldc + s] : 0.0f;
    micro_kernel(kc, a, b, tile, NR, 1);
    for (size_t r = 0; r < rows; r++)
        memcpy(c + r * ldc, tile + r * NR, cols * sizeof(float));
}

/* ---- the products -------------------------------------------------------- */

size_t KERNEL_NAME(mlp_gemm_workspace)(size_t n)
{
    size_t panels = (n + NR - 1) / NR;
    return MC * KC + KC * panels * NR;
}

void KERNEL_NAME(mlp_gemm)(size_t m, size_t n, size_t k, const mlp_matrix *a, const mlp_matrix *b,
                           float *c, size_t ldc, int add, const mlp_epilogue *epi, size_t col0,
                           float *work)
{
    float *packed_a = work, *packed_b = work + MC * KC;
    for (size_t p0 = 0; p0 < k; p0 += KC) {
        size_t kc = k - p0 < KC ? k - p0 : KC;
        int add_block = add || p0 > 0; /* later slices add to the first */
        /* The last slice finishes each tile: the epilogue takes it from L1. */
        const mlp_epilogue *finish = p0 + kc == k ? epi : NULL;
        pack_b(kc, n, b->data + p0 * b->row_stride, b->row_stride, b->col_stride, packed_b);
        for (size_t i0 = 0; i0 < m; i0 += MC) {
            size_t mc = m - i0 < MC ? m - i0 : MC;
            pack_a(mc, kc, a->data + i0 * a->row_stride + p0 * a->col_stride, a->row_stride,
                   a->col_stride, packed_a);
            for (size_t j = 0; j < n; j += NR) {
                size_t cols = n - j < NR ? n - j : NR;
                for (size_t i = 0; i < mc; i += MR) {
                    size_t rows = mc - i < MR ? mc - i : MR;
                    float *tile = c + (i0 + i) * ldc + j;
                    if (rows == MR && cols == NR)
                        micro_kernel(kc, packed_a + i * kc, packed_b + j * kc, tile, ldc,
                                     add_block);
                    else
                        edge_kernel(kc, packed_a + i * kc, packed_b + j * kc, tile, ldc, rows, cols,
                                    add_block);
                    if (!finish)
                        continue;
#ifdef SGD_TILE
                    if (finish->sgd && rows == MR && cols == NR) {
                        float *w = finish->out + (i0 + i) * finish->ld + col0 + j;
                        if (sgd_tile(tile, ldc, w, finish->ld, finish->sgd) && finish->nonfinite)
                            *finish->nonfinite = 1;
                        continue;
                    }
#endif
                    mlp_epilogue_block(finish, i0 + i, col0 + j, rows, cols, tile, ldc);
                }
            }
        }
    }
}

/* s + x y, fused into one rounding where the instruction set has it (the
 * library is compiled with no contraction of its own: kernels.h, mlp_sgd). */
#ifdef __FMA__
#define MADD(x, y, s) fmaf(x, y, s)
#else
#define MADD(x, y, s) ((s) + (x) * (y))
#endif

/* y (out) += W (out x in, row-major) x (in): four rows at a time so each
 * load of x serves four dot products. Each row's sum is split over NR
 * lanes and reduced in a fixed order. */
void KERNEL_NAME(mlp_gemv)(size_t out, size_t in, const float *w, const float *x, float *y)
{
    size_t o = 0;
    for (; o + 4 <= out; o += 4) {
        const float *w0 = w + o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
        float s0[NR] = {0}, s1[NR] = {0}, s2[NR] = {0}, s3[NR] = {0};
        size_t i = 0;
        for (; i + NR <= in; i += NR)
            for (size_t l = 0; l < NR; l++) {
                s0[l] = MADD(w0[i + l], x[i + l], s0[l]);
                s1[l] = MADD(w1[i + l], x[i + l], s1[l]);
                s2[l] = MADD(w2[i + l], x[i + l], s2[l]);
                s3[l] = MADD(w3[i + l], x[i + l], s3[l]);
            }
        for (; i < in; i++) {
            s0[0] = MADD(w0[i], x[i], s0[0]);
            s1[0] = MADD(w1[i], x[i], s1[0]);
            s2[0] = MADD(w2[i], x[i], s2[0]);
            s3[0] = MADD(w3[i], x[i], s3[0]);
        }
        for (size_t l = 0; l < NR; l++) {
            y[o] += s0[l];
            y[o + 1] += s1[l];
            y[o + 2] += s2[l];
            y[o + 3] += s3[l];
        }
    }
    for (; o < out; o++) {
        const float *wo = w + o * in;
        float s[NR] = {0};
        size_t i = 0;
        for (; i + NR <= in; i += NR)
            for (size_t l = 0; l < NR; l++)
                s[l] = MADD(wo[i + l], x[i + l], s[l]);
        for (; i < in; i++)
            s[0] = MADD(wo[i], x[i], s[0]);
        for (size_t l = 0; l < NR; l++)
            y[o] += s[l];
    }
}
