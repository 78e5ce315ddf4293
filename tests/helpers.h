/* Shared by the test suites: cmocka's includes, a seeded test RNG and a
 * counting allocator that can fail on demand. Header-only so each suite
 * stays one self-contained executable. */
#ifndef MLP_TEST_HELPERS_H
#define MLP_TEST_HELPERS_H

/* cmocka needs these before its header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

/* xorshift64*: test data only; the library has its own generator. */
static inline uint64_t test_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15u;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1du;
}

static inline float test_uniform(uint64_t *state, float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(test_rand(state) >> 11) * 0x1.0p-53);
}

static inline void test_fill(uint64_t *state, float *v, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        v[i] = test_uniform(state, lo, hi);
}

/* |actual - expected| <= tol, in double (cmocka's assert_float_equal works
 * in float), printing both values when it fails. */
#define assert_close(actual, expected, tol)                                                        \
    test_assert_close((double)(actual), (double)(expected), (double)(tol), #actual, __FILE__,      \
                      __LINE__)

static inline void test_assert_close(double actual, double expected, double tol, const char *what,
                                     const char *file, int line)
{
    if (!(fabs(actual - expected) <= tol)) {
        print_error("%s = %.9g, expected %.9g +- %.3g\n", what, actual, expected, tol);
        _fail(file, line);
    }
}

/* The seed bug: ReLU's derivative as the original program wrote it, on the
 * activation output, `a >= 0` — always true, so backprop treats ReLU as
 * linear. */
static inline void test_relu_backward_on_output(const mlp_activation *self, size_t rows,
                                                size_t cols, const float *z, const float *a,
                                                const float *grad_a, float *grad_z)
{
    (void)self, (void)z;
    for (size_t i = 0; i < rows * cols; i++)
        grad_z[i] = a[i] >= 0.0f ? grad_a[i] : 0.0f;
}

/* mlp_relu with that backward. */
static inline mlp_activation test_relu_seed_bug(void)
{
    mlp_activation buggy = mlp_relu;
    buggy.name = "relu_a_ge_0";
    buggy.backward = test_relu_backward_on_output;
    return buggy;
}

/* Counts live allocations and fails the allocation numbered fail_at
 * (1-based; 0 never fails). */
typedef struct test_allocator {
    mlp_allocator base;
    long calls, fail_at, live;
} test_allocator;

static inline void *counting_alloc(void *opaque, size_t size)
{
    test_allocator *t = opaque;
    t->calls++;
    if (t->fail_at && t->calls == t->fail_at)
        return NULL;
    void *p = malloc(size);
    if (p)
        t->live++;
    return p;
}

static inline void counting_free(void *opaque, void *ptr)
{
    test_allocator *t = opaque;
    if (ptr)
        t->live--;
    free(ptr);
}

static inline void test_allocator_init(test_allocator *t, long fail_at)
{
    t->base.alloc = counting_alloc;
    t->base.free = counting_free;
    t->base.opaque = t;
    t->calls = 0;
    t->fail_at = fail_at;
    t->live = 0;
}

#endif
