// The public header used from C++: it must compile there (extern "C", no
// C-only syntax) and its functions must link and work.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

extern "C" { // cmocka 1.1's header does not declare C linkage itself
#include <cmocka.h>
}

#include "mlp.h"

static void test_header_works_from_cpp(void **)
{
    const mlp_layer layers[2] = {{4, &mlp_tanh}, {1, &mlp_sigmoid}};
    mlp_config cfg = {};
    cfg.inputs = 2;
    cfg.n_layers = 2;
    cfg.layers = layers;
    cfg.seed = 3;
    mlp *net = nullptr;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    const float x[2] = {0.5f, -0.25f};
    float y = -1.0f;
    assert_int_equal(mlp_predict(net, 1, x, &y), MLP_OK);
    assert_true(y > 0.0f && y < 1.0f);
    assert_int_equal(mlp_outputs(net), 1);
    mlp_free(net);
    assert_string_equal(mlp_strerror(MLP_ERR_STATE), "call out of order");
}

int main()
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_header_works_from_cpp)};
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
