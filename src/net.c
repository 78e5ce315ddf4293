/* The network: creation, parameter storage, forward and backward passes
 * and inference. */
#include "internal.h"
#include "kernels.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- basics ------------------------------------------------------------ */

const char *mlp_version(void)
{
    return "0.1.0";
}

const char *mlp_strerror(mlp_status status)
{
    switch (status) {
    case MLP_OK: return "success";
    case MLP_ERR_INVALID: return "invalid argument";
    case MLP_ERR_NOMEM: return "out of memory";
    case MLP_ERR_IO: return "input/output error";
    case MLP_ERR_FORMAT: return "model data is corrupt or of an unsupported format";
    case MLP_ERR_ACTIVATION: return "unknown activation";
    case MLP_ERR_NONFINITE: return "NaN or infinity in data, loss or gradient";
    case MLP_ERR_STATE: return "call out of order";
    }
    return "unknown status";
}

static void *default_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return malloc(size);
}

static void default_free(void *opaque, void *ptr)
{
    (void)opaque;
    free(ptr);
}

/* count * size bytes, or NULL if that overflows or the allocator fails. */
void *mlp_alloc(const mlp_allocator *al, size_t count, size_t size)
{
    if (count == 0 || size == 0 || count > SIZE_MAX / size)
        return NULL;
    return al->alloc(al->opaque, count * size);
}

void mlp_dealloc(const mlp_allocator *al, void *ptr)
{
    if (ptr)
        al->free(al->opaque, ptr);
}

/* Whether v holds only finite values, also copying it to dst unless dst
 * is NULL: the check and the copy of a batch's inputs in one pass. */
MLP_VECTOR_CLONES static bool copy_finite(float *restrict dst, const float *restrict v, size_t n)
{
    /* x - x is 0 for finite x and NaN otherwise; OR-ing the comparisons
     * keeps the loop branch-free and vectorisable. */
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad |= v[i] - v[i] != 0.0f;
        if (dst)
            dst[i] = v[i];
    }
    return !bad;
}

int mlp_split(size_t n, size_t threshold, int (*part)(void *ctx, size_t lo, size_t len), void *ctx)
{
    size_t ranges = 1;
#ifdef _OPENMP
    if (n >= threshold)
        ranges = (size_t)omp_get_max_threads();
#else
    (void)threshold;
#endif
    if (ranges == 1) /* no parallel region to enter and leave */
        return part(ctx, 0, n);
    size_t width = (n + ranges - 1) / ranges;
    int bad = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads((int)ranges) schedule(static, 1) reduction(| : bad)
#endif
    for (size_t t = 0; t < ranges; t++) {
        size_t lo = t * width;
        if (lo < n)
            bad |= part(ctx, lo, n - lo < width ? n - lo : width);
    }
    return bad;
}

typedef struct copy_job {
    float *dst;
    const float *v;
} copy_job;

/* copy_finite on a range; 1 if it holds a NaN or Inf. The clones are
 * resolved inside this file: clang wants a multiversioned function's first
 * declaration to carry the attribute. */
static int copy_part(void *ctx, size_t lo, size_t len)
{
    const copy_job *job = ctx;
    return !copy_finite(job->dst ? job->dst + lo : NULL, job->v + lo, len);
}

/* copy_finite, on all OpenMP threads when n is large. */
static bool copy_finite_wide(float *dst, const float *v, size_t n)
{
    copy_job job = {dst, v};
    return !mlp_split(n, 32768, copy_part, &job);
}

bool mlp_all_finite_wide(const float *v, size_t n)
{
    return copy_finite_wide(NULL, v, n);
}

/* ---- creation ---------------------------------------------------------- */

mlp_allocator mlp_allocator_or_default(const mlp_allocator *al)
{
    mlp_allocator standard = {default_alloc, default_free, NULL};
    return al ? *al : standard;
}

size_t mlp_config_param_count(const mlp_config *cfg)
{
    /* In 64 bits whatever size_t is: units * (fan_in + 1) reaches 2^40. */
    uint64_t n_params = 0, fan_in = cfg->inputs;
    if (fan_in == 0 || fan_in > MLP_MAX_UNITS)
        return 0;
    for (size_t l = 0; l < cfg->n_layers; l++) {
        uint64_t units = cfg->layers[l].units;
        if (units == 0 || units > MLP_MAX_UNITS)
            return 0;
        n_params += units * (fan_in + 1);
        if (n_params > MLP_MAX_PARAMS)
            return 0;
        fan_in = units;
    }
    return (size_t)n_params;
}

static mlp_status check_config(const mlp_config *cfg)
{
    if (cfg->n_layers == 0 || cfg->n_layers > MLP_MAX_LAYERS || !cfg->layers)
        return MLP_ERR_INVALID;
    if (cfg->init != MLP_INIT_AUTO && cfg->init != MLP_INIT_XAVIER && cfg->init != MLP_INIT_HE)
        return MLP_ERR_INVALID;
    const mlp_allocator *al = cfg->allocator;
    if (al && (!al->alloc || !al->free))
        return MLP_ERR_INVALID;
    for (size_t l = 0; l < cfg->n_layers; l++)
        if (mlp_check_activation(cfg->layers[l].activation) != MLP_OK)
            return MLP_ERR_INVALID;
    return mlp_config_param_count(cfg) ? MLP_OK : MLP_ERR_INVALID;
}

static void init_params(mlp *net, uint64_t seed, int init_override)
{
    mlp_rng rng;
    mlp_rng_seed(&rng, seed);
    for (size_t l = 0; l < net->n_layers; l++) {
        const mlp_dense *d = &net->layers[l];
        int init = init_override != MLP_INIT_AUTO ? init_override : d->activation->init;
        double variance =
            init == MLP_INIT_HE ? 2.0 / (double)d->fan_in : 2.0 / (double)(d->fan_in + d->units);
        double scale = sqrt(variance);
        float *w = net->params + d->w_offset, *b = net->params + d->b_offset;
        for (size_t i = 0; i < d->units * d->fan_in; i++)
            w[i] = (float)(scale * mlp_rng_normal(&rng));
        for (size_t o = 0; o < d->units; o++)
            b[o] = init == MLP_INIT_HE ? MLP_RELU_BIAS_INIT : 0.0f;
    }
}

mlp_status mlp_create(mlp **out, const mlp_config *cfg)
{
    if (!out || !cfg)
        return MLP_ERR_INVALID;
    mlp_status st = check_config(cfg);
    if (st != MLP_OK)
        return st;

    mlp_allocator al = mlp_allocator_or_default(cfg->allocator);
    mlp *net = mlp_alloc(&al, 1, sizeof *net);
    if (!net)
        return MLP_ERR_NOMEM;
    memset(net, 0, sizeof *net);
    net->allocator = al;
    net->opt_kind = -1;
    net->inputs = cfg->inputs;
    net->n_layers = cfg->n_layers;
    net->layers = mlp_alloc(&al, cfg->n_layers, sizeof *net->layers);
    if (!net->layers) {
        mlp_free(net);
        return MLP_ERR_NOMEM;
    }
    size_t fan_in = cfg->inputs, offset = 0, cache_offset = 0;
    net->max_width = cfg->inputs;
    net->all_small = true;
    for (size_t l = 0; l < cfg->n_layers; l++) {
        mlp_dense *d = &net->layers[l];
        d->fan_in = fan_in;
        d->units = cfg->layers[l].units;
        d->activation = cfg->layers[l].activation;
        d->fused = mlp_fused_kind(d->activation);
        d->small = d->units * d->fan_in <= MLP_SMALL_MADDS;
        net->all_small = net->all_small && d->small;
        d->w_offset = offset;
        d->b_offset = offset + d->units * d->fan_in;
        d->z_offset = cache_offset;
        offset = d->b_offset + d->units;
        cache_offset += d->units;
        if (d->units > net->max_width)
            net->max_width = d->units;
        fan_in = d->units;
    }
    net->n_params = offset;
    /* The largest batch whose training cache can be indexed (mlp.h). */
    size_t per_sample = cache_offset + net->inputs;
    net->max_batch =
        MLP_MAX_PARAMS / per_sample < MLP_MAX_BATCH ? MLP_MAX_PARAMS / per_sample : MLP_MAX_BATCH;
    net->params = mlp_alloc(&al, net->n_params, sizeof(float));
    net->grads = mlp_alloc(&al, net->n_params, sizeof(float));
    if (!net->params || !net->grads) {
        mlp_free(net);
        return MLP_ERR_NOMEM;
    }
    memset(net->grads, 0, net->n_params * sizeof(float));
    init_params(net, cfg->seed, cfg->init);
    *out = net;
    return MLP_OK;
}

void mlp_free(mlp *net)
{
    if (!net)
        return;
    mlp_allocator al = net->allocator;
    mlp_dealloc(&al, net->x_cache); /* one block holds every cache buffer */
    mlp_dealloc(&al, net->moment1);
    mlp_dealloc(&al, net->moment2);
    mlp_dealloc(&al, net->grads_scratch);
    mlp_dealloc(&al, net->grads);
    mlp_dealloc(&al, net->params);
    mlp_dealloc(&al, net->layers);
    mlp_dealloc(&al, net);
}

size_t mlp_inputs(const mlp *net)
{
    return net ? net->inputs : 0;
}

size_t mlp_outputs(const mlp *net)
{
    return net ? net->layers[net->n_layers - 1].units : 0;
}

size_t mlp_param_count(const mlp *net)
{
    return net ? net->n_params : 0;
}

float *mlp_params(mlp *net, size_t *count)
{
    if (count)
        *count = net ? net->n_params : 0;
    return net ? net->params : NULL;
}

float *mlp_grads(mlp *net, size_t *count)
{
    if (count)
        *count = net ? net->n_params : 0;
    return net ? net->grads : NULL;
}

/* ---- forward ----------------------------------------------------------- */

size_t mlp_total_units(const mlp *net)
{
    const mlp_dense *last = &net->layers[net->n_layers - 1];
    return last->z_offset + last->units;
}

/* memcpy for the few floats of a tiny network, without a library call. */
static void copy_floats(float *dst, const float *src, size_t n)
{
    if (n > 32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

size_t mlp_kernel_workspace(const mlp *net, size_t batch)
{
    size_t most = 0;
    for (size_t l = 0; l < net->n_layers; l++) {
        size_t need = mlp_dense_workspace(batch, net->layers[l].fan_in, net->layers[l].units);
        most = need > most ? need : most;
    }
    return most;
}

/* z = x W^T + b and, unless a is NULL, a = f(z). */
static void layer_forward(const mlp *net, const mlp_dense *d, size_t rows, const float *x, float *z,
                          float *a, mlp_work work)
{
    if (mlp_small_layer(d, rows)) {
        mlp_small_forward(d, net->params, x, z, a);
        return;
    }
    /* A built-in activation runs in the product's epilogue. */
    const mlp_epilogue fused = {d->fused, 0, a, NULL, NULL, d->units, NULL, NULL};
    mlp_dense_forward(rows, d->fan_in, d->units, x, net->params + d->w_offset,
                      net->params + d->b_offset, z, a && d->fused ? &fused : NULL, work);
    if (a && !d->fused)
        d->activation->forward(d->activation, rows, d->units, z, a);
}

/* Grows the training cache to hold `batch` samples. The old cache is kept
 * if the new one cannot be had. */
static mlp_status reserve_cache(mlp *net, size_t batch)
{
    if (batch <= net->batch_capacity)
        return MLP_OK;
    size_t units = mlp_total_units(net);
    size_t kernel = mlp_kernel_workspace(net, batch);
    size_t floats = batch * (net->inputs + 2 * units + 2 * net->max_width) + kernel;
    float *block = mlp_alloc(&net->allocator, floats, sizeof(float));
    if (!block)
        return MLP_ERR_NOMEM;
    mlp_dealloc(&net->allocator, net->x_cache);
    net->x_cache = block;
    net->z_cache = net->x_cache + batch * net->inputs;
    net->a_cache = net->z_cache + batch * units;
    net->grad_a = net->a_cache + batch * units;
    net->grad_z = net->grad_a + batch * net->max_width;
    net->kernel_work = (mlp_work){net->grad_z + batch * net->max_width, kernel};
    net->batch_capacity = batch;
    return MLP_OK;
}

/* The layer's z and a for the pending batch: (batch, units) each. */
static float *cached_z(const mlp *net, const mlp_dense *d)
{
    return net->z_cache + net->batch * d->z_offset;
}

static float *cached_a(const mlp *net, const mlp_dense *d)
{
    return net->a_cache + net->batch * d->z_offset;
}

/* Whether n floats at x share memory with the n_params at p. Compared as
 * addresses: x may point anywhere, and < between pointers into different
 * arrays is undefined. */
static bool overlaps(const float *x, size_t n, const float *p, size_t n_params)
{
    uintptr_t a = (uintptr_t)x, b = (uintptr_t)p;
    return a < b + n_params * sizeof(float) && b < a + n * sizeof(float);
}

/* Returns whether x is all finite, and leaves net->x_in pointing at the
 * inputs for backward: at x itself if copy is false (x outlives the
 * backward: mlp_train_step), else at a copy in the cache, checked as it is
 * copied (the cache is scratch until a forward succeeds); a few values
 * are copied anyway, inline, for tiny networks. x is copied also where it
 * lies in the parameters or the gradients (mlp_params, mlp_grads), which
 * the step changes before the first layer's backward reads x. */
static MLP_ALWAYS_INLINE bool take_inputs(mlp *net, const float *x, size_t n, bool copy)
{
    if (n > 8) {
        copy = copy || overlaps(x, n, net->params, net->n_params) ||
               overlaps(x, n, net->grads, net->n_params);
        net->x_in = copy ? net->x_cache : x;
        return copy_finite_wide(copy ? net->x_cache : NULL, x, n);
    }
    net->x_in = net->x_cache;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        net->x_cache[i] = v;
        bad |= mlp_nonfinite(v);
    }
    return !bad;
}

/* The forward pass of mlp_forward into the training cache, without
 * arguments to check or state to set: the outputs are left in the last
 * layer's cached a. Without outputs, the output layer's activation is left
 * out (a loss fused with it needs only z). copy_x as take_inputs's copy. */
static MLP_ALWAYS_INLINE mlp_status run_forward(mlp *net, const mlp_dense *last, size_t batch,
                                                const float *x, bool outputs, bool copy_x)
{
    if (batch > net->batch_capacity) {
        /* Bad input is reported as such, before any allocation could fail;
         * when the cache is big enough, the copy below checks it instead. */
        if (!mlp_all_finite(x, batch * net->inputs))
            return MLP_ERR_NONFINITE;
        mlp_status st = reserve_cache(net, batch);
        if (st != MLP_OK)
            return st;
    }
    if (!take_inputs(net, x, batch * net->inputs, copy_x))
        return MLP_ERR_NONFINITE;

    net->batch = batch;
    if (batch == 1 && net->all_small) {
        mlp_small_forward_net(net, x, outputs);
    } else {
        const float *in = x; /* the same values; not read back from the copy */
        for (size_t l = 0; l < net->n_layers; l++) {
            const mlp_dense *d = &net->layers[l];
            float *a = outputs || d != last ? cached_a(net, d) : NULL;
            layer_forward(net, d, batch, in, cached_z(net, d), a, net->kernel_work);
            in = a;
        }
    }
    size_t n_out = batch * last->units;
    if (!mlp_all_finite(cached_z(net, last), n_out) ||
        (outputs && !mlp_all_finite(cached_a(net, last), n_out)))
        return MLP_ERR_NONFINITE;
    return MLP_OK;
}

mlp_status mlp_forward(mlp *net, size_t batch, const float *x, float *y)
{
    if (!net)
        return MLP_ERR_INVALID;
    net->forward_pending = false; /* on any error, as documented */
    if (!x || !mlp_batch_ok(net, batch))
        return MLP_ERR_INVALID;
    const mlp_dense *last = &net->layers[net->n_layers - 1];
    mlp_status st = run_forward(net, last, batch, x, true, true);
    if (st != MLP_OK)
        return st;
    if (y)
        copy_floats(y, cached_a(net, last), batch * last->units);
    net->forward_pending = true;
    return MLP_OK;
}

/* ---- backward ---------------------------------------------------------- */

/* Backpropagates net->grad_z, which holds dL/dz of the output layer, and
 * writes the parameter gradients into dest (overwriting it). Returns
 * nonzero if any of them is NaN or Inf, checked layer by layer. grad_z and
 * grad_a take turns holding each layer's dL/dz.
 * With sgd (mlp_train_step; dest is grads_scratch), each layer's
 * parameters take a plain-SGD step as soon as their gradients are known
 * (mlp_dense_grad_params: for most layers, in the product, tile by tile
 * as they are computed), after dL/dx, which needs the weights before the
 * step. The old values take the gradients' place in grads_scratch
 * (for a large layer at batch 1 the gradients are never stored),
 * net->grads is not touched, and the return value reports NaN or Inf
 * among the new parameters; every layer is processed anyway, so the caller
 * can put all the old values back. */
static int backprop(mlp *net, float *dest, const mlp_sgd_rule *sgd)
{
    size_t batch = net->batch;
    float *dz = net->grad_z, *spare = net->grad_a;
    int bad = 0;
    for (size_t l = net->n_layers; l-- > 0;) {
        const mlp_dense *d = &net->layers[l];
        const mlp_dense *prev = l > 0 ? &net->layers[l - 1] : NULL;
        const float *in = prev ? cached_a(net, prev) : net->x_in;
        const float *prev_z = prev ? cached_z(net, prev) : NULL;
        /* spare (batch, fan_in) = dL/d(prev a), taken on through prev's
         * activation in place when it is a built-in one: by the tiny path,
         * or in the product's epilogue. */
        float *w = net->params + d->w_offset;
        if (mlp_small_layer(d, batch)) {
            bad |= mlp_small_backward(d, net->params, in, dz, dest, prev, prev_z, in, spare);
            if (sgd) /* W and b are one span */
                bad |= mlp_sgd_span(d->units * (d->fan_in + 1), w, dest + d->w_offset, sgd->lr,
                                    sgd->wd);
        } else {
            if (prev) {
                const mlp_epilogue fused = {prev->fused, 1,           NULL, prev_z,
                                            in,          prev->units, NULL, NULL};
                mlp_dense_grad_input(batch, d->fan_in, d->units, dz, w, spare,
                                     prev->fused ? &fused : NULL, net->kernel_work);
            }
            const mlp_dense_step step = {w, net->params + d->b_offset,
                                         sgd ? *sgd : (mlp_sgd_rule){0}};
            if (sgd && batch == 1) /* no gradients stored at all */
                bad |= mlp_sgd_outer(d->units, d->fan_in, w, dz, in, dest + d->w_offset, sgd->lr,
                                     sgd->wd);
            else
                bad |=
                    mlp_dense_grad_params(batch, d->fan_in, d->units, dz, in, dest + d->w_offset,
                                          dest + d->b_offset, sgd ? &step : NULL, net->kernel_work);
        }
        if (!prev)
            break;
        mlp_next_dz(prev, batch, prev_z, in, &dz, &spare);
    }
    return bad;
}

MLP_VECTOR_CLONES static bool sum_is_finite(const float *a, const float *b, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float sum = a[i] + b[i];
        bad |= sum - sum != 0.0f;
    }
    return !bad;
}

/* Runs backprop and adds the result to net->grads, all or nothing: the
 * first backward after a step writes straight into the (zero) gradients and
 * zeroes them again on failure; later ones go through a scratch buffer. */
static mlp_status backprop_accumulate(mlp *net)
{
    if (!mlp_all_finite(net->grad_z, net->batch * net->layers[net->n_layers - 1].units))
        return MLP_ERR_NONFINITE;
    if (!net->grads_pending) {
        if (backprop(net, net->grads, NULL)) {
            memset(net->grads, 0, net->n_params * sizeof(float));
            return MLP_ERR_NONFINITE;
        }
    } else {
        if (!net->grads_scratch) {
            net->grads_scratch = mlp_alloc(&net->allocator, net->n_params, sizeof(float));
            if (!net->grads_scratch)
                return MLP_ERR_NOMEM;
        }
        float *scratch = net->grads_scratch;
        if (backprop(net, scratch, NULL) || !sum_is_finite(net->grads, scratch, net->n_params))
            return MLP_ERR_NONFINITE;
        for (size_t i = 0; i < net->n_params; i++)
            net->grads[i] += scratch[i];
    }
    net->grads_pending = true;
    net->forward_pending = false;
    return MLP_OK;
}

/* The loss of the cached forward against target (in *value, or 0 where
 * it is not needed and certainly finite), and its gradient dL/dz for the
 * output layer in net->grad_z, both checked. */
static MLP_ALWAYS_INLINE mlp_status output_gradient(mlp *net, const mlp_dense *last,
                                                    const mlp_loss *loss, const float *target,
                                                    bool need_value, double *value)
{
    size_t n_out = net->batch * last->units;
    if (!mlp_all_finite(target, n_out))
        return MLP_ERR_NONFINITE;

    bool fused;
    *value = mlp_loss_eval(loss, last->activation, net->batch, last->units, cached_z(net, last),
                           cached_a(net, last), target, net->grad_a, &fused, need_value);
    /* dL/dy is checked itself: an activation derivative of 0 (ReLU at
     * z <= 0) would hide a NaN from the parameter gradients. The loss is
     * checked as the float it is reported in: a double beyond float's range
     * would reach *loss_out as Inf. */
    if (!isfinite((float)*value) || !mlp_all_finite(net->grad_a, n_out))
        return MLP_ERR_NONFINITE;
    if (fused) { /* grad_a holds dL/dz: the two buffers trade places */
        float *t = net->grad_z;
        net->grad_z = net->grad_a, net->grad_a = t;
    } else {
        last->activation->backward(last->activation, net->batch, last->units, cached_z(net, last),
                                   cached_a(net, last), net->grad_a, net->grad_z);
    }
    return MLP_OK;
}

mlp_status mlp_backward(mlp *net, const mlp_loss *loss, const float *target, float *loss_out)
{
    if (!net || !target || mlp_check_loss(loss) != MLP_OK)
        return MLP_ERR_INVALID;
    if (!net->forward_pending)
        return MLP_ERR_STATE;
    double value;
    mlp_status st = output_gradient(net, &net->layers[net->n_layers - 1], loss, target,
                                    loss_out != NULL, &value);
    if (st == MLP_OK)
        st = backprop_accumulate(net);
    if (st == MLP_OK && loss_out)
        *loss_out = (float)value;
    return st;
}

/* mlp_train_step's plain-SGD step, from grad_z holding the output layer's
 * dL/dz: each layer is updated in place as backward reaches it, its old
 * values kept in grads_scratch to put back if any new value is not
 * finite; net->grads is not touched (it stays cleared). One sample through
 * small layers takes the tiny path. The values round as mlp_step's from
 * mlp_backward's gradients. */
static mlp_status sgd_step(mlp *net, const mlp_optimizer *opt)
{
    if (!net->grads_scratch) {
        net->grads_scratch = mlp_alloc(&net->allocator, net->n_params, sizeof(float));
        if (!net->grads_scratch)
            return MLP_ERR_NOMEM;
    }
    const mlp_sgd_rule sgd = {(float)opt->learning_rate, (float)opt->weight_decay};
    int bad = net->batch == 1 && net->all_small ? mlp_small_sgd_net(net, &sgd, net->grads_scratch)
                                                : backprop(net, net->grads_scratch, &sgd);
    if (bad) {
        memcpy(net->params, net->grads_scratch, net->n_params * sizeof(float));
        return MLP_ERR_NONFINITE;
    }
    mlp_record_step(net, MLP_OPT_SGD);
    return MLP_OK;
}

mlp_status mlp_train_step(mlp *net, size_t batch, const float *x, const mlp_loss *loss,
                          const float *target, const mlp_optimizer *opt, float *loss_out)
{
    if (!net)
        return MLP_ERR_INVALID;
    net->forward_pending = false; /* on any error, as documented */
    if (!x || !target || !opt || mlp_check_loss(loss) != MLP_OK || !mlp_optimizer_ok(opt) ||
        !mlp_batch_ok(net, batch))
        return MLP_ERR_INVALID;
    if (net->grads_pending)
        return MLP_ERR_STATE;
    /* The output activation is left out where the loss is fused with it
     * and cannot make a NaN or Inf from a finite z (as it could not fail
     * mlp_forward then). */
    const mlp_dense *last = &net->layers[net->n_layers - 1];
    const mlp_activation *out_act = last->activation;
    bool outputs =
        !(mlp_loss_fused(loss, out_act) && (out_act == &mlp_softmax || out_act == &mlp_sigmoid));
    double value;
    mlp_status st = run_forward(net, last, batch, x, outputs, false);
    if (st == MLP_OK)
        st = output_gradient(net, last, loss, target, loss_out != NULL, &value);
    if (st != MLP_OK)
        return st;
    if (opt->kind == MLP_OPT_SGD && opt->clip_norm == 0.0) {
        st = sgd_step(net, opt);
    } else {
        /* backward's gradients then mlp_step; on failure the gradients are
         * zero again, as they were (none were pending). */
        st = backprop_accumulate(net);
        if (st == MLP_OK)
            st = mlp_step(net, opt);
        if (st != MLP_OK)
            mlp_zero_grad(net);
        net->forward_pending = false;
    }
    if (st == MLP_OK && loss_out)
        *loss_out = (float)value;
    return st;
}

mlp_status mlp_backward_grad(mlp *net, const float *grad_y)
{
    if (!net || !grad_y)
        return MLP_ERR_INVALID;
    if (!net->forward_pending)
        return MLP_ERR_STATE;
    const mlp_dense *last = &net->layers[net->n_layers - 1];
    if (!mlp_all_finite(grad_y, net->batch * last->units))
        return MLP_ERR_NONFINITE;
    last->activation->backward(last->activation, net->batch, last->units, cached_z(net, last),
                               cached_a(net, last), grad_y, net->grad_z);
    return backprop_accumulate(net);
}

mlp_status mlp_zero_grad(mlp *net)
{
    if (!net)
        return MLP_ERR_INVALID;
    memset(net->grads, 0, net->n_params * sizeof(float));
    net->grads_pending = false;
    return MLP_OK;
}

/* ---- inference --------------------------------------------------------- */

/* Floats of stack workspace for mlp_predict; 12 KiB keeps it safe on small
 * thread stacks while covering single samples of wide networks. */
#define PREDICT_STACK_FLOATS 3072

const float *mlp_run_layers(const mlp *net, size_t batch, const float *x, mlp_work work, float *out,
                            unsigned char *signs, const bool *kinked)
{
    size_t stride = batch * net->max_width;
    float *z = work.data, *ping = z + stride, *pong = z + 2 * stride;
    mlp_work kernel = {z + 3 * stride, work.floats - 3 * stride};
    const float *in = x;
    for (size_t l = 0; l < net->n_layers; l++) {
        const mlp_dense *d = &net->layers[l];
        /* The output layer writes out directly, unless it is also the
         * first: then out may be x, still being read as it is written. */
        bool direct = l + 1 == net->n_layers && out && l > 0;
        float *a = direct ? out : (in == ping ? pong : ping);
        layer_forward(net, d, batch, in, z, a, kernel);
        if (signs && kinked[l])
            for (size_t i = 0, n = batch * d->units; i < n; i++)
                signs[batch * d->z_offset + i] = z[i] > 0.0f;
        in = a;
    }
    if (out && in != out) {
        copy_floats(out, in, batch * net->layers[net->n_layers - 1].units);
        in = out;
    }
    return in;
}

mlp_status mlp_predict(const mlp *net, size_t batch, const float *x, float *y)
{
    if (!net || !x || !y || !mlp_batch_ok(net, batch))
        return MLP_ERR_INVALID;
    if (!mlp_all_finite(x, batch * net->inputs))
        return MLP_ERR_NONFINITE;
    float stack[PREDICT_STACK_FLOATS];
    size_t need = 3 * batch * net->max_width + mlp_kernel_workspace(net, batch);
    float *work = stack;
    if (need > PREDICT_STACK_FLOATS) {
        work = mlp_alloc(&net->allocator, need, sizeof(float));
        if (!work)
            return MLP_ERR_NOMEM;
    }
    mlp_run_layers(net, batch, x, (mlp_work){work, need}, y, NULL, NULL);
    if (work != stack)
        mlp_dealloc(&net->allocator, work);
    /* As mlp_forward: outputs that overflowed are an error, not a result. */
    return mlp_all_finite(y, batch * mlp_outputs(net)) ? MLP_OK : MLP_ERR_NONFINITE;
}
