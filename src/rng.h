/* Seeded PRNG: xoshiro256** (Blackman & Vigna 2018) seeded with splitmix64.
 * The integer stream is the same on every platform; normals go through
 * libm's log and cos, so they are bit-identical on every run with the same
 * libm (in practice: the same platform). No global state. */
#ifndef MLP_RNG_H
#define MLP_RNG_H

#include <stdint.h>

typedef struct mlp_rng {
    uint64_t s[4];
} mlp_rng;

void mlp_rng_seed(mlp_rng *rng, uint64_t seed);
uint64_t mlp_rng_next(mlp_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double mlp_rng_uniform(mlp_rng *rng);
/* Standard normal. */
double mlp_rng_normal(mlp_rng *rng);

#endif
