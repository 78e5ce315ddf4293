/* Built-in activations: values, derivatives, stability at extreme inputs,
 * and user-defined vtables. */
#include "helpers.h"

#include <stdbool.h>

static const mlp_activation *const all_activations[] = {
    &mlp_identity, &mlp_sigmoid,  &mlp_tanh, &mlp_relu, &mlp_leaky_relu,
    &mlp_elu,      &mlp_softplus, &mlp_gelu, &mlp_silu, &mlp_softmax,
};
#define N_ACTIVATIONS (sizeof all_activations / sizeof all_activations[0])

static float apply(const mlp_activation *act, float z)
{
    float a;
    act->forward(act, 1, 1, &z, &a);
    return a;
}

static float derivative(const mlp_activation *act, float z)
{
    float a = apply(act, z), one = 1.0f, grad_z;
    act->backward(act, 1, 1, &z, &a, &one, &grad_z);
    return grad_z;
}

static void test_values_match_reference_formulas(void **state)
{
    (void)state;
    const struct {
        const mlp_activation *act;
        float z;
        double expected;
    } cases[] = {
        {&mlp_identity, -1.5f, -1.5},
        {&mlp_sigmoid, 0.0f, 0.5},
        {&mlp_sigmoid, 2.0f, 0.8807970779778823},
        {&mlp_sigmoid, -2.0f, 0.11920292202211755},
        {&mlp_tanh, 0.5f, 0.46211715726000974},
        {&mlp_relu, -3.0f, 0.0},
        {&mlp_relu, 3.0f, 3.0},
        {&mlp_leaky_relu, -2.0f, -0.02},
        {&mlp_leaky_relu, 2.0f, 2.0},
        {&mlp_elu, -1.0f, -0.6321205588285577},
        {&mlp_elu, 1.5f, 1.5},
        {&mlp_softplus, 0.0f, 0.6931471805599453},
        {&mlp_softplus, -3.0f, 0.04858735157374206},
        {&mlp_gelu, 1.0f, 0.8413447460685429},
        {&mlp_gelu, -1.0f, -0.15865525393145707},
        {&mlp_silu, 1.0f, 0.7310585786300049},
        {&mlp_silu, -2.0f, -0.23840584404423515},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float a = apply(cases[i].act, cases[i].z);
        assert_close(a, cases[i].expected, 1e-6 + 1e-6 * fabs(cases[i].expected));
    }
}

/* Each element-wise backward equals the central difference of its forward,
 * at negative, small and positive z (kinks avoided). */
static void test_derivatives_match_finite_differences(void **state)
{
    (void)state;
    const float points[] = {-4.0f, -1.3f, -0.4f, -0.05f, 0.07f, 0.6f, 1.7f, 5.0f};
    for (size_t k = 0; k + 1 < N_ACTIVATIONS; k++) { /* all but softmax */
        const mlp_activation *act = all_activations[k];
        for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
            float z = points[i], h = 1e-2f;
            double numeric = ((double)apply(act, z + h) - apply(act, z - h)) / (2.0 * h);
            double analytic = derivative(act, z);
            assert_close(analytic, numeric, 2e-3 + 2e-3 * fabs(numeric));
        }
    }
}

static void test_relu_backward_uses_preactivation(void **state)
{
    (void)state;
    /* z < 0: a = 0, so a rule written on a (`a >= 0`) would pass the
     * gradient; the real derivative is 0. */
    float z[3] = {-2.0f, 0.0f, 3.0f}, a[3], grad_a[3] = {1.0f, 1.0f, 1.0f}, grad_z[3];
    mlp_relu.forward(&mlp_relu, 1, 3, z, a);
    mlp_relu.backward(&mlp_relu, 1, 3, z, a, grad_a, grad_z);
    assert_true(grad_z[0] == 0.0f && grad_z[1] == 0.0f && grad_z[2] == 1.0f);
    /* Hand it an inconsistent a: the answer follows z, not a. */
    float fake_a[3] = {5.0f, 5.0f, 0.0f};
    mlp_relu.backward(&mlp_relu, 1, 3, z, fake_a, grad_a, grad_z);
    assert_true(grad_z[0] == 0.0f && grad_z[1] == 0.0f && grad_z[2] == 1.0f);
}

static bool all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

static void test_extreme_inputs_stay_finite(void **state)
{
    (void)state;
    float z[6] = {-1e4f, -100.0f, -30.0f, 30.0f, 100.0f, 1e4f}, a[6], ones[6], grad_z[6];
    for (size_t i = 0; i < 6; i++)
        ones[i] = 1.0f;
    for (size_t k = 0; k < N_ACTIVATIONS; k++) {
        const mlp_activation *act = all_activations[k];
        act->forward(act, 1, 6, z, a);
        act->backward(act, 1, 6, z, a, ones, grad_z);
        assert_true(all_finite(a, 6));
        assert_true(all_finite(grad_z, 6));
    }
    assert_true(apply(&mlp_sigmoid, 1e4f) == 1.0f && apply(&mlp_sigmoid, -1e4f) == 0.0f);
    assert_true(apply(&mlp_softplus, 1e4f) == 1e4f && apply(&mlp_softplus, -1e4f) == 0.0f);
    assert_true(apply(&mlp_tanh, -1e4f) == -1.0f && apply(&mlp_elu, -1e4f) == -1.0f);
    assert_true(apply(&mlp_gelu, -1e4f) == 0.0f && apply(&mlp_silu, -1e4f) == 0.0f);
}

static void test_softmax_rows_sum_to_one_and_subtract_max(void **state)
{
    (void)state;
    /* exp(1e4) overflows without the max subtraction. */
    float z[6] = {1e4f, 0.0f, -1e4f, 1.0f, 2.0f, 3.0f}, a[6];
    mlp_softmax.forward(&mlp_softmax, 2, 3, z, a);
    assert_true(a[0] == 1.0f && a[1] == 0.0f && a[2] == 0.0f);
    double sum = (double)a[3] + a[4] + a[5];
    assert_close(sum, 1.0, 1e-6);
    assert_close(a[5], 0.6652409557748219, 1e-6);
}

/* Softmax backward is a Jacobian-vector product; check it against central
 * differences of <grad_a, softmax(z)>. */
static void test_softmax_backward_matches_finite_differences(void **state)
{
    (void)state;
    float z[4] = {0.3f, -1.2f, 2.0f, 0.1f}, a[4], grad_a[4] = {0.5f, -1.0f, 0.25f, 2.0f}, grad_z[4];
    mlp_softmax.forward(&mlp_softmax, 1, 4, z, a);
    mlp_softmax.backward(&mlp_softmax, 1, 4, z, a, grad_a, grad_z);
    for (size_t i = 0; i < 4; i++) {
        float zp[4], zm[4], ap[4], am[4], h = 1e-2f;
        memcpy(zp, z, sizeof z);
        memcpy(zm, z, sizeof z);
        zp[i] += h;
        zm[i] -= h;
        mlp_softmax.forward(&mlp_softmax, 1, 4, zp, ap);
        mlp_softmax.forward(&mlp_softmax, 1, 4, zm, am);
        double numeric = 0.0;
        for (size_t j = 0; j < 4; j++)
            numeric += (double)grad_a[j] * ((double)ap[j] - am[j]) / (2.0 * h);
        assert_close(grad_z[i], numeric, 1e-3);
    }
}

static void test_vtables_are_well_formed_and_named_uniquely(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ACTIVATIONS; i++) {
        const mlp_activation *act = all_activations[i];
        assert_int_equal(act->abi_version, MLP_ACTIVATION_ABI);
        assert_non_null(act->forward);
        assert_non_null(act->backward);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(act->name, all_activations[j]->name);
    }
    /* The ReLU family (zero or nearly zero for z < 0, linear above) prefers
     * He initialisation, the rest Glorot. */
    const mlp_activation *he[] = {&mlp_relu, &mlp_leaky_relu, &mlp_elu, &mlp_gelu, &mlp_silu};
    const mlp_activation *glorot[] = {&mlp_identity, &mlp_sigmoid, &mlp_tanh, &mlp_softplus,
                                      &mlp_softmax};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(he[i]->init, MLP_INIT_HE);
        assert_int_equal(glorot[i]->init, MLP_INIT_XAVIER);
    }
}

/* ---- a user-defined activation ----------------------------------------- */

/* softsign: z / (1 + |z|), derivative 1 / (1 + |z|)^2; its slope lives in
 * `data` to show the field reaching the implementation. */
static void softsign_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                             float *a)
{
    float gain = *(const float *)self->data;
    for (size_t i = 0; i < rows * cols; i++)
        a[i] = gain * z[i] / (1.0f + fabsf(z[i]));
}

static void softsign_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                              const float *a, const float *grad_a, float *grad_z)
{
    (void)a;
    float gain = *(const float *)self->data;
    for (size_t i = 0; i < rows * cols; i++) {
        float d = 1.0f + fabsf(z[i]);
        grad_z[i] = grad_a[i] * gain / (d * d);
    }
}

static const float softsign_gain = 1.5f;
static const mlp_activation softsign = {MLP_ACTIVATION_ABI, "softsign",      softsign_forward,
                                        softsign_backward,  MLP_INIT_XAVIER, &softsign_gain};

static void test_user_activation_trains_end_to_end(void **state)
{
    (void)state;
    /* Fit y = sin(3x) on [-1, 1] with a softsign hidden layer. */
    enum { N = 32 };
    float x[N], y[N];
    for (int i = 0; i < N; i++) {
        x[i] = -1.0f + 2.0f * (float)i / (N - 1);
        y[i] = sinf(3.0f * x[i]);
    }
    mlp_layer layers[3] = {{16, &softsign}, {16, &softsign}, {1, &mlp_identity}};
    mlp_config cfg = {1, 3, layers, 11, MLP_INIT_AUTO, NULL};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);

    double err = -1.0;
    assert_int_equal(mlp_gradcheck(net, &mlp_mse, 8, x, y, &err), MLP_OK);
    assert_true(err < 5e-2);

    mlp_optimizer opt = mlp_optimizer_default(MLP_OPT_ADAM);
    opt.learning_rate = 0.01;
    float first = 0.0f, last = 0.0f;
    for (int epoch = 0; epoch < 1000; epoch++) {
        assert_int_equal(mlp_forward(net, N, x, NULL), MLP_OK);
        assert_int_equal(mlp_backward(net, &mlp_mse, y, &last), MLP_OK);
        assert_int_equal(mlp_step(net, &opt), MLP_OK);
        if (epoch == 0)
            first = last;
    }
    assert_true(last < 0.01f * first);
    assert_true(last < 5e-3f);
    mlp_free(net);
}

static void test_activation_without_backward_is_refused(void **state)
{
    (void)state;
    mlp_activation guessless = softsign;
    guessless.backward = NULL;
    mlp_activation future = softsign;
    future.abi_version = MLP_ACTIVATION_ABI + 1;
    const mlp_activation *refused[2] = {&guessless, &future};
    for (int i = 0; i < 2; i++) {
        mlp_layer layers[2] = {{4, refused[i]}, {1, &mlp_identity}};
        mlp_config cfg = {2, 2, layers, 1, MLP_INIT_AUTO, NULL};
        mlp *net = NULL;
        assert_int_equal(mlp_create(&net, &cfg), MLP_ERR_INVALID);
        assert_null(net);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_match_reference_formulas),
        cmocka_unit_test(test_derivatives_match_finite_differences),
        cmocka_unit_test(test_relu_backward_uses_preactivation),
        cmocka_unit_test(test_extreme_inputs_stay_finite),
        cmocka_unit_test(test_softmax_rows_sum_to_one_and_subtract_max),
        cmocka_unit_test(test_softmax_backward_matches_finite_differences),
        cmocka_unit_test(test_vtables_are_well_formed_and_named_uniquely),
        cmocka_unit_test(test_user_activation_trains_end_to_end),
        cmocka_unit_test(test_activation_without_backward_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
