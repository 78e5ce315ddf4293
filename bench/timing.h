/* Timing shared by the benchmark programs: each figure is the best of
 * ROUNDS rounds of about ROUND_SECONDS each, after a warm-up that also
 * finds how many calls fill a round (the machines are shared and noisy;
 * the best round is the least disturbed one). */
#ifndef MLP_BENCH_TIMING_H
#define MLP_BENCH_TIMING_H

#include <time.h>

#define ROUNDS 7
#define ROUND_SECONDS 0.15

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef void (*bench_fn)(void *ctx);

/* Best seconds per call of fn. */
static double best_seconds(bench_fn fn, void *ctx)
{
    long calls = 1;
    for (double t0 = now(); now() - t0 < ROUND_SECONDS / 4; calls *= 2)
        for (long i = 0; i < calls; i++)
            fn(ctx);
    double best = 1e30;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now();
        for (long i = 0; i < calls; i++)
            fn(ctx);
        double per = (now() - t0) / (double)calls;
        best = per < best ? per : best;
    }
    return best;
}

#endif
