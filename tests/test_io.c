/* Model files: round trips, exact resumption of training, the format's
 * fields, version and limit checks, and corruption of every kind — each
 * corrupt file gives an error or a valid network, never a crash. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fdopen */

#include "helpers.h"

#include "crc32_reference.h"

#include <stdbool.h>
#include <stdio.h>

static uint32_t read_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void write_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void write_le64(unsigned char *p, uint64_t v)
{
    write_le32(p, (uint32_t)v);
    write_le32(p + 4, (uint32_t)(v >> 32));
}

/* Recomputes the trailing CRC so a mutation reaches the parser. */
static void fix_crc(unsigned char *buf, size_t len)
{
    if (len >= 4)
        write_le32(buf + len - 4, crc32_reference(buf, len - 4));
}

static const float xs[8] = {0.5f, -1.0f, 1.5f, 0.25f, -0.75f, 2.0f, 0.0f, -1.25f};
static const float ts[8] = {1.0f, 0.0f, 0.0f, 1.0f, 1.0f, 0.0f, 0.0f, 1.0f};

/* 2-6-4-2, relu / tanh / softmax, batch 4. */
static mlp *make_net(uint64_t seed)
{
    static const mlp_layer layers[3] = {{6, &mlp_relu}, {4, &mlp_tanh}, {2, &mlp_softmax}};
    mlp_config cfg = {2, 3, layers, seed, MLP_INIT_AUTO, NULL};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    return net;
}

static void train(mlp *net, const mlp_optimizer *opt, int steps)
{
    for (int i = 0; i < steps; i++) {
        assert_int_equal(mlp_forward(net, 4, xs, NULL), MLP_OK);
        assert_int_equal(mlp_backward(net, &mlp_cross_entropy, ts, NULL), MLP_OK);
        assert_int_equal(mlp_step(net, opt), MLP_OK);
    }
}

/* Saves to a fresh heap buffer; *len receives its size. */
static unsigned char *save(const mlp *net, size_t *len)
{
    assert_int_equal(mlp_save_buffer(net, NULL, 0, len), MLP_OK);
    unsigned char *buf = malloc(*len);
    assert_non_null(buf);
    size_t written = 0;
    assert_int_equal(mlp_save_buffer(net, buf, *len, &written), MLP_OK);
    assert_int_equal(written, *len);
    return buf;
}

static void assert_same_params(mlp *a, mlp *b)
{
    size_t n = mlp_param_count(a);
    assert_int_equal(mlp_param_count(b), n);
    assert_memory_equal(mlp_params(a, NULL), mlp_params(b, NULL), n * sizeof(float));
}

/* ---- round trips ------------------------------------------------------- */

static void test_buffer_round_trip_is_exact(void **state)
{
    (void)state;
    mlp *net = make_net(1);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    train(net, &adam, 3);
    size_t len;
    unsigned char *buf = save(net, &len);
    mlp *loaded = NULL;
    assert_int_equal(mlp_load_buffer(&loaded, buf, len, NULL), MLP_OK);
    assert_int_equal(mlp_inputs(loaded), 2);
    assert_int_equal(mlp_outputs(loaded), 2);
    assert_same_params(net, loaded);
    float y1[8], y2[8];
    assert_int_equal(mlp_predict(net, 4, xs, y1), MLP_OK);
    assert_int_equal(mlp_predict(loaded, 4, xs, y2), MLP_OK);
    assert_memory_equal(y1, y2, sizeof y1);
    /* Saving what was loaded gives the same bytes. */
    size_t len2;
    unsigned char *buf2 = save(loaded, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf, buf2, len);
    free(buf);
    free(buf2);
    mlp_free(net);
    mlp_free(loaded);
}

static void test_file_round_trip_matches_buffer(void **state)
{
    (void)state;
    char path[] = "/tmp/mlp-test-io-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fclose(fdopen(fd, "w"));
    mlp *net = make_net(2);
    assert_int_equal(mlp_save(net, path), MLP_OK);
    size_t len;
    unsigned char *buf = save(net, &len);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *file_bytes = malloc(len + 1);
    assert_int_equal(fread(file_bytes, 1, len + 1, f), len);
    fclose(f);
    assert_memory_equal(buf, file_bytes, len);
    mlp *loaded = NULL;
    assert_int_equal(mlp_load(&loaded, path, NULL), MLP_OK);
    assert_same_params(net, loaded);
    remove(path);
    free(buf);
    free(file_bytes);
    mlp_free(net);
    mlp_free(loaded);
}

/* Train N steps, save, load, train M more: bit-identical to N + M steps
 * without the interruption, for every optimizer. */
static void test_training_resumes_exactly_after_load(void **state)
{
    (void)state;
    for (int kind = MLP_OPT_SGD; kind <= MLP_OPT_ADAMW; kind++) {
        mlp_optimizer opt = mlp_optimizer_default((mlp_optimizer_kind)kind);
        opt.learning_rate *= 5.0; /* move far enough that a lost moment shows */
        mlp *straight = make_net(3), *interrupted = make_net(3);
        train(straight, &opt, 12);
        train(interrupted, &opt, 5);
        size_t len;
        unsigned char *buf = save(interrupted, &len);
        mlp_free(interrupted);
        interrupted = NULL;
        assert_int_equal(mlp_load_buffer(&interrupted, buf, len, NULL), MLP_OK);
        train(interrupted, &opt, 7);
        assert_same_params(straight, interrupted);
        free(buf);
        mlp_free(straight);
        mlp_free(interrupted);
    }
}

/* A file holds only the current kind's moments, while the network may
 * keep an earlier kind's buffer: a kind started afresh must read it as +0
 * whatever is left there, or a moment that would be +0 (a gradient of -0)
 * comes out -0 in the network and +0 in its copy. Momentum leaves -8 in
 * its moment, SGD saves none, then Momentum starts again on a gradient of
 * dz * 0 = -0 (dz < 0) plus wd * w = 0 * w = -0 (w < 0). */
static void test_stale_moments_do_not_reach_a_fresh_kind(void **state)
{
    (void)state;
    static const mlp_layer layer = {1, &mlp_identity};
    mlp_config cfg = {2, 1, &layer, 1, MLP_INIT_AUTO, NULL};
    mlp *net, *copy = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    const float w[3] = {-0.5f, 0.5f, 0.0f}, ones[2] = {1.0f, 1.0f}, zero_one[2] = {0.0f, 1.0f};
    const float high = 5.0f;
    memcpy(mlp_params(net, NULL), w, sizeof w);
    mlp_optimizer momentum = mlp_optimizer_default(MLP_OPT_MOMENTUM);
    mlp_optimizer sgd = mlp_optimizer_default(MLP_OPT_SGD);
    assert_int_equal(mlp_train_step(net, 1, ones, &mlp_mse, &high, &momentum, NULL), MLP_OK);
    assert_int_equal(mlp_train_step(net, 1, ones, &mlp_mse, &high, &sgd, NULL), MLP_OK);
    size_t len;
    unsigned char *buf = save(net, &len);
    assert_int_equal(mlp_load_buffer(&copy, buf, len, NULL), MLP_OK);
    free(buf);
    for (int i = 0; i < 2; i++) {
        mlp *m = i ? copy : net;
        assert_int_equal(mlp_forward(m, 1, zero_one, NULL), MLP_OK);
        assert_int_equal(mlp_backward(m, &mlp_mse, &high, NULL), MLP_OK);
        float g0 = mlp_grads(m, NULL)[0];
        assert_true(g0 == 0.0f && signbit(g0)); /* the -0 that shows it */
        assert_int_equal(mlp_step(m, &momentum), MLP_OK);
    }
    size_t len_net, len_copy;
    unsigned char *a = save(net, &len_net), *b = save(copy, &len_copy);
    assert_int_equal(len_net, len_copy);
    assert_memory_equal(a, b, len_net);
    free(a);
    free(b);
    mlp_free(net);
    mlp_free(copy);
}

/* Without the saved moments the continuation differs: the resume test
 * above is not passing by accident. */
static void test_reset_optimizer_writes_weights_only(void **state)
{
    (void)state;
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    mlp *straight = make_net(4), *net = make_net(4);
    train(straight, &adam, 6);
    train(net, &adam, 3);
    size_t with_state, without_state;
    unsigned char *full = save(net, &with_state);
    assert_int_equal(mlp_reset_optimizer(net), MLP_OK);
    unsigned char *weights = save(net, &without_state);
    /* Two moments of every parameter, plus the OPTM header. */
    assert_int_equal(with_state - without_state, 12 + 16 + 2 * 4 * mlp_param_count(net));
    mlp *loaded = NULL;
    assert_int_equal(mlp_load_buffer(&loaded, weights, without_state, NULL), MLP_OK);
    train(loaded, &adam, 3);
    size_t n = mlp_param_count(net);
    assert_true(memcmp(mlp_params(straight, NULL), mlp_params(loaded, NULL), n * 4) != 0);
    assert_int_equal(mlp_reset_optimizer(NULL), MLP_ERR_INVALID);
    free(full);
    free(weights);
    mlp_free(straight);
    mlp_free(net);
    mlp_free(loaded);
}

static void test_save_buffer_reports_size_and_refuses_small_buffer(void **state)
{
    (void)state;
    mlp *net = make_net(5);
    size_t len = 0;
    assert_int_equal(mlp_save_buffer(net, NULL, 0, &len), MLP_OK);
    /* magic+version+flags 16, ARCH 12+8+3*(8+name), PARM 12+8+4n, END 12, CRC 4 */
    size_t expected =
        16 + 12 + 8 + (8 + 4) + (8 + 4) + (8 + 7) + 12 + 8 + 4 * mlp_param_count(net) + 12 + 4;
    assert_int_equal(len, expected);
    unsigned char small[64];
    memset(small, 0xab, sizeof small);
    size_t reported = 0;
    assert_int_equal(mlp_save_buffer(net, small, sizeof small, &reported), MLP_ERR_INVALID);
    assert_int_equal(reported, len);
    for (size_t i = 0; i < sizeof small; i++)
        assert_int_equal(small[i], 0xab);
    mlp_free(net); /* NULL arguments: test_save.c */
}

/* ---- the format, field by field ---------------------------------------- */

static void test_format_is_little_endian_with_trailing_crc(void **state)
{
    (void)state;
    mlp *net = make_net(6);
    size_t len;
    unsigned char *buf = save(net, &len);
    static const unsigned char magic[8] = {0x89, 'M', 'L', 'P', '\r', '\n', 0x1a, '\n'};
    assert_memory_equal(buf, magic, 8);
    assert_int_equal(read_le32(buf + 8), 1);  /* format version */
    assert_int_equal(read_le32(buf + 12), 0); /* flags */
    assert_memory_equal(buf + 16, "ARCH", 4);
    assert_int_equal(read_le32(buf + 28), 2); /* inputs */
    assert_int_equal(read_le32(buf + 32), 3); /* layers */
    assert_int_equal(read_le32(buf + 36), 6); /* units of layer 1 */
    assert_int_equal(read_le32(buf + 40), 4); /* its name's length */
    assert_memory_equal(buf + 44, "relu", 4);
    /* The first weight, as float bits in little-endian order. */
    size_t parm = 16 + 12 + 8 + (8 + 4) + (8 + 4) + (8 + 7);
    assert_memory_equal(buf + parm, "PARM", 4);
    uint32_t bits;
    memcpy(&bits, mlp_params(net, NULL), 4);
    assert_int_equal(read_le32(buf + parm + 20), bits);
    assert_memory_equal(buf + len - 16, "END\0", 4);
    /* The standard CRC-32 (zlib's, PNG's): its check value, then the file's. */
    assert_int_equal(crc32_reference((const unsigned char *)"123456789", 9), 0xcbf43926u);
    assert_int_equal(read_le32(buf + len - 4), crc32_reference(buf, len - 4));
    free(buf);
    mlp_free(net);
}

/* A file written by version 0.1.0 (format 1), kept in the tree: every later
 * library must load it and compute the same outputs. */
static void test_reads_format_1_file_from_the_tree(void **state)
{
    (void)state;
    mlp *net = NULL;
    assert_int_equal(mlp_load(&net, MLP_TEST_DATA "/xor-format1.mlp", NULL), MLP_OK);
    assert_int_equal(mlp_inputs(net), 2);
    assert_int_equal(mlp_outputs(net), 1);
    static const float inputs[8] = {0, 0, 0, 1, 1, 0, 1, 1};
    float y[4];
    assert_int_equal(mlp_predict(net, 4, inputs, y), MLP_OK);
    /* A trained XOR network: the truth table. */
    assert_true(y[0] < 0.1f && y[1] > 0.9f && y[2] > 0.9f && y[3] < 0.1f);
    mlp_free(net);
}

static void test_newer_format_version_is_refused(void **state)
{
    (void)state;
    mlp *net = make_net(7);
    size_t len;
    unsigned char *buf = save(net, &len);
    write_le32(buf + 8, 2);
    fix_crc(buf, len);
    mlp *out = (mlp *)buf; /* sentinel: must stay untouched */
    assert_int_equal(mlp_load_buffer(&out, buf, len, NULL), MLP_ERR_FORMAT);
    assert_ptr_equal(out, (mlp *)buf);
    write_le32(buf + 8, 0);
    fix_crc(buf, len);
    assert_int_equal(mlp_load_buffer(&out, buf, len, NULL), MLP_ERR_FORMAT);
    free(buf);
    mlp_free(net);
}

/* ---- activations by name ------------------------------------------------ */

static void softsign_forward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                             float *a)
{
    (void)self;
    for (size_t i = 0; i < rows * cols; i++)
        a[i] = z[i] / (1.0f + fabsf(z[i]));
}

static void softsign_backward(const mlp_activation *self, size_t rows, size_t cols, const float *z,
                              const float *a, const float *grad_a, float *grad_z)
{
    (void)self, (void)a;
    for (size_t i = 0; i < rows * cols; i++)
        grad_z[i] = grad_a[i] / ((1.0f + fabsf(z[i])) * (1.0f + fabsf(z[i])));
}

static const mlp_activation softsign = {MLP_ACTIVATION_ABI, "softsign",      softsign_forward,
                                        softsign_backward,  MLP_INIT_XAVIER, NULL};

static const mlp_activation *resolve_softsign(void *opaque, const char *name)
{
    int *calls = opaque;
    (*calls)++;
    return strcmp(name, "softsign") == 0 ? &softsign : NULL;
}

static const mlp_activation broken = {MLP_ACTIVATION_ABI, "softsign", softsign_forward, NULL,
                                      MLP_INIT_XAVIER,    NULL};

static const mlp_activation *resolve_broken(void *opaque, const char *name)
{
    (void)opaque;
    return strcmp(name, "softsign") == 0 ? &broken : NULL;
}

static void test_user_activation_loads_through_resolver(void **state)
{
    (void)state;
    const mlp_layer layers[2] = {{5, &softsign}, {1, &mlp_sigmoid}};
    mlp_config cfg = {2, 2, layers, 8, MLP_INIT_AUTO, NULL};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    size_t len;
    unsigned char *buf = save(net, &len);

    mlp *out = NULL;
    assert_int_equal(mlp_load_buffer(&out, buf, len, NULL), MLP_ERR_ACTIVATION);
    assert_null(out);

    int calls = 0;
    mlp_load_options opt = {MLP_LOAD_OPTIONS_ABI, NULL, resolve_softsign, &calls};
    assert_int_equal(mlp_load_buffer(&out, buf, len, &opt), MLP_OK);
    assert_int_equal(calls, 2); /* asked for every layer; "sigmoid" fell back */
    float y1[4], y2[4];
    assert_int_equal(mlp_predict(net, 2, xs, y1), MLP_OK);
    assert_int_equal(mlp_predict(out, 2, xs, y2), MLP_OK);
    assert_memory_equal(y1, y2, 2 * sizeof(float));
    mlp_free(out);

    out = NULL;
    opt.resolve = resolve_broken; /* a vtable without backward */
    assert_int_equal(mlp_load_buffer(&out, buf, len, &opt), MLP_ERR_INVALID);
    assert_null(out);
    free(buf);
    mlp_free(net);
}

static void test_activation_by_name_finds_every_builtin(void **state)
{
    (void)state;
    const mlp_activation *all[] = {&mlp_identity,   &mlp_sigmoid, &mlp_tanh,     &mlp_relu,
                                   &mlp_leaky_relu, &mlp_elu,     &mlp_softplus, &mlp_gelu,
                                   &mlp_silu,       &mlp_softmax};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        assert_ptr_equal(mlp_activation_by_name(all[i]->name), all[i]);
    assert_null(mlp_activation_by_name("softsign"));
    assert_null(mlp_activation_by_name(""));
    assert_null(mlp_activation_by_name(NULL));
}

static void test_unstorable_activation_name_is_refused(void **state)
{
    (void)state;
    mlp_activation long_name = softsign;
    long_name.name = "an_activation_name_that_is_much_longer_than_sixty_four_bytes_allowed";
    const mlp_layer layers[1] = {{2, &long_name}};
    mlp_config cfg = {2, 1, layers, 9, MLP_INIT_AUTO, NULL};
    mlp *net;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    size_t len = 0;
    assert_int_equal(mlp_save_buffer(net, NULL, 0, &len), MLP_ERR_INVALID);
    assert_int_equal(mlp_save(net, "/tmp/mlp-never-written.mlp"), MLP_ERR_INVALID);
    mlp_free(net);
}

/* ---- forged headers: limits before allocation --------------------------- */

typedef struct peak_allocator {
    test_allocator counting;
    size_t largest;
} peak_allocator;

static void *peak_alloc(void *opaque, size_t size)
{
    peak_allocator *p = opaque;
    if (size > p->largest)
        p->largest = size;
    return p->counting.base.alloc(&p->counting, size);
}

static void peak_free(void *opaque, void *ptr)
{
    peak_allocator *p = opaque;
    p->counting.base.free(&p->counting, ptr);
}

/* Loads buf with CRC fixed and asserts FORMAT with no allocation above
 * 64 KiB and nothing leaked. */
static void assert_forged_refused(unsigned char *buf, size_t len)
{
    fix_crc(buf, len);
    peak_allocator peak = {.largest = 0};
    test_allocator_init(&peak.counting, 0);
    mlp_allocator al = {peak_alloc, peak_free, &peak};
    mlp_load_options opt = {MLP_LOAD_OPTIONS_ABI, &al, NULL, NULL};
    mlp *out = NULL;
    assert_int_equal(mlp_load_buffer(&out, buf, len, &opt), MLP_ERR_FORMAT);
    assert_null(out);
    assert_true(peak.largest <= 65536);
    assert_int_equal(peak.counting.live, 0);
}

static void test_forged_counts_fail_before_allocating(void **state)
{
    (void)state;
    mlp *net = make_net(10);
    size_t len;
    unsigned char *orig = save(net, &len), *buf = malloc(len);
    const struct {
        size_t offset;
        uint32_t value;
    } forgeries[] = {
        {28, 0},                 /* inputs 0 */
        {28, MLP_MAX_UNITS + 1}, /* inputs over the limit */
        {28, 0xffffffffu},
        {32, 0}, /* no layers */
        {32, MLP_MAX_LAYERS + 1},
        {32, 0xffffffffu},
        {36, 0}, /* units 0 */
        {36, MLP_MAX_UNITS + 1},
        {36, MLP_MAX_UNITS}, /* within the limit, but the file has no such params */
        {40, 0},             /* empty name */
        {40, MLP_MAX_NAME + 1},
        {40, 0xffffffffu},
        {20, 0xffffffffu}, /* ARCH length */
    };
    for (size_t i = 0; i < sizeof forgeries / sizeof forgeries[0]; i++) {
        memcpy(buf, orig, len);
        write_le32(buf + forgeries[i].offset, forgeries[i].value);
        assert_forged_refused(buf, len);
    }
    /* Inputs and every layer at the unit limit: params beyond MLP_MAX_PARAMS. */
    memcpy(buf, orig, len);
    write_le32(buf + 28, MLP_MAX_UNITS);
    write_le32(buf + 36, MLP_MAX_UNITS);
    write_le32(buf + 48, MLP_MAX_UNITS);
    assert_forged_refused(buf, len);
    /* PARM length and count that disagree with the shapes. */
    size_t parm = 16 + 12 + 8 + (8 + 4) + (8 + 4) + (8 + 7);
    memcpy(buf, orig, len);
    write_le64(buf + parm + 4, 0xffffffffffffull);
    assert_forged_refused(buf, len);
    memcpy(buf, orig, len);
    write_le64(buf + parm + 12, mlp_param_count(net) + 1);
    assert_forged_refused(buf, len);
    free(orig);
    free(buf);
    mlp_free(net);
}

static void test_nonfinite_or_negative_state_is_refused(void **state)
{
    (void)state;
    mlp *net = make_net(11);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    train(net, &adam, 2);
    size_t len;
    unsigned char *orig = save(net, &len), *buf = malloc(len);
    size_t n = mlp_param_count(net);
    size_t parm = 16 + 12 + 8 + (8 + 4) + (8 + 4) + (8 + 7), optm = parm + 20 + 4 * n;
    size_t second_moment = optm + 12 + 16 + 4 * n;
    const uint32_t nan_bits = 0x7fc00000u, inf_bits = 0x7f800000u, minus_one = 0xbf800000u;
    const struct {
        size_t offset;
        uint32_t bits;
    } bad[] = {
        {parm + 20, nan_bits},      /* a weight */
        {parm + 20 + 4, inf_bits},  /* another */
        {optm + 28, nan_bits},      /* a first moment */
        {second_moment, minus_one}, /* a negative second moment */
        {optm + 12, 9},             /* unknown optimizer kind */
        {optm + 16, 1},             /* Adam with one moment */
    };
    assert_memory_equal(orig + optm, "OPTM", 4);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(buf, orig, len);
        write_le32(buf + bad[i].offset, bad[i].bits);
        assert_forged_refused(buf, len);
    }
    free(orig);
    free(buf);
    mlp_free(net);
}

/* Any step count a file may hold is usable: at 2^64 - 1 the count
 * saturates instead of wrapping to 0 (where Adam's bias correction would
 * divide by zero). */
static void test_largest_step_count_keeps_training(void **state)
{
    (void)state;
    mlp *net = make_net(15);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    train(net, &adam, 1);
    size_t len;
    unsigned char *buf = save(net, &len);
    size_t n = mlp_param_count(net);
    size_t optm = 16 + 12 + 8 + (8 + 4) + (8 + 4) + (8 + 7) + 20 + 4 * n;
    assert_memory_equal(buf + optm, "OPTM", 4);
    write_le64(buf + optm + 20, UINT64_MAX);
    fix_crc(buf, len);
    mlp *loaded = NULL;
    assert_int_equal(mlp_load_buffer(&loaded, buf, len, NULL), MLP_OK);
    train(loaded, &adam, 2);
    const float *p = mlp_params(loaded, NULL);
    for (size_t i = 0; i < n; i++)
        assert_true(isfinite(p[i]));
    free(buf);
    mlp_free(net);
    mlp_free(loaded);
}

/* ---- corruption of every kind ------------------------------------------- */

static void test_every_truncation_is_refused(void **state)
{
    (void)state;
    mlp *net = make_net(12);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    train(net, &adam, 1);
    size_t len;
    unsigned char *buf = save(net, &len);
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1); /* exact size: ASan sees overreads */
        memcpy(copy, buf, cut);
        mlp *out = NULL;
        assert_int_equal(mlp_load_buffer(&out, copy, cut, NULL), MLP_ERR_FORMAT);
        assert_null(out);
        free(copy);
    }
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    mlp *out = NULL;
    assert_int_equal(mlp_load_buffer(&out, longer, len + 1, NULL), MLP_ERR_FORMAT);
    assert_int_equal(mlp_load_buffer(&out, NULL, 0, NULL), MLP_ERR_FORMAT);
    assert_int_equal(mlp_load_buffer(&out, NULL, 1, NULL), MLP_ERR_INVALID);
    free(longer);
    free(buf);
    mlp_free(net);
}

static void test_every_bit_flip_is_refused(void **state)
{
    (void)state;
    mlp *net = make_net(13);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    train(net, &adam, 1);
    size_t len;
    unsigned char *buf = save(net, &len);
    for (size_t bit = 0; bit < 8 * len; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        mlp *out = NULL;
        /* CRC-32 detects every single-bit error. */
        assert_int_equal(mlp_load_buffer(&out, buf, len, NULL), MLP_ERR_FORMAT);
        assert_null(out);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    free(buf);
    mlp_free(net);
}

/* A mutated file that loads must be a working network. */
static void assert_usable(mlp *net)
{
    float x[16] = {0}, y[64];
    size_t inputs = mlp_inputs(net), outputs = mlp_outputs(net);
    if (inputs <= 16 && outputs <= 64)
        assert_true(mlp_predict(net, 1, x, y) == MLP_OK);
    size_t len;
    assert_int_equal(mlp_save_buffer(net, NULL, 0, &len), MLP_OK);
}

/* Random edits — byte changes, runs of bytes, insertions, deletions — both
 * as they are (the CRC catches them) and with the CRC recomputed (forged
 * files that reach every check of the parser). */
static void test_random_mutations_never_crash(void **state)
{
    (void)state;
    mlp *net = make_net(14);
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_RMSPROP);
    train(net, &adam, 1);
    size_t len;
    unsigned char *orig = save(net, &len);
    uint64_t rng = 2026;
    int loaded = 0, refused = 0;
    for (int trial = 0; trial < 4000; trial++) {
        size_t n = len;
        unsigned char *buf = malloc(len + 64);
        memcpy(buf, orig, len);
        int edits = 1 + (int)(test_rand(&rng) % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = test_rand(&rng) % n;
            switch (test_rand(&rng) % 4) {
            case 0: buf[at] = (unsigned char)test_rand(&rng); break;
            case 1: /* a small or huge integer where one may sit */
                if (at + 4 <= n)
                    write_le32(buf + at, test_rand(&rng) % 2 ? (uint32_t)test_rand(&rng) % 70
                                                             : (uint32_t)test_rand(&rng));
                break;
            case 2: /* insert a byte */
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = (unsigned char)test_rand(&rng);
                n++;
                break;
            default: /* delete a byte */ memmove(buf + at, buf + at + 1, n - at - 1); n--;
            }
        }
        unsigned char *exact = malloc(n);
        for (int forged = 0; forged < 2; forged++) {
            memcpy(exact, buf, n);
            if (forged)
                fix_crc(exact, n);
            mlp *out = NULL;
            mlp_status st = mlp_load_buffer(&out, exact, n, NULL);
            if (st == MLP_OK) {
                assert_usable(out);
                mlp_free(out);
                loaded++;
            } else {
                assert_true(st == MLP_ERR_FORMAT || st == MLP_ERR_ACTIVATION);
                assert_null(out);
                refused++;
            }
        }
        free(exact);
        free(buf);
    }
    print_message("mutations: %d loaded, %d refused\n", loaded, refused);
    assert_true(refused > 4000);
    free(orig);
    mlp_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffer_round_trip_is_exact),
        cmocka_unit_test(test_file_round_trip_matches_buffer),
        cmocka_unit_test(test_training_resumes_exactly_after_load),
        cmocka_unit_test(test_stale_moments_do_not_reach_a_fresh_kind),
        cmocka_unit_test(test_reset_optimizer_writes_weights_only),
        cmocka_unit_test(test_save_buffer_reports_size_and_refuses_small_buffer),
        cmocka_unit_test(test_format_is_little_endian_with_trailing_crc),
        cmocka_unit_test(test_reads_format_1_file_from_the_tree),
        cmocka_unit_test(test_newer_format_version_is_refused),
        cmocka_unit_test(test_user_activation_loads_through_resolver),
        cmocka_unit_test(test_activation_by_name_finds_every_builtin),
        cmocka_unit_test(test_unstorable_activation_name_is_refused),
        cmocka_unit_test(test_forged_counts_fail_before_allocating),
        cmocka_unit_test(test_nonfinite_or_negative_state_is_refused),
        cmocka_unit_test(test_largest_step_count_keeps_training),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_every_bit_flip_is_refused),
        cmocka_unit_test(test_random_mutations_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
