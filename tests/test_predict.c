/* Inference: mlp_predict computes what mlp_forward computes, against an
 * independent reference, without touching the network, from many threads. */
#include "helpers.h"

#include <pthread.h>

enum { INPUTS = 5, BATCH_SMALL = 3, BATCH_LARGE = 300 };

static mlp *make_net(void)
{
    static const mlp_layer layers[3] = {{24, &mlp_relu}, {12, &mlp_tanh}, {4, &mlp_softmax}};
    mlp_config cfg = {INPUTS, 3, layers, 42, MLP_INIT_AUTO, NULL};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    return net;
}

/* The network recomputed in double from the documented parameter layout. */
static void reference_forward(mlp *net, size_t batch, const float *x, double *y)
{
    static const size_t widths[4] = {INPUTS, 24, 12, 4};
    const float *p = mlp_params(net, NULL);
    double in[BATCH_LARGE * 24], out[BATCH_LARGE * 24];
    for (size_t i = 0; i < batch * INPUTS; i++)
        in[i] = x[i];
    for (size_t l = 0; l < 3; l++) {
        size_t fan_in = widths[l], units = widths[l + 1];
        const float *w = p, *b = p + units * fan_in;
        for (size_t r = 0; r < batch; r++) {
            double *o = out + r * units, row_max = -INFINITY, sum = 0.0;
            for (size_t u = 0; u < units; u++) {
                double z = b[u];
                for (size_t i = 0; i < fan_in; i++)
                    z += (double)w[u * fan_in + i] * in[r * fan_in + i];
                o[u] = l == 0 ? fmax(z, 0.0) : l == 1 ? tanh(z) : z;
                row_max = fmax(row_max, o[u]);
            }
            if (l == 2) {
                for (size_t u = 0; u < units; u++)
                    sum += (o[u] = exp(o[u] - row_max));
                for (size_t u = 0; u < units; u++)
                    o[u] /= sum;
            }
        }
        memcpy(in, out, batch * units * sizeof(double));
        p += units * (fan_in + 1);
    }
    memcpy(y, in, batch * 4 * sizeof(double));
}

/* Both the stack path (small batch) and the heap path (large batch). */
static void test_predict_equals_forward_bit_for_bit(void **state)
{
    (void)state;
    mlp *net = make_net();
    static float x[BATCH_LARGE * INPUTS], y_forward[BATCH_LARGE * 4], y_predict[BATCH_LARGE * 4];
    uint64_t rng = 5;
    test_fill(&rng, x, sizeof x / sizeof x[0], -2.0f, 2.0f);
    const size_t batches[2] = {BATCH_SMALL, BATCH_LARGE};
    for (int k = 0; k < 2; k++) {
        size_t n = batches[k] * 4;
        assert_int_equal(mlp_forward(net, batches[k], x, y_forward), MLP_OK);
        assert_int_equal(mlp_predict(net, batches[k], x, y_predict), MLP_OK);
        assert_memory_equal(y_forward, y_predict, n * sizeof(float));
    }
    mlp_free(net);
}

static void test_predict_matches_double_reference(void **state)
{
    (void)state;
    mlp *net = make_net();
    static float x[BATCH_LARGE * INPUTS], y[BATCH_LARGE * 4];
    static double expected[BATCH_LARGE * 4];
    uint64_t rng = 6;
    test_fill(&rng, x, sizeof x / sizeof x[0], -2.0f, 2.0f);
    assert_int_equal(mlp_predict(net, BATCH_LARGE, x, y), MLP_OK);
    reference_forward(net, BATCH_LARGE, x, expected);
    for (size_t i = 0; i < BATCH_LARGE * 4; i++)
        assert_close(y[i], expected[i], 1e-5);
    mlp_free(net);
}

/* No hidden state: a predict between forward and backward changes neither
 * the parameters nor the pending forward. */
static void test_predict_leaves_training_state_alone(void **state)
{
    (void)state;
    mlp *a = make_net(), *b = make_net();
    float x[BATCH_SMALL * INPUTS], x2[BATCH_LARGE * INPUTS], t[BATCH_SMALL * 4] = {0},
                                                                             y[BATCH_LARGE * 4];
    uint64_t rng = 7;
    test_fill(&rng, x, sizeof x / sizeof x[0], -1.0f, 1.0f);
    test_fill(&rng, x2, sizeof x2 / sizeof x2[0], -1.0f, 1.0f);
    for (size_t r = 0; r < BATCH_SMALL; r++)
        t[r * 4 + r % 4] = 1.0f;
    float loss_a, loss_b;
    assert_int_equal(mlp_forward(a, BATCH_SMALL, x, NULL), MLP_OK);
    assert_int_equal(mlp_forward(b, BATCH_SMALL, x, NULL), MLP_OK);
    assert_int_equal(mlp_predict(b, BATCH_LARGE, x2, y), MLP_OK);
    assert_int_equal(mlp_backward(a, &mlp_cross_entropy, t, &loss_a), MLP_OK);
    assert_int_equal(mlp_backward(b, &mlp_cross_entropy, t, &loss_b), MLP_OK);
    assert_true(loss_a == loss_b);
    size_t n = mlp_param_count(a);
    assert_memory_equal(mlp_grads(a, NULL), mlp_grads(b, NULL), n * sizeof(float));
    assert_memory_equal(mlp_params(a, NULL), mlp_params(b, NULL), n * sizeof(float));
    mlp_free(a);
    mlp_free(b);
}

enum { THREADS = 8, ROUNDS = 50 };

typedef struct worker {
    const mlp *net;
    const float *x;
    float y[BATCH_LARGE * 4];
    mlp_status status;
} worker;

static void *predict_worker(void *arg)
{
    worker *w = arg;
    for (int round = 0; round < ROUNDS && w->status == MLP_OK; round++) {
        /* Alternate the heap and stack paths. */
        size_t batch = round % 2 ? BATCH_LARGE : BATCH_SMALL;
        w->status = mlp_predict(w->net, batch, w->x, w->y);
    }
    return NULL;
}

static void test_predict_from_eight_threads_agrees(void **state)
{
    (void)state;
    mlp *net = make_net();
    static float x[BATCH_LARGE * INPUTS], expected[BATCH_LARGE * 4];
    uint64_t rng = 8;
    test_fill(&rng, x, sizeof x / sizeof x[0], -2.0f, 2.0f);
    assert_int_equal(mlp_predict(net, BATCH_LARGE, x, expected), MLP_OK);
    static worker workers[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (worker){.net = net, .x = x, .status = MLP_OK};
        assert_int_equal(pthread_create(&threads[i], NULL, predict_worker, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(workers[i].status, MLP_OK);
        assert_memory_equal(workers[i].y, expected, sizeof expected);
    }
    mlp_free(net);
}

/* y may be x: outputs written over the inputs give what separate buffers
 * give, for one layer (which reads x while writing y; here with more
 * outputs than inputs, so each output row covers inputs not read yet) and
 * for several, at batch 1 and on the GEMM route. */
static void test_predict_in_place_equals_separate_buffers(void **state)
{
    (void)state;
    const mlp_layer one[1] = {{64, &mlp_relu}};
    const mlp_layer two[2] = {{48, &mlp_tanh}, {64, &mlp_relu}};
    const mlp_config cfgs[2] = {{32, 1, one, 3, MLP_INIT_AUTO, NULL},
                                {32, 2, two, 4, MLP_INIT_AUTO, NULL}};
    const size_t batches[2] = {1, 200};
    for (int c = 0; c < 2; c++)
        for (int b = 0; b < 2; b++) {
            mlp *net;
            assert_int_equal(mlp_create(&net, &cfgs[c]), MLP_OK);
            size_t n_in = batches[b] * 32, n_out = batches[b] * 64;
            float *x = malloc(n_out * sizeof *x), *y = malloc(n_out * sizeof *y);
            assert_true(x && y);
            uint64_t seed = 11;
            test_fill(&seed, x, n_in, -1.0f, 1.0f);
            assert_int_equal(mlp_predict(net, batches[b], x, y), MLP_OK);
            assert_int_equal(mlp_predict(net, batches[b], x, x), MLP_OK);
            assert_memory_equal(x, y, n_out * sizeof *x);
            free(x);
            free(y);
            mlp_free(net);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predict_equals_forward_bit_for_bit),
        cmocka_unit_test(test_predict_matches_double_reference),
        cmocka_unit_test(test_predict_leaves_training_state_alone),
        cmocka_unit_test(test_predict_from_eight_threads_agrees),
        cmocka_unit_test(test_predict_in_place_equals_separate_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
