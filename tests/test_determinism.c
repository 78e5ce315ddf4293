/* Determinism and initialisation: the same seed gives the same weights and,
 * with the same data, the same training run bit for bit; weights follow the
 * documented He/Xavier variances; mlp_predict reproduces mlp_forward. */
#include "helpers.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The training network: 4 -> 16 relu -> 16 tanh -> 3 softmax. */
#define INPUTS 4
#define CLASSES 3
#define BATCH 32
#define STEPS 50

static const mlp_layer classifier_layers[] = {
    {16, &mlp_relu}, {16, &mlp_tanh}, {CLASSES, &mlp_softmax}};

static mlp *create_classifier(uint64_t seed)
{
    mlp_config cfg = {INPUTS, 3, classifier_layers, seed, MLP_INIT_AUTO, NULL};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    return net;
}

/* ---- seeds ------------------------------------------------------------ */

static void test_same_seed_gives_identical_initial_params(void **state)
{
    (void)state;
    const uint64_t seeds[] = {0, 1, 0xdeadbeefcafef00du};
    for (size_t i = 0; i < 3; i++) {
        mlp *a = create_classifier(seeds[i]), *b = create_classifier(seeds[i]);
        size_t na = 0, nb = 0;
        const float *pa = mlp_params(a, &na), *pb = mlp_params(b, &nb);
        assert_int_equal(na, nb);
        assert_int_equal(na, 16 * (INPUTS + 1) + 16 * 17 + CLASSES * 17);
        assert_memory_equal(pa, pb, na * sizeof(float));
        mlp_free(a);
        mlp_free(b);
    }
}

static void test_different_seeds_give_different_params(void **state)
{
    (void)state;
    mlp *a = create_classifier(1), *b = create_classifier(2);
    size_t n = 0;
    const float *pa = mlp_params(a, &n), *pb = mlp_params(b, NULL);
    /* Every weight is redrawn; only biases (0 or MLP_RELU_BIAS_INIT) agree. */
    size_t biases = 16 + 16 + CLASSES, differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += pa[i] != pb[i];
    assert_int_equal(differ, n - biases);
    mlp_free(a);
    mlp_free(b);
}

/* ---- training trajectory ---------------------------------------------- */

/* One mini-batch per step, drawn from `rng`: x uniform in [-1, 1], the
 * label the index of the largest of the first three features (learnable). */
static void next_batch(uint64_t *rng, float *x, float *target)
{
    test_fill(rng, x, BATCH * INPUTS, -1.0f, 1.0f);
    memset(target, 0, BATCH * CLASSES * sizeof(float));
    for (size_t r = 0; r < BATCH; r++) {
        const float *xr = x + r * INPUTS;
        size_t label = 0;
        for (size_t c = 1; c < CLASSES; c++)
            if (xr[c] > xr[label])
                label = c;
        target[r * CLASSES + label] = 1.0f;
    }
}

static void test_same_seed_and_data_give_identical_training(void **state)
{
    (void)state;
    mlp *nets[2] = {create_classifier(7), create_classifier(7)};
    size_t n = mlp_param_count(nets[0]);
    float *initial = malloc(n * sizeof(float));
    assert_non_null(initial);
    memcpy(initial, mlp_params(nets[0], NULL), n * sizeof(float));
    float losses[2][STEPS], outputs[2][BATCH * CLASSES];
    uint64_t rngs[2] = {11, 11};
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    adam.learning_rate = 0.01;
    /* Interleaved, so neither run can lean on state the other left behind. */
    for (size_t step = 0; step < STEPS; step++)
        for (size_t k = 0; k < 2; k++) {
            float x[BATCH * INPUTS], target[BATCH * CLASSES];
            next_batch(&rngs[k], x, target);
            assert_int_equal(mlp_forward(nets[k], BATCH, x, outputs[k]), MLP_OK);
            assert_int_equal(mlp_backward(nets[k], &mlp_cross_entropy, target, &losses[k][step]),
                             MLP_OK);
            assert_int_equal(mlp_step(nets[k], &adam), MLP_OK);
        }
    assert_memory_equal(losses[0], losses[1], sizeof losses[0]);
    assert_memory_equal(outputs[0], outputs[1], sizeof outputs[0]);
    assert_memory_equal(mlp_params(nets[0], NULL), mlp_params(nets[1], NULL), n * sizeof(float));
    /* The runs really trained: the weights moved and the loss fell. */
    assert_true(memcmp(initial, mlp_params(nets[0], NULL), n * sizeof(float)) != 0);
    float first = 0.0f, last = 0.0f;
    for (size_t i = 0; i < 5; i++) {
        first += losses[0][i];
        last += losses[0][STEPS - 1 - i];
    }
    assert_true(last < 0.8f * first);
    free(initial);
    mlp_free(nets[0]);
    mlp_free(nets[1]);
}

/* ---- initialisation statistics ---------------------------------------- */

typedef struct layer_stats {
    double mean, variance;
} layer_stats;

static layer_stats stats_of(const float *w, size_t n)
{
    double sum = 0.0, sum_sq = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += w[i];
    double mean = sum / (double)n;
    for (size_t i = 0; i < n; i++)
        sum_sq += ((double)w[i] - mean) * ((double)w[i] - mean);
    return (layer_stats){mean, sum_sq / (double)(n - 1)};
}

/* Checks the layer whose W starts at `w` (units x fan_in, then b): weight
 * variance within 3% of `variance` (the sampling error is ~0.4% at these
 * sizes), mean within 5 standard errors of 0, and every bias == `bias`. */
static void assert_layer_init(const float *w, size_t fan_in, size_t units, double variance,
                              float bias)
{
    size_t n = fan_in * units;
    layer_stats s = stats_of(w, n);
    assert_true(fabs(s.variance / variance - 1.0) < 0.03);
    assert_true(fabs(s.mean) < 5.0 * sqrt(variance / (double)n));
    const float *b = w + n;
    for (size_t o = 0; o < units; o++)
        assert_memory_equal(&b[o], &bias, sizeof bias);
}

static double he_variance(size_t fan_in)
{
    return 2.0 / (double)fan_in;
}

static double xavier_variance(size_t fan_in, size_t fan_out)
{
    return 2.0 / (double)(fan_in + fan_out);
}

/* One wide layer: fan_in 512, 256 units (non-square, so He's 2/fan_in,
 * Xavier's 2/(fan_in + fan_out) and 2/fan_out all differ). */
#define WIDE_IN 512
#define WIDE_OUT 256

static mlp *create_wide(const mlp_activation *act, int init)
{
    const mlp_layer layer = {WIDE_OUT, act};
    mlp_config cfg = {WIDE_IN, 1, &layer, 12345, init, NULL};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    assert_int_equal(mlp_param_count(net), WIDE_OUT * (WIDE_IN + 1));
    return net;
}

static void test_relu_layer_gets_he_init(void **state)
{
    (void)state;
    mlp *net = create_wide(&mlp_relu, MLP_INIT_AUTO);
    assert_layer_init(mlp_params(net, NULL), WIDE_IN, WIDE_OUT, he_variance(WIDE_IN),
                      MLP_RELU_BIAS_INIT);
    mlp_free(net);
}

static void test_tanh_layer_gets_xavier_init(void **state)
{
    (void)state;
    mlp *net = create_wide(&mlp_tanh, MLP_INIT_AUTO);
    assert_layer_init(mlp_params(net, NULL), WIDE_IN, WIDE_OUT, xavier_variance(WIDE_IN, WIDE_OUT),
                      0.0f);
    mlp_free(net);
}

static void test_xavier_override_applies_to_relu_layer(void **state)
{
    (void)state;
    mlp *net = create_wide(&mlp_relu, MLP_INIT_XAVIER);
    assert_layer_init(mlp_params(net, NULL), WIDE_IN, WIDE_OUT, xavier_variance(WIDE_IN, WIDE_OUT),
                      0.0f);
    mlp_free(net);
}

static void test_he_override_applies_to_tanh_layer(void **state)
{
    (void)state;
    mlp *net = create_wide(&mlp_tanh, MLP_INIT_HE);
    assert_layer_init(mlp_params(net, NULL), WIDE_IN, WIDE_OUT, he_variance(WIDE_IN),
                      MLP_RELU_BIAS_INIT);
    mlp_free(net);
}

static void test_activation_without_preference_gets_xavier(void **state)
{
    (void)state;
    mlp_activation custom = mlp_relu;
    custom.name = "relu_without_preference";
    custom.init = MLP_INIT_AUTO;
    mlp *net = create_wide(&custom, MLP_INIT_AUTO);
    assert_layer_init(mlp_params(net, NULL), WIDE_IN, WIDE_OUT, xavier_variance(WIDE_IN, WIDE_OUT),
                      0.0f);
    mlp_free(net);
}

/* Several layers: each is initialised for its own activation and shape, at
 * the offsets the documented layout gives. */
static void test_each_layer_initialised_for_its_activation(void **state)
{
    (void)state;
    const mlp_layer layers[] = {{384, &mlp_relu}, {256, &mlp_tanh}, {512, &mlp_gelu}};
    mlp_config cfg = {256, 3, layers, 99, MLP_INIT_AUTO, NULL};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    size_t n = 0;
    const float *p = mlp_params(net, &n);
    assert_int_equal(n, 384 * 257 + 256 * 385 + 512 * 257);
    assert_layer_init(p, 256, 384, he_variance(256), MLP_RELU_BIAS_INIT);
    p += 384 * 257;
    assert_layer_init(p, 384, 256, xavier_variance(384, 256), 0.0f);
    p += 256 * 385;
    assert_layer_init(p, 256, 512, he_variance(256), MLP_RELU_BIAS_INIT);
    mlp_free(net);
}

/* ---- predict vs forward ----------------------------------------------- */

static void test_predict_matches_forward_bitwise(void **state)
{
    (void)state;
    mlp *net = create_classifier(3);
    /* A few training steps first, so the weights are not just the initial
     * draw. */
    uint64_t rng = 5;
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    for (int step = 0; step < 5; step++) {
        float x[BATCH * INPUTS], target[BATCH * CLASSES];
        next_batch(&rng, x, target);
        assert_int_equal(mlp_forward(net, BATCH, x, NULL), MLP_OK);
        assert_int_equal(mlp_backward(net, &mlp_cross_entropy, target, NULL), MLP_OK);
        assert_int_equal(mlp_step(net, &adam), MLP_OK);
    }
    /* Batches on predict's stack workspace (3 * batch * 16 <= 3072 floats)
     * and on its heap workspace. */
    enum { MAX_BATCH = 300 };
    static float x[MAX_BATCH * INPUTS], y_forward[MAX_BATCH * CLASSES],
        y_predict[MAX_BATCH * CLASSES];
    const size_t batches[] = {1, 7, 64, 65, MAX_BATCH};
    for (size_t i = 0; i < 5; i++) {
        size_t batch = batches[i];
        test_fill(&rng, x, batch * INPUTS, -3.0f, 3.0f);
        memset(y_predict, 0, sizeof y_predict);
        assert_int_equal(mlp_forward(net, batch, x, y_forward), MLP_OK);
        assert_int_equal(mlp_predict(net, batch, x, y_predict), MLP_OK);
        assert_memory_equal(y_forward, y_predict, batch * CLASSES * sizeof(float));
    }
    mlp_free(net);
}

/* With OpenMP, large batches are shared among threads; the results must
 * be bit-identical whatever the thread count (tiles and summation order do
 * not depend on it). Trains the same network with 1 to 4 threads. The
 * products are shared by whole column blocks, the blocks left over by rows
 * (784 columns: 16 left over at 2 and 3 threads) or, with too few rows (the
 * 10-unit layer's weight gradient: 10 rows, 160 columns), whole; and where
 * a layer of 16 or 10 units leaves too few columns to share, by rows, with
 * the ReLU's forward and backward done on each thread's rows. */
static void test_training_is_identical_for_any_thread_count(void **state)
{
    (void)state;
#ifdef _OPENMP
    const mlp_layer wide[3] = {{256, &mlp_relu}, {128, &mlp_relu}, {10, &mlp_softmax}};
    const mlp_layer narrow[3] = {{16, &mlp_relu}, {160, &mlp_relu}, {10, &mlp_softmax}};
    const mlp_layer *shapes[2] = {wide, narrow};
    const size_t inputs[2] = {784, 300};
    enum { THREAD_BATCH = 64, MAX_THREADS = 4 };
    static float x[THREAD_BATCH * 784], t[THREAD_BATCH * 10], y[MAX_THREADS][THREAD_BATCH * 10];
    uint64_t rng = 3;
    test_fill(&rng, x, THREAD_BATCH * 784, -1.0f, 1.0f);
    for (int r = 0; r < THREAD_BATCH; r++)
        t[r * 10 + r % 10] = 1.0f;
    int threads = omp_get_max_threads();
    for (int shape = 0; shape < 2; shape++) {
        const mlp_config cfg = {inputs[shape], 3, shapes[shape], 9, MLP_INIT_AUTO, NULL};
        mlp *nets[MAX_THREADS];
        float losses[MAX_THREADS][6];
        mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
        mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
        for (int k = 0; k < MAX_THREADS; k++) {
            omp_set_num_threads(k + 1);
            assert_int_equal(mlp_create(&nets[k], &cfg), MLP_OK);
            for (int step = 0; step < 3; step++) {
                assert_int_equal(mlp_forward(nets[k], THREAD_BATCH, x, NULL), MLP_OK);
                assert_int_equal(mlp_backward(nets[k], &mlp_cross_entropy, t, &losses[k][2 * step]),
                                 MLP_OK);
                assert_int_equal(mlp_step(nets[k], &adam), MLP_OK);
                assert_int_equal(mlp_train_step(nets[k], THREAD_BATCH, x, &mlp_cross_entropy, t,
                                                &sgd, &losses[k][2 * step + 1]),
                                 MLP_OK);
            }
            assert_int_equal(mlp_predict(nets[k], THREAD_BATCH, x, y[k]), MLP_OK);
        }
        size_t n = mlp_param_count(nets[0]);
        for (int k = 1; k < MAX_THREADS; k++) {
            assert_memory_equal(mlp_params(nets[0], NULL), mlp_params(nets[k], NULL),
                                n * sizeof(float));
            assert_memory_equal(y[0], y[k], sizeof y[0]);
            assert_memory_equal(losses[0], losses[k], sizeof losses[0]);
        }
        for (int k = 0; k < MAX_THREADS; k++)
            mlp_free(nets[k]);
    }
    omp_set_num_threads(threads);
#else
    skip(); /* a build without OpenMP has one thread */
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_gives_identical_initial_params),
        cmocka_unit_test(test_different_seeds_give_different_params),
        cmocka_unit_test(test_same_seed_and_data_give_identical_training),
        cmocka_unit_test(test_relu_layer_gets_he_init),
        cmocka_unit_test(test_tanh_layer_gets_xavier_init),
        cmocka_unit_test(test_xavier_override_applies_to_relu_layer),
        cmocka_unit_test(test_he_override_applies_to_tanh_layer),
        cmocka_unit_test(test_activation_without_preference_gets_xavier),
        cmocka_unit_test(test_each_layer_initialised_for_its_activation),
        cmocka_unit_test(test_predict_matches_forward_bitwise),
        cmocka_unit_test(test_training_is_identical_for_any_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
