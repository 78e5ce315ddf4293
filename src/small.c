/* The tiny-network path: one sample through a layer of at most
 * MLP_SMALL_MADDS multiply-adds (XOR, control loops). There the cost is
 * per call, not per multiply-add, so the product runs as plain loops fused
 * with a built-in activation (no packing, no dispatch, no vtable call),
 * and backward forms the gradients of the weights and of the layer's
 * input, taking the latter through the previous layer's built-in
 * activation in place. When every layer is small, mlp_train_step runs the
 * whole network here: forward without a call per layer, then backward
 * with each layer's plain-SGD step made in place as soon as its dL/dx is
 * formed (no gradient buffer).
 *
 * This file is compiled without loop vectorisation (meson.build): for trip
 * counts of 1 to 32 the vectorised loops' set-up and remainder code cost
 * more than they save (a 2-8-1 forward took 32 ns vectorised, 18 without).
 * Results may differ in the last bits from a batch of several samples,
 * which takes the batch kernels; mlp_forward, mlp_predict and
 * mlp_gradcheck all come here for one sample, so they agree exactly. */
#include "internal.h"

#include <math.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

mlp_fused mlp_fused_kind(const mlp_activation *act)
{
    if (act == &mlp_identity)
        return MLP_FUSED_IDENTITY;
    if (act == &mlp_relu)
        return MLP_FUSED_RELU;
    if (act == &mlp_leaky_relu)
        return MLP_FUSED_LEAKY_RELU;
    if (act == &mlp_sigmoid)
        return MLP_FUSED_SIGMOID;
    if (act == &mlp_tanh)
        return MLP_FUSED_TANH;
    return MLP_FUSED_NONE;
}

/* v where z > 0, else +0 (also for a NaN z): the ReLU's choice, made
 * without a branch on the sign of z, which changes from sample to sample
 * and would be mispredicted. */
static inline float where_positive(float z, float v)
{
    uint32_t bits, mask = 0u - (uint32_t)(z > 0.0f);
    memcpy(&bits, &v, sizeof bits);
    bits &= mask;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* a = f(z) for an activation other than the ReLU (which product() makes
 * with z): the built-in ones as the kernels' epilogue applies them, any
 * other by its vtable. */
static MLP_ALWAYS_INLINE void activate(const mlp_dense *d, size_t n, float *z, float *a)
{
    if (d->fused == MLP_FUSED_SIGMOID) { /* the usual output: no epilogue set-up */
        for (size_t i = 0; i < n; i++)
            a[i] = mlp_sigmoidf(z[i]);
    } else if (d->fused != MLP_FUSED_NONE) {
        const mlp_epilogue forward = {d->fused, 0, a, NULL, NULL, n, NULL, NULL};
        mlp_epilogue_block(&forward, 0, 0, 1, n, z, n);
    } else {
        d->activation->forward(d->activation, 1, n, z, a);
    }
}

#ifdef __SSE2__
/* Stores four values of z and, unless relu is NULL, their ReLU there:
 * from the register, not loaded back from z (a load right after the
 * store would wait for it). */
static inline void store_z(float *z, __m128 v, float *relu)
{
    _mm_storeu_ps(z, v);
    if (relu)
        _mm_storeu_ps(relu, _mm_and_ps(_mm_cmpgt_ps(v, _mm_setzero_ps()), v));
}

/* The sums of the lanes of s0, s1, s2 and s3, as one vector. */
static inline __m128 sum_lanes4(__m128 s0, __m128 s1, __m128 s2, __m128 s3)
{
    _MM_TRANSPOSE4_PS(s0, s1, s2, s3);
    return _mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3));
}

/* The sum of the lanes of s. */
static inline float sum_lanes(__m128 s)
{
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
#endif

/* z = W x + b, four outputs at a time: their sums run side by side and
 * each x[i] is loaded once for four products. With SSE2 and four inputs
 * or more, each sum runs over four inputs at a time, and the four results
 * are stored as one vector, which the activation then loads whole (a
 * vector load of values stored one at a time would wait for the stores to
 * reach the cache). Inlined with in a constant for the narrowest layers
 * (below), where the inner loops then unroll. */
static MLP_ALWAYS_INLINE void product(size_t in, size_t out, const float *x, const float *w,
                                      const float *b, float *z, float *relu)
{
    size_t o = 0;
#ifdef __SSE2__
    if (in == 2) { /* rows o..o+3 are 8 floats: split into the two columns */
        for (const __m128 x0 = _mm_set1_ps(x[0]), x1 = _mm_set1_ps(x[1]); o + 4 <= out; o += 4) {
            __m128 lo = _mm_loadu_ps(w + 2 * o), hi = _mm_loadu_ps(w + 2 * o + 4);
            __m128 c0 = _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
            __m128 c1 = _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
            __m128 sum = _mm_add_ps(_mm_mul_ps(x0, c0), _mm_mul_ps(x1, c1));
            store_z(z + o, _mm_add_ps(_mm_loadu_ps(b + o), sum), relu ? relu + o : NULL);
        }
    }
#endif
    for (; o + 4 <= out; o += 4) {
        const float *w0 = w + o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
#ifdef __SSE2__
        if (in >= 4) {
            __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            size_t i = 0;
            for (; i + 4 <= in; i += 4) {
                __m128 xi = _mm_loadu_ps(x + i);
                a0 = _mm_add_ps(a0, _mm_mul_ps(xi, _mm_loadu_ps(w0 + i)));
                a1 = _mm_add_ps(a1, _mm_mul_ps(xi, _mm_loadu_ps(w1 + i)));
                a2 = _mm_add_ps(a2, _mm_mul_ps(xi, _mm_loadu_ps(w2 + i)));
                a3 = _mm_add_ps(a3, _mm_mul_ps(xi, _mm_loadu_ps(w3 + i)));
            }
            __m128 sum = sum_lanes4(a0, a1, a2, a3);
            for (; i < in; i++) {
                __m128 column = _mm_set_ps(w3[i], w2[i], w1[i], w0[i]);
                sum = _mm_add_ps(sum, _mm_mul_ps(_mm_set1_ps(x[i]), column));
            }
            store_z(z + o, _mm_add_ps(_mm_loadu_ps(b + o), sum), relu ? relu + o : NULL);
            continue;
        }
#endif
        float s0 = x[0] * w0[0], s1 = x[0] * w1[0], s2 = x[0] * w2[0], s3 = x[0] * w3[0];
        for (size_t i = 1; i < in; i++) {
            s0 += x[i] * w0[i];
            s1 += x[i] * w1[i];
            s2 += x[i] * w2[i];
            s3 += x[i] * w3[i];
        }
#ifdef __SSE2__
        store_z(z + o, _mm_add_ps(_mm_loadu_ps(b + o), _mm_set_ps(s3, s2, s1, s0)),
                relu ? relu + o : NULL);
#else
        const float sums[4] = {s0, s1, s2, s3};
        for (size_t k = 0; k < 4; k++) {
            z[o + k] = b[o + k] + sums[k];
            if (relu)
                relu[o + k] = where_positive(z[o + k], z[o + k]);
        }
#endif
    }
    for (; o < out; o++) {
        const float *wo = w + o * in;
        size_t i = 0;
        float sum = 0.0f;
#ifdef __SSE2__
        if (in >= 4) {
            __m128 acc = _mm_setzero_ps();
            for (; i + 4 <= in; i += 4)
                acc = _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(x + i), _mm_loadu_ps(wo + i)));
            sum = sum_lanes(acc);
        }
#endif
        for (; i < in; i++)
            sum += x[i] * wo[i];
        z[o] = b[o] + sum;
        if (relu)
            relu[o] = where_positive(z[o], z[o]);
    }
}

static MLP_ALWAYS_INLINE void forward(const mlp_dense *d, const float *params, const float *x,
                                      float *z, float *a)
{
    const float *w = params + d->w_offset, *b = params + d->b_offset;
    float *relu = a && d->fused == MLP_FUSED_RELU ? a : NULL; /* made with z */
    switch (d->fan_in) {
    case 1: product(1, d->units, x, w, b, z, relu); break;
    case 2: product(2, d->units, x, w, b, z, relu); break;
    case 3: product(3, d->units, x, w, b, z, relu); break;
    case 4: product(4, d->units, x, w, b, z, relu); break;
    case 8: product(8, d->units, x, w, b, z, relu); break;
    default: product(d->fan_in, d->units, x, w, b, z, relu); break;
    }
    if (a && !relu)
        activate(d, d->units, z, a);
}

void mlp_small_forward(const mlp_dense *d, const float *params, const float *x, float *z, float *a)
{
    forward(d, params, x, z, a);
}

void mlp_small_forward_net(const mlp *net, const float *x, bool outputs)
{
    float *z = net->z_cache, *a = net->a_cache;
    const mlp_dense *d = net->layers, *last = d + net->n_layers - 1;
    for (; d < last; d++) {
        forward(d, net->params, x, z, a);
        x = a;
        z += d->units, a += d->units;
    }
    forward(last, net->params, x, z, outputs ? a : NULL);
}

/* dW = dz x^T and db = dz of one small layer, inlined with in a constant
 * for the narrowest layers like product(). Returns nonzero if any is NaN
 * or Inf. */
static MLP_ALWAYS_INLINE int gradients(size_t in, size_t out, const float *x, const float *dz,
                                       float *dw, float *db)
{
    /* Whether dW = dz x^T is finite, from the largest factors: rounding is
     * monotonic, so every product is finite if the largest one is. This
     * checks in + out values instead of reading dW back (which, just
     * written a float at a time, cannot be forwarded to a vector load). */
    int bad = 0;
    float dz_max = 0.0f, x_max = 0.0f;
    size_t i = 0;
#ifdef __SSE2__
    if (in >= 4) {
        const __m128i exponent = _mm_set1_epi32(0x7f800000);
        const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
        __m128 most = _mm_setzero_ps();
        __m128i nonfinite = _mm_setzero_si128();
        for (; i + 4 <= in; i += 4) {
            __m128 v = _mm_and_ps(_mm_loadu_ps(x + i), magnitude);
            __m128i e = _mm_and_si128(_mm_castps_si128(v), exponent);
            nonfinite = _mm_or_si128(nonfinite, _mm_cmpeq_epi32(e, exponent));
            most = _mm_max_ps(v, most); /* a NaN is dropped here, counted above */
        }
        most = _mm_max_ps(most, _mm_movehl_ps(most, most));
        x_max = _mm_cvtss_f32(_mm_max_ss(most, _mm_shuffle_ps(most, most, 1)));
        bad = _mm_movemask_epi8(nonfinite) != 0;
    }
#endif
    for (; i < in; i++) {
        float v = fabsf(x[i]);
        bad |= mlp_nonfinite(v);
        x_max = v > x_max ? v : x_max;
    }
    for (size_t o = 0; o < out; o++) {
        float g = dz[o], v = fabsf(g);
        bad |= mlp_nonfinite(v);
        dz_max = v > dz_max ? v : dz_max;
        db[o] = g;
        float *dwo = dw + o * in;
        i = 0;
#ifdef __SSE2__
        for (__m128 gv = _mm_set1_ps(g); i + 4 <= in; i += 4)
            _mm_storeu_ps(dwo + i, _mm_mul_ps(gv, _mm_loadu_ps(x + i)));
#endif
        for (; i < in; i++)
            dwo[i] = g * x[i];
    }
    return bad | mlp_nonfinite(dz_max * x_max);
}

/* Running sums of new parameter values: a NaN or Inf stays in a sum, so
 * one addition per four values stands for a check of each; a sum may also
 * overflow with every value finite, so a sum that is not finite only sends
 * the caller to check the values themselves. */
typedef struct sgd_sums {
#ifdef __SSE2__
    __m128 v;
#endif
    float s;
} sgd_sums;

#ifdef __SSE2__
/* Four plain-SGD updates (mlp_sgd) of w in place from the gradients g,
 * the old values kept in old, the new ones added to sums. Without decay
 * (weight decay +0) g + 0 w is left out: it is g, or a zero of the other
 * sign, which w - lr g turns into the same value; and where w is Inf or
 * NaN both are (the step is refused). */
static MLP_ALWAYS_INLINE void sgd4(float *w, __m128 g, __m128 lr, __m128 wd, float *old,
                                   sgd_sums *sums, bool decay)
{
    __m128 wv = _mm_loadu_ps(w);
    __m128 sum = decay ? _mm_add_ps(g, _mm_mul_ps(wd, wv)) : g;
    __m128 nw = _mm_sub_ps(wv, _mm_mul_ps(lr, sum));
    _mm_storeu_ps(old, wv);
    _mm_storeu_ps(w, nw);
    sums->v = _mm_add_ps(sums->v, nw);
}
#endif

/* One plain-SGD update of *w in place from the gradient g, the old value
 * kept in *old, the new one added to sums; decay as for sgd4. */
static MLP_ALWAYS_INLINE void sgd1(float *w, float g, float lr, float wd, float *old,
                                   sgd_sums *sums, bool decay)
{
    float step = lr * g, v = decay ? mlp_sgd(*w, g, lr, wd) : *w - step;
    *old = *w;
    *w = v;
    sums->s += v;
}

/* A plain-SGD step of one small layer's weights w and biases b in place,
 * on dW = dz x^T, db = dz, inlined like gradients(); the old values are
 * kept in ow and ob, the new ones added to sums. Vector and scalar code
 * round alike: each weight is mlp_sgd of the product dz[o] * x[i]. */
static MLP_ALWAYS_INLINE void sgd_update(size_t in, size_t out, float *w, float *b, const float *x,
                                         const float *dz, float lr, float wd, float *ow, float *ob,
                                         sgd_sums *sums, bool decay)
{
    size_t o = 0;
#ifdef __SSE2__
    const __m128 lrv = _mm_set1_ps(lr), wdv = _mm_set1_ps(wd);
    for (; o + 4 <= out; o += 4)
        sgd4(b + o, _mm_loadu_ps(dz + o), lrv, wdv, ob + o, sums, decay);
    if (in == 1) { /* W is a column: dz times one input */
        size_t j = 0;
        for (__m128 xv = _mm_set1_ps(x[0]); j + 4 <= out; j += 4)
            sgd4(w + j, _mm_mul_ps(_mm_loadu_ps(dz + j), xv), lrv, wdv, ow + j, sums, decay);
        for (; j < out; j++)
            sgd1(w + j, dz[j] * x[0], lr, wd, ow + j, sums, decay);
    } else if (in == 2) { /* four rows, then two, at a time */
        size_t j = 0;
        const __m128 xv = _mm_set_ps(x[1], x[0], x[1], x[0]);
        for (; j + 4 <= out; j += 4) {
            __m128 d4 = _mm_loadu_ps(dz + j);
            sgd4(w + 2 * j, _mm_mul_ps(_mm_unpacklo_ps(d4, d4), xv), lrv, wdv, ow + 2 * j, sums,
                 decay);
            sgd4(w + 2 * j + 4, _mm_mul_ps(_mm_unpackhi_ps(d4, d4), xv), lrv, wdv, ow + 2 * j + 4,
                 sums, decay);
        }
        for (; j + 2 <= out; j += 2) {
            __m128 g = _mm_mul_ps(_mm_set_ps(dz[j + 1], dz[j + 1], dz[j], dz[j]), xv);
            sgd4(w + 2 * j, g, lrv, wdv, ow + 2 * j, sums, decay);
        }
        for (; j < out; j++)
            for (size_t i = 0; i < 2; i++)
                sgd1(w + 2 * j + i, dz[j] * x[i], lr, wd, ow + 2 * j + i, sums, decay);
    } else {
        for (size_t j = 0; j < out; j++) {
            size_t i = 0, row = j * in;
            for (__m128 g = _mm_set1_ps(dz[j]); i + 4 <= in; i += 4)
                sgd4(w + row + i, _mm_mul_ps(g, _mm_loadu_ps(x + i)), lrv, wdv, ow + row + i, sums,
                     decay);
            for (; i < in; i++)
                sgd1(w + row + i, dz[j] * x[i], lr, wd, ow + row + i, sums, decay);
        }
    }
#else
    for (size_t j = 0; j < out; j++)
        for (size_t i = 0; i < in; i++)
            sgd1(w + j * in + i, dz[j] * x[i], lr, wd, ow + j * in + i, sums, decay);
#endif
    for (; o < out; o++)
        sgd1(b + o, dz[o], lr, wd, ob + o, sums, decay);
}

/* dx = W^T dz, each element summed over o in order, and, unless relu_z is
 * NULL, taken through the ReLU at relu_z before it is stored. */
static MLP_ALWAYS_INLINE void input_gradient(size_t in, size_t out, const float *w, const float *dz,
                                             const float *relu_z, float *dx)
{
    size_t i = 0;
#ifdef __SSE2__
    for (; i + 4 <= in; i += 4) {
        __m128 sum = _mm_mul_ps(_mm_set1_ps(dz[0]), _mm_loadu_ps(w + i));
        for (size_t o = 1; o < out; o++)
            sum = _mm_add_ps(sum, _mm_mul_ps(_mm_set1_ps(dz[o]), _mm_loadu_ps(w + o * in + i)));
        if (relu_z)
            sum = _mm_and_ps(_mm_cmpgt_ps(_mm_loadu_ps(relu_z + i), _mm_setzero_ps()), sum);
        _mm_storeu_ps(dx + i, sum);
    }
#endif
    for (; i < in; i++) {
        float sum = dz[0] * w[i];
        for (size_t o = 1; o < out; o++)
            sum += dz[o] * w[o * in + i];
        dx[i] = relu_z ? where_positive(relu_z[i], sum) : sum;
    }
}

/* dx = dL/dx of a small layer from its dL/dz dz, taken on through the
 * previous layer's activation to dL/d(prev z) if that is a built-in one
 * (prev->fused), from prev_z and prev_a: the ReLU as dx is formed, the
 * others in place after. */
static MLP_ALWAYS_INLINE void small_input_gradient(const mlp_dense *d, const float *w,
                                                   const float *dz, const mlp_dense *prev,
                                                   const float *prev_z, const float *prev_a,
                                                   float *dx)
{
    size_t n = d->fan_in;
    const float *relu_z = prev->fused == MLP_FUSED_RELU ? prev_z : NULL;
    switch (n) {
    case 1: input_gradient(1, d->units, w, dz, relu_z, dx); break;
    case 2: input_gradient(2, d->units, w, dz, relu_z, dx); break;
    case 3: input_gradient(3, d->units, w, dz, relu_z, dx); break;
    case 4: input_gradient(4, d->units, w, dz, relu_z, dx); break;
    case 8: input_gradient(8, d->units, w, dz, relu_z, dx); break;
    default: input_gradient(n, d->units, w, dz, relu_z, dx); break;
    }
    if (!relu_z && prev->fused != MLP_FUSED_NONE) {
        const mlp_epilogue backward = {prev->fused, 1, NULL, prev_z, prev_a, n, NULL, NULL};
        mlp_epilogue_block(&backward, 0, 0, 1, n, dx, n);
    }
}

int mlp_small_backward(const mlp_dense *d, const float *params, const float *x, const float *dz,
                       float *grads, const mlp_dense *prev, const float *prev_z,
                       const float *prev_a, float *dx)
{
    float *dw = grads + d->w_offset, *db = grads + d->b_offset;
    int bad;
    switch (d->fan_in) {
    case 1: bad = gradients(1, d->units, x, dz, dw, db); break;
    case 2: bad = gradients(2, d->units, x, dz, dw, db); break;
    case 3: bad = gradients(3, d->units, x, dz, dw, db); break;
    case 4: bad = gradients(4, d->units, x, dz, dw, db); break;
    default: bad = gradients(d->fan_in, d->units, x, dz, dw, db); break;
    }
    if (prev)
        small_input_gradient(d, params + d->w_offset, dz, prev, prev_z, prev_a, dx);
    return bad;
}

/* sgd_update for one layer, specialised for the narrowest. */
static MLP_ALWAYS_INLINE void layer_sgd(const mlp_dense *d, float *params, const float *x,
                                        const float *dz, float lr, float wd, float *old,
                                        sgd_sums *sums, bool decay)
{
    float *w = params + d->w_offset, *b = params + d->b_offset;
    float *ow = old + d->w_offset, *ob = old + d->b_offset;
    switch (d->fan_in) {
    case 1: sgd_update(1, d->units, w, b, x, dz, lr, wd, ow, ob, sums, decay); break;
    case 2: sgd_update(2, d->units, w, b, x, dz, lr, wd, ow, ob, sums, decay); break;
    case 3: sgd_update(3, d->units, w, b, x, dz, lr, wd, ow, ob, sums, decay); break;
    case 4: sgd_update(4, d->units, w, b, x, dz, lr, wd, ow, ob, sums, decay); break;
    case 8: sgd_update(8, d->units, w, b, x, dz, lr, wd, ow, ob, sums, decay); break;
    default: sgd_update(d->fan_in, d->units, w, b, x, dz, lr, wd, ow, ob, sums, decay); break;
    }
}

/* mlp_small_sgd_net, with decay a constant (see sgd4). */
static MLP_ALWAYS_INLINE int sgd_net(mlp *net, float lr, float wd, float *old, bool decay)
{
    float *dz = net->grad_z, *spare = net->grad_a;
    sgd_sums sums = {.s = 0.0f};
#ifdef __SSE2__
    sums.v = _mm_setzero_ps();
#endif
    const mlp_dense *first = net->layers, *d = first + net->n_layers - 1;
    for (; d > first; d--) {
        const mlp_dense *prev = d - 1;
        const float *x = net->a_cache + prev->z_offset, *prev_z = net->z_cache + prev->z_offset;
        /* dL/d(prev a) first, with the weights before the step */
        small_input_gradient(d, net->params + d->w_offset, dz, prev, prev_z, x, spare);
        layer_sgd(d, net->params, x, dz, lr, wd, old, &sums, decay);
        mlp_next_dz(prev, 1, prev_z, x, &dz, &spare);
    }
    layer_sgd(first, net->params, net->x_in, dz, lr, wd, old, &sums, decay);
#ifdef __SSE2__
    sums.s += sum_lanes(sums.v);
#endif
    return !mlp_nonfinite(sums.s) ? 0 : !mlp_all_finite_wide(net->params, net->n_params);
}

int mlp_small_sgd_net(mlp *net, const mlp_sgd_rule *sgd, float *old)
{
    /* +0 only: with -0 (a valid weight decay), wd w is +0 for w = -0, and
     * -0 - lr (-0 + +0) is -0 where -0 - lr (-0) is +0. */
    if (sgd->wd == 0.0f && !signbit(sgd->wd))
        return sgd_net(net, sgd->lr, 0.0f, old, false);
    return sgd_net(net, sgd->lr, sgd->wd, old, true);
}
