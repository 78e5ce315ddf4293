/* Model files on disk: mlp_save's atomic replace and what it leaves behind
 * when a file operation fails (EISDIR, ENOENT, EACCES, EFBIG), mlp_load's
 * I/O and format errors, allocation failures injected SQLite style, and
 * argument errors of the four save/load functions. Also the regression
 * cases found by the fuzz targets in tests/fuzz.
 *
 * Each test gets its own directory from mkdtemp under /tmp, removed with
 * everything in it afterwards. Failures that need another user or a file
 * size limit run mlp_save in a fork()ed child, which reports the status and
 * errno through a pipe, not its exit code: under the valgrind test setup
 * (--errors-for-leak-kinds=all) the child's exit code becomes 1, since it
 * exits holding the parent's heap. The parent checks the files. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, fchmod, setrlimit, fork */

#include "helpers.h"

#include "crc32_reference.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* A stand-in for "*out was never written": a distinct, aligned address that
 * no network can have. */
static max_align_t sentinel_object;
#define SENTINEL_NET ((mlp *)(void *)&sentinel_object)

/* The part of a file name mlp_save's temporaries carry. */
#define TEMPORARY_MARK ".tmp-"
/* Bounds the SQLite-style loops; a load makes a handful of allocations. */
#define MAX_FAILURE_POINTS 64
/* The unprivileged user and group the EACCES test drops to as root. */
#define NOBODY 65534
/* Sent by a child in place of a status when it could not set itself up. */
#define CHILD_SETUP_FAILED (-1)

/* ---- scratch directories ---------------------------------------------- */

typedef struct scratch {
    char dir[64];
    char path[256]; /* dir/model.mlp, the file most tests save to */
} scratch;

static int setup_scratch(void **state)
{
    scratch *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    snprintf(s->dir, sizeof s->dir, "/tmp/mlp-test-save-XXXXXX");
    if (!mkdtemp(s->dir)) {
        free(s);
        return -1;
    }
    snprintf(s->path, sizeof s->path, "%s/model.mlp", s->dir);
    *state = s;
    return 0;
}

/* Removes path and, if it is a directory, everything below it. */
static int remove_tree(const char *path)
{
    struct stat info;
    if (lstat(path, &info) != 0)
        return -1;
    if (!S_ISDIR(info.st_mode))
        return unlink(path);
    chmod(path, 0700); /* a test may have left it read-only */
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int result = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        char child[512];
        snprintf(child, sizeof child, "%s/%s", path, entry->d_name);
        if (remove_tree(child) != 0)
            result = -1;
    }
    closedir(d);
    return rmdir(path) == 0 ? result : -1;
}

static int teardown_scratch(void **state)
{
    scratch *s = *state;
    int result = remove_tree(s->dir);
    free(s);
    return result;
}

#define SCRATCH_TEST(f) cmocka_unit_test_setup_teardown(f, setup_scratch, teardown_scratch)

/* dir/name into buf. */
static const char *join(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < size);
    return buf;
}

/* Entries of dir other than . and .., and of those, how many have `mark`
 * in their name (NULL: count all). */
static int count_entries(const char *dir, const char *mark)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        count += !mark || strstr(entry->d_name, mark) != NULL;
    }
    closedir(d);
    return count;
}

static void assert_no_temporary(const char *dir)
{
    assert_int_equal(count_entries(dir, TEMPORARY_MARK), 0);
}

/* ---- files and networks ----------------------------------------------- */

/* The whole file into a fresh heap buffer (never NULL; *len may be 0). */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* mlp_save_buffer into a fresh heap buffer. */
static unsigned char *save_to_memory(const mlp *net, size_t *len)
{
    assert_int_equal(mlp_save_buffer(net, NULL, 0, len), MLP_OK);
    unsigned char *buf = malloc(*len);
    assert_non_null(buf);
    size_t written = 0;
    assert_int_equal(mlp_save_buffer(net, buf, *len, &written), MLP_OK);
    assert_int_equal(written, *len);
    return buf;
}

static void assert_file_contents(const char *path, const unsigned char *expected, size_t len)
{
    size_t actual_len;
    unsigned char *actual = read_file(path, &actual_len);
    assert_int_equal(actual_len, len);
    assert_memory_equal(actual, expected, len);
    free(actual);
}

static mlp *create_net(size_t inputs, size_t hidden, size_t outputs, uint64_t seed,
                       const mlp_allocator *allocator)
{
    const mlp_layer layers[2] = {{hidden, &mlp_tanh}, {outputs, &mlp_identity}};
    mlp_config cfg = {inputs, 2, layers, seed, MLP_INIT_AUTO, allocator};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    return net;
}

/* 3 -> 4 tanh -> 2 identity (26 parameters): a file of a couple of hundred
 * bytes. */
static mlp *create_small(uint64_t seed)
{
    return create_net(3, 4, 2, seed, NULL);
}

/* The small network after two Adam steps, so its file holds both moments
 * and loading it allocates for them too. */
static mlp *create_trained(const mlp_allocator *allocator)
{
    mlp *net = create_net(3, 4, 2, 11, allocator);
    const float x[6] = {0.5f, -1.0f, 0.25f, 1.5f, 0.0f, -0.75f};
    const float target[4] = {1.0f, -1.0f, 0.5f, 0.0f};
    mlp_optimizer adam = mlp_optimizer_default(MLP_OPT_ADAM);
    for (int step = 0; step < 2; step++) {
        assert_int_equal(mlp_forward(net, 2, x, NULL), MLP_OK);
        assert_int_equal(mlp_backward(net, &mlp_mse, target, NULL), MLP_OK);
        assert_int_equal(mlp_step(net, &adam), MLP_OK);
    }
    return net;
}

/* Same shapes, activations, optimizer state and bit-identical parameters:
 * the saved forms (which hold all of it) are equal, and the parameters are
 * compared directly as well. */
static void assert_same_network(mlp *actual, mlp *expected)
{
    assert_int_equal(mlp_inputs(actual), mlp_inputs(expected));
    assert_int_equal(mlp_outputs(actual), mlp_outputs(expected));
    size_t n_actual, n_expected;
    const float *p_actual = mlp_params(actual, &n_actual);
    const float *p_expected = mlp_params(expected, &n_expected);
    assert_int_equal(n_actual, n_expected);
    assert_memory_equal(p_actual, p_expected, n_actual * sizeof(float));
    size_t len_actual, len_expected;
    unsigned char *b_actual = save_to_memory(actual, &len_actual);
    unsigned char *b_expected = save_to_memory(expected, &len_expected);
    assert_int_equal(len_actual, len_expected);
    assert_memory_equal(b_actual, b_expected, len_actual);
    free(b_actual);
    free(b_expected);
}

/* mlp_load must give back exactly `expected`. */
static void assert_loads_as(const char *path, mlp *expected)
{
    mlp *loaded = NULL;
    assert_int_equal(mlp_load(&loaded, path, NULL), MLP_OK);
    assert_same_network(loaded, expected);
    mlp_free(loaded);
}

/* ---- saving in a child process ---------------------------------------- */

/* Forks; the child runs prepare (false: it could not), then
 * mlp_save(net, path), and writes the status and errno to a pipe, which
 * the parent reads into *status and *err. */
static void save_in_child(const mlp *net, const char *path, bool (*prepare)(const void *arg),
                          const void *arg, mlp_status *status, int *err)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        int result[2] = {CHILD_SETUP_FAILED, 0};
        if (prepare(arg)) {
            errno = 0;
            result[0] = (int)mlp_save(net, path);
        }
        result[1] = errno;
        ssize_t written = write(fds[1], result, sizeof result);
        _exit(written == (ssize_t)sizeof result ? 0 : 1);
    }
    close(fds[1]);
    int result[2];
    ssize_t got = read(fds[0], result, sizeof result);
    close(fds[0]);
    int wait_status = 0;
    assert_int_equal(waitpid(pid, &wait_status, 0), pid);
    assert_true(WIFEXITED(wait_status)); /* not killed by a signal */
    assert_int_equal(got, sizeof result);
    if (result[0] == CHILD_SETUP_FAILED)
        fail_msg("child could not set itself up: errno %d", result[1]);
    *status = (mlp_status)result[0];
    *err = result[1];
}

/* Becomes nobody: group first, while still allowed to change it. */
static bool drop_privileges(const void *arg)
{
    (void)arg;
    return setgid(NOBODY) == 0 && setuid(NOBODY) == 0 && geteuid() == NOBODY;
}

/* Files may grow to *(const rlim_t *)arg bytes; a write beyond fails with
 * EFBIG instead of raising SIGXFSZ. */
static bool limit_file_size(const void *arg)
{
    struct rlimit limit = {*(const rlim_t *)arg, *(const rlim_t *)arg};
    return signal(SIGXFSZ, SIG_IGN) != SIG_ERR && setrlimit(RLIMIT_FSIZE, &limit) == 0;
}

/* ---- mlp_save ---------------------------------------------------------- */

static void test_save_replaces_existing_file_and_leaves_no_temporary(void **state)
{
    scratch *s = *state;
    mlp *old_net = create_small(1);
    mlp *new_net = create_trained(NULL);
    assert_int_equal(mlp_save(old_net, s->path), MLP_OK);
    assert_loads_as(s->path, old_net);

    assert_int_equal(mlp_save(new_net, s->path), MLP_OK);
    assert_loads_as(s->path, new_net);
    size_t len;
    unsigned char *expected = save_to_memory(new_net, &len);
    assert_file_contents(s->path, expected, len);
    assert_no_temporary(s->dir);
    assert_int_equal(count_entries(s->dir, NULL), 1);

    free(expected);
    mlp_free(new_net);
    mlp_free(old_net);
}

static void test_save_to_directory_path_fails_with_eisdir(void **state)
{
    scratch *s = *state;
    char sub[256];
    join(sub, sizeof sub, s->dir, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    mlp *net = create_small(2);

    errno = 0;
    assert_int_equal(mlp_save(net, sub), MLP_ERR_IO);
    assert_int_equal(errno, EISDIR);
    assert_no_temporary(s->dir);
    assert_int_equal(count_entries(s->dir, NULL), 1); /* only sub */
    assert_int_equal(count_entries(sub, NULL), 0);
    struct stat info;
    assert_int_equal(stat(sub, &info), 0);
    assert_true(S_ISDIR(info.st_mode));
    mlp_free(net);
}

static void test_save_into_missing_directory_fails_with_enoent(void **state)
{
    scratch *s = *state;
    char path[256];
    join(path, sizeof path, s->dir, "missing/model.mlp");
    mlp *net = create_small(3);

    errno = 0;
    assert_int_equal(mlp_save(net, path), MLP_ERR_IO);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(count_entries(s->dir, NULL), 0);
    mlp_free(net);
}

/* chmod does not stop root: as root the save runs in a child that has
 * become nobody, against a root-owned 0755 directory. */
static void test_save_into_unwritable_directory_fails_with_eacces_and_keeps_old_file(void **state)
{
    scratch *s = *state;
    char ro_dir[256], path[256];
    join(ro_dir, sizeof ro_dir, s->dir, "readonly");
    join(path, sizeof path, ro_dir, "model.mlp");
    assert_int_equal(mkdir(ro_dir, 0755), 0);
    mlp *old_net = create_small(4);
    mlp *new_net = create_trained(NULL);
    assert_int_equal(mlp_save(old_net, path), MLP_OK);
    size_t old_len;
    unsigned char *old_bytes = read_file(path, &old_len);

    mlp_status st;
    int err;
    if (geteuid() == 0) {
        /* nobody must be able to reach the directory, not write in it. */
        assert_int_equal(chmod(s->dir, 0755), 0);
        assert_int_equal(chmod(ro_dir, 0755), 0);
        save_in_child(new_net, path, drop_privileges, NULL, &st, &err);
    } else {
        assert_int_equal(chmod(ro_dir, 0555), 0);
        errno = 0;
        st = mlp_save(new_net, path);
        err = errno;
        assert_int_equal(chmod(ro_dir, 0755), 0);
    }
    assert_int_equal(st, MLP_ERR_IO);
    assert_int_equal(err, EACCES);

    assert_file_contents(path, old_bytes, old_len);
    assert_loads_as(path, old_net);
    assert_no_temporary(ro_dir);
    assert_int_equal(count_entries(ro_dir, NULL), 1);
    free(old_bytes);
    mlp_free(new_net);
    mlp_free(old_net);
}

/* A file size limit between the old file's size and the new one's makes a
 * write fail part way through the temporary. */
static void test_save_write_failure_fails_with_efbig_and_keeps_old_file(void **state)
{
    scratch *s = *state;
    mlp *old_net = create_small(5);
    /* 64 -> 32 -> 1: 2113 parameters, about 8.5 KB, past stdio's buffer. */
    mlp *big_net = create_net(64, 32, 1, 6, NULL);
    assert_int_equal(mlp_save(old_net, s->path), MLP_OK);
    size_t old_len, new_len;
    unsigned char *old_bytes = read_file(s->path, &old_len);
    assert_int_equal(mlp_save_buffer(big_net, NULL, 0, &new_len), MLP_OK);
    rlim_t limit = 4096;
    assert_true(old_len < limit && limit < new_len);

    mlp_status st;
    int err;
    save_in_child(big_net, s->path, limit_file_size, &limit, &st, &err);
    assert_int_equal(st, MLP_ERR_IO);
    assert_int_equal(err, EFBIG);

    assert_file_contents(s->path, old_bytes, old_len);
    assert_loads_as(s->path, old_net);
    assert_no_temporary(s->dir);
    assert_int_equal(count_entries(s->dir, NULL), 1);
    free(old_bytes);
    mlp_free(big_net);
    mlp_free(old_net);
}

static void test_save_keeps_permissions_of_replaced_file(void **state)
{
    scratch *s = *state;
    mlp *net = create_small(7);
    assert_int_equal(mlp_save(net, s->path), MLP_OK);
    assert_int_equal(chmod(s->path, 0600), 0);

    mlp *other = create_small(8);
    assert_int_equal(mlp_save(other, s->path), MLP_OK);
    struct stat info;
    assert_int_equal(stat(s->path, &info), 0);
    assert_int_equal(info.st_mode & 07777, 0600);
    assert_loads_as(s->path, other);
    mlp_free(other);
    mlp_free(net);
}

/* ---- mlp_load ---------------------------------------------------------- */

static void test_load_missing_file_fails_with_enoent(void **state)
{
    scratch *s = *state;
    mlp *out = SENTINEL_NET;
    errno = 0;
    assert_int_equal(mlp_load(&out, s->path, NULL), MLP_ERR_IO);
    assert_int_equal(errno, ENOENT);
    assert_ptr_equal(out, SENTINEL_NET);
}

static void test_load_directory_fails_with_io_error(void **state)
{
    scratch *s = *state;
    mlp *out = SENTINEL_NET;
    errno = 0;
    assert_int_equal(mlp_load(&out, s->dir, NULL), MLP_ERR_IO);
    assert_int_equal(errno, EISDIR);
    assert_ptr_equal(out, SENTINEL_NET);
}

static void test_load_empty_file_is_format_error(void **state)
{
    scratch *s = *state;
    write_file(s->path, "", 0);
    mlp *out = SENTINEL_NET;
    assert_int_equal(mlp_load(&out, s->path, NULL), MLP_ERR_FORMAT);
    assert_ptr_equal(out, SENTINEL_NET);
}

static void test_load_model_followed_by_extra_bytes_is_format_error(void **state)
{
    scratch *s = *state;
    mlp *net = create_trained(NULL);
    size_t len;
    unsigned char *bytes = save_to_memory(net, &len);
    /* One stray byte; a whole second model; and 4 bytes that are the CRC-32
     * of everything before them, so the file also ends in a valid checksum. */
    unsigned char *longer = malloc(2 * len);
    assert_non_null(longer);
    memcpy(longer, bytes, len);
    memcpy(longer + len, bytes, len);
    const size_t extras[] = {1, len, 4};
    for (size_t i = 0; i < 3; i++) {
        if (extras[i] == 4) {
            uint32_t crc = crc32_reference(bytes, len);
            for (int b = 0; b < 4; b++)
                longer[len + (size_t)b] = (unsigned char)(crc >> (8 * b));
        }
        write_file(s->path, longer, len + extras[i]);
        mlp *out = SENTINEL_NET;
        assert_int_equal(mlp_load(&out, s->path, NULL), MLP_ERR_FORMAT);
        assert_ptr_equal(out, SENTINEL_NET);
    }
    write_file(s->path, bytes, len); /* and without them it loads */
    assert_loads_as(s->path, net);
    free(longer);
    free(bytes);
    mlp_free(net);
}

static void test_load_every_truncation_is_format_error(void **state)
{
    scratch *s = *state;
    mlp *net = create_trained(NULL);
    size_t len;
    unsigned char *bytes = save_to_memory(net, &len);
    for (size_t prefix = 0; prefix < len; prefix++) {
        write_file(s->path, bytes, prefix);
        mlp *out = SENTINEL_NET;
        mlp_status st = mlp_load(&out, s->path, NULL);
        if (st != MLP_ERR_FORMAT)
            fail_msg("prefix of %zu of %zu bytes: status %d", prefix, len, (int)st);
        assert_ptr_equal(out, SENTINEL_NET);
    }
    free(bytes);
    mlp_free(net);
}

/* ---- allocation failures ----------------------------------------------- */

static void test_load_fails_cleanly_on_every_allocation_failure(void **state)
{
    scratch *s = *state;
    mlp *net = create_trained(NULL);
    assert_int_equal(mlp_save(net, s->path), MLP_OK);
    long k = 1;
    for (;; k++) {
        assert_true(k < MAX_FAILURE_POINTS);
        test_allocator t;
        test_allocator_init(&t, k);
        mlp_load_options options = {MLP_LOAD_OPTIONS_ABI, &t.base, NULL, NULL};
        mlp *out = SENTINEL_NET;
        mlp_status st = mlp_load(&out, s->path, &options);
        if (st == MLP_OK) {
            assert_true(t.live > 0); /* the network came from this allocator */
            assert_same_network(out, net);
            mlp_free(out);
            assert_int_equal(t.live, 0);
            break;
        }
        assert_int_equal(st, MLP_ERR_NOMEM);
        assert_ptr_equal(out, SENTINEL_NET);
        assert_int_equal(t.live, 0);
    }
    assert_true(k > 4); /* layers, network, its arrays, the two moments */
    mlp_free(net);
}

static void test_load_buffer_fails_cleanly_on_every_allocation_failure(void **state)
{
    (void)state;
    mlp *net = create_trained(NULL);
    size_t len;
    unsigned char *bytes = save_to_memory(net, &len);
    long k = 1;
    for (;; k++) {
        assert_true(k < MAX_FAILURE_POINTS);
        test_allocator t;
        test_allocator_init(&t, k);
        mlp_load_options options = {MLP_LOAD_OPTIONS_ABI, &t.base, NULL, NULL};
        mlp *out = SENTINEL_NET;
        mlp_status st = mlp_load_buffer(&out, bytes, len, &options);
        if (st == MLP_OK) {
            assert_true(t.live > 0);
            assert_same_network(out, net);
            mlp_free(out);
            assert_int_equal(t.live, 0);
            break;
        }
        assert_int_equal(st, MLP_ERR_NOMEM);
        assert_ptr_equal(out, SENTINEL_NET);
        assert_int_equal(t.live, 0);
    }
    assert_true(k > 4);
    free(bytes);
    mlp_free(net);
}

static void test_save_allocation_failure_keeps_old_file(void **state)
{
    scratch *s = *state;
    mlp *old_net = create_small(9);
    assert_int_equal(mlp_save(old_net, s->path), MLP_OK);
    size_t old_len;
    unsigned char *old_bytes = read_file(s->path, &old_len);

    test_allocator t;
    test_allocator_init(&t, 0);
    mlp *net = create_trained(&t.base);
    long k = 1;
    for (;; k++) {
        assert_true(k < MAX_FAILURE_POINTS);
        t.calls = 0; /* count from here: the failure hits mlp_save's own allocations */
        t.fail_at = k;
        long live_before = t.live;
        mlp_status st = mlp_save(net, s->path);
        assert_int_equal(t.live, live_before);
        if (st == MLP_OK)
            break;
        assert_int_equal(st, MLP_ERR_NOMEM);
        assert_file_contents(s->path, old_bytes, old_len);
        assert_no_temporary(s->dir);
    }
    assert_true(k > 1); /* at least one failure was injected */
    t.fail_at = 0;
    assert_loads_as(s->path, net);
    assert_no_temporary(s->dir);
    mlp_free(net);
    assert_int_equal(t.live, 0);
    free(old_bytes);
    mlp_free(old_net);
}

/* ---- argument errors --------------------------------------------------- */

static void test_save_rejects_null_and_empty_arguments(void **state)
{
    scratch *s = *state;
    mlp *net = create_small(10);
    assert_int_equal(mlp_save(NULL, s->path), MLP_ERR_INVALID);
    assert_int_equal(mlp_save(net, NULL), MLP_ERR_INVALID);
    assert_int_equal(mlp_save(net, ""), MLP_ERR_INVALID);
    assert_int_equal(count_entries(s->dir, NULL), 0);
    mlp_free(net);
}

static void test_load_rejects_null_arguments(void **state)
{
    scratch *s = *state;
    mlp *net = create_small(11);
    assert_int_equal(mlp_save(net, s->path), MLP_OK);
    mlp *out = SENTINEL_NET;
    assert_int_equal(mlp_load(NULL, s->path, NULL), MLP_ERR_INVALID);
    assert_int_equal(mlp_load(&out, NULL, NULL), MLP_ERR_INVALID);
    assert_ptr_equal(out, SENTINEL_NET);
    mlp_free(net);
}

static void test_save_buffer_rejects_null_arguments(void **state)
{
    (void)state;
    mlp *net = create_small(12);
    size_t len = 0;
    assert_int_equal(mlp_save_buffer(net, NULL, 0, &len), MLP_OK);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    memset(buf, 0xa5, len);
    size_t untouched = 12345;
    assert_int_equal(mlp_save_buffer(NULL, buf, len, &untouched), MLP_ERR_INVALID);
    assert_int_equal(untouched, 12345);
    assert_int_equal(mlp_save_buffer(net, buf, len, NULL), MLP_ERR_INVALID);
    assert_int_equal(mlp_save_buffer(net, NULL, 0, NULL), MLP_ERR_INVALID);
    assert_int_equal(mlp_save_buffer(NULL, NULL, 0, &untouched), MLP_ERR_INVALID);
    assert_int_equal(untouched, 12345);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(buf[i], 0xa5);
    free(buf);
    mlp_free(net);
}

static void test_load_buffer_rejects_null_arguments(void **state)
{
    (void)state;
    mlp *net = create_small(13);
    size_t len;
    unsigned char *bytes = save_to_memory(net, &len);
    mlp *out = SENTINEL_NET;
    assert_int_equal(mlp_load_buffer(NULL, bytes, len, NULL), MLP_ERR_INVALID);
    assert_int_equal(mlp_load_buffer(&out, NULL, len, NULL), MLP_ERR_INVALID);
    assert_ptr_equal(out, SENTINEL_NET);
    free(bytes);
    mlp_free(net);
}

static void test_load_rejects_wrong_options_abi(void **state)
{
    scratch *s = *state;
    mlp *net = create_small(14);
    assert_int_equal(mlp_save(net, s->path), MLP_OK);
    size_t len;
    unsigned char *bytes = save_to_memory(net, &len);
    const uint32_t wrong[] = {0u, MLP_LOAD_OPTIONS_ABI + 1u, 0xffffffffu};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        mlp_load_options options = {wrong[i], NULL, NULL, NULL};
        mlp *out = SENTINEL_NET;
        assert_int_equal(mlp_load(&out, s->path, &options), MLP_ERR_INVALID);
        assert_int_equal(mlp_load_buffer(&out, bytes, len, &options), MLP_ERR_INVALID);
        assert_ptr_equal(out, SENTINEL_NET);
    }
    free(bytes);
    mlp_free(net);
}

static void test_load_rejects_allocator_missing_a_function(void **state)
{
    scratch *s = *state;
    mlp *net = create_small(15);
    assert_int_equal(mlp_save(net, s->path), MLP_OK);
    size_t len;
    unsigned char *bytes = save_to_memory(net, &len);
    test_allocator t;
    test_allocator_init(&t, 0);
    mlp_allocator only_alloc = {counting_alloc, NULL, &t};
    mlp_allocator only_free = {NULL, counting_free, &t};
    const mlp_allocator *halves[] = {&only_alloc, &only_free};
    for (size_t i = 0; i < 2; i++) {
        mlp_load_options options = {MLP_LOAD_OPTIONS_ABI, halves[i], NULL, NULL};
        mlp *out = SENTINEL_NET;
        assert_int_equal(mlp_load(&out, s->path, &options), MLP_ERR_INVALID);
        assert_int_equal(mlp_load_buffer(&out, bytes, len, &options), MLP_ERR_INVALID);
        assert_ptr_equal(out, SENTINEL_NET);
    }
    assert_int_equal(t.calls, 0);
    free(bytes);
    mlp_free(net);
}

/* ---- regressions found by tests/fuzz ----------------------------------- */

/* fuzz_train: an MSE of 1e40 is finite in double but Inf as the float
 * stored in *loss_out, while every gradient stays finite; backward
 * returned MLP_OK with *loss_out = Inf. */
static void test_backward_refuses_loss_beyond_float_range(void **state)
{
    (void)state;
    const mlp_layer layer = {1, &mlp_identity};
    mlp_config cfg = {1, 1, &layer, 1, MLP_INIT_AUTO, NULL};
    mlp *net = NULL;
    assert_int_equal(mlp_create(&net, &cfg), MLP_OK);
    float *params = mlp_params(net, NULL);
    params[0] = 1.0f; /* w */
    params[1] = 0.0f; /* b */
    const float x = 0.0f, far = 1e20f, near = 1.0f;
    float loss = -1.0f;

    assert_int_equal(mlp_forward(net, 1, &x, NULL), MLP_OK);
    assert_int_equal(mlp_backward(net, &mlp_mse, &far, &loss), MLP_ERR_NONFINITE);
    assert_true(loss == -1.0f);
    const float *grads = mlp_grads(net, NULL);
    assert_true(grads[0] == 0.0f && grads[1] == 0.0f);
    /* The forward stays pending: a representable loss still goes through. */
    assert_int_equal(mlp_backward(net, &mlp_mse, &near, &loss), MLP_OK);
    assert_close(loss, 1.0, 0.0);
    mlp_free(net);
}

/* fuzz_load (a finding of the harness, not of the library): finite
 * parameters can overflow an output on a zero input — relu 2 -> 3, then
 * softmax 1 with z = -2.1e21 * 4.8e19 = -Inf. Such a file loads, predicts
 * MLP_ERR_NONFINITE with the outputs written, and saves back byte for byte. */
static void test_model_overflowing_its_output_loads_and_saves_back(void **state)
{
    scratch *s = *state;
    const char *path = MLP_TEST_DATA "/../fuzz/regressions/load/predict-overflows-output.mlp";
    size_t len;
    unsigned char *bytes = read_file(path, &len);
    mlp *net = NULL;
    assert_int_equal(mlp_load(&net, path, NULL), MLP_OK);
    assert_int_equal(mlp_inputs(net), 2);
    assert_int_equal(mlp_outputs(net), 1);
    const float x[2] = {0.0f, 0.0f};
    float y = 0.0f;
    assert_int_equal(mlp_predict(net, 1, x, &y), MLP_ERR_NONFINITE);
    bool overflowed = !isfinite(y);
    assert_true(overflowed);
    assert_int_equal(mlp_save(net, s->path), MLP_OK);
    assert_file_contents(s->path, bytes, len);
    free(bytes);
    mlp_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SCRATCH_TEST(test_save_replaces_existing_file_and_leaves_no_temporary),
        SCRATCH_TEST(test_save_to_directory_path_fails_with_eisdir),
        SCRATCH_TEST(test_save_into_missing_directory_fails_with_enoent),
        SCRATCH_TEST(test_save_into_unwritable_directory_fails_with_eacces_and_keeps_old_file),
        SCRATCH_TEST(test_save_write_failure_fails_with_efbig_and_keeps_old_file),
        SCRATCH_TEST(test_save_keeps_permissions_of_replaced_file),
        SCRATCH_TEST(test_load_missing_file_fails_with_enoent),
        SCRATCH_TEST(test_load_directory_fails_with_io_error),
        SCRATCH_TEST(test_load_empty_file_is_format_error),
        SCRATCH_TEST(test_load_model_followed_by_extra_bytes_is_format_error),
        SCRATCH_TEST(test_load_every_truncation_is_format_error),
        SCRATCH_TEST(test_load_fails_cleanly_on_every_allocation_failure),
        cmocka_unit_test(test_load_buffer_fails_cleanly_on_every_allocation_failure),
        SCRATCH_TEST(test_save_allocation_failure_keeps_old_file),
        SCRATCH_TEST(test_save_rejects_null_and_empty_arguments),
        SCRATCH_TEST(test_load_rejects_null_arguments),
        cmocka_unit_test(test_save_buffer_rejects_null_arguments),
        cmocka_unit_test(test_load_buffer_rejects_null_arguments),
        SCRATCH_TEST(test_load_rejects_wrong_options_abi),
        SCRATCH_TEST(test_load_rejects_allocator_missing_a_function),
        cmocka_unit_test(test_backward_refuses_loss_beyond_float_range),
        SCRATCH_TEST(test_model_overflowing_its_output_loads_and_saves_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
