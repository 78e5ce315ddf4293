/* Model files: the format of docs/model-format.md, written and read through
 * one byte-stream abstraction for memory and files, and the atomic save.
 *
 * Layout: magic, version, flags, then sections (4-byte tag, u64 length,
 * payload): ARCH, PARM, optionally OPTM, END; then the CRC-32 of every byte
 * before it. All integers and floats little-endian. */
#define _POSIX_C_SOURCE 200809L

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FORMAT_VERSION 1u
static const unsigned char magic[8] = {0x89, 'M', 'L', 'P', '\r', '\n', 0x1a, '\n'};

/* Section header: 4-byte tag and u64 payload length. */
#define SECTION_HEADER 12u
/* Per float array conversion chunk; keeps the stack small. */
#define CHUNK_FLOATS 1024

/* ---- CRC-32 (IEEE 802.3, reflected, as zlib's crc32) ------------------- */

/* Built into each reader and writer: no global table to initialise. */
static void crc32_table(uint32_t table[256])
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[n] = c;
    }
}

static uint32_t crc32_update(const uint32_t *table, uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- writing ----------------------------------------------------------- */

typedef struct writer {
    unsigned char *buf; /* memory target; NULL with no file: count only */
    FILE *file;
    size_t pos; /* bytes produced so far */
    uint32_t crc;
    bool failed; /* a file write failed; errno tells why */
    uint32_t table[256];
} writer;

static void put(writer *w, const void *data, size_t n)
{
    if (w->buf || w->file)
        w->crc = crc32_update(w->table, w->crc, data, n);
    if (w->file) {
        if (!w->failed && fwrite(data, 1, n, w->file) != n)
            w->failed = true;
    } else if (w->buf) {
        memcpy(w->buf + w->pos, data, n);
    }
    w->pos += n;
}

static void put_u32(writer *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(w, b, 4);
}

static void put_u64(writer *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void put_floats(writer *w, const float *v, size_t n)
{
    unsigned char chunk[4 * CHUNK_FLOATS];
    while (n > 0) {
        size_t k = n < CHUNK_FLOATS ? n : CHUNK_FLOATS;
        for (size_t i = 0; i < k; i++) {
            uint32_t bits;
            memcpy(&bits, &v[i], 4);
            for (int j = 0; j < 4; j++)
                chunk[4 * i + (size_t)j] = (unsigned char)(bits >> (8 * j));
        }
        put(w, chunk, 4 * k);
        v += k;
        n -= k;
    }
}

static void put_section(writer *w, const char tag[4], uint64_t length)
{
    put(w, tag, 4);
    put_u64(w, length);
}

/* Writes the whole model. MLP_ERR_INVALID if an activation name cannot be
 * stored (empty or longer than MLP_MAX_NAME). */
static mlp_status write_model(writer *w, const mlp *net)
{
    uint64_t arch_length = 8;
    for (size_t l = 0; l < net->n_layers; l++) {
        size_t name_len = strlen(net->layers[l].activation->name);
        if (name_len == 0 || name_len > MLP_MAX_NAME)
            return MLP_ERR_INVALID;
        arch_length += 8 + name_len;
    }
    put(w, magic, sizeof magic);
    put_u32(w, FORMAT_VERSION);
    put_u32(w, 0); /* flags: none defined */

    put_section(w, "ARCH", arch_length);
    put_u32(w, (uint32_t)net->inputs);
    put_u32(w, (uint32_t)net->n_layers);
    for (size_t l = 0; l < net->n_layers; l++) {
        const char *name = net->layers[l].activation->name;
        put_u32(w, (uint32_t)net->layers[l].units);
        put_u32(w, (uint32_t)strlen(name));
        put(w, name, strlen(name));
    }

    put_section(w, "PARM", 8 + 4 * (uint64_t)net->n_params);
    put_u64(w, net->n_params);
    put_floats(w, net->params, net->n_params);

    if (net->opt_kind >= 0) {
        int moments = mlp_moments_needed(net->opt_kind);
        put_section(w, "OPTM", 16 + 4 * (uint64_t)moments * net->n_params);
        put_u32(w, (uint32_t)net->opt_kind);
        put_u32(w, (uint32_t)moments);
        put_u64(w, net->opt_steps);
        if (moments >= 1)
            put_floats(w, net->moment1, net->n_params);
        if (moments >= 2)
            put_floats(w, net->moment2, net->n_params);
    }

    put_section(w, "END\0", 0);
    uint32_t crc = w->crc;
    unsigned char b[4] = {(unsigned char)crc, (unsigned char)(crc >> 8), (unsigned char)(crc >> 16),
                          (unsigned char)(crc >> 24)};
    put(w, b, 4);
    return MLP_OK;
}

mlp_status mlp_save_buffer(const mlp *net, void *buf, size_t cap, size_t *len)
{
    if (!net || !len)
        return MLP_ERR_INVALID;
    writer count = {0};
    mlp_status st = write_model(&count, net);
    if (st != MLP_OK)
        return st;
    *len = count.pos;
    if (!buf)
        return MLP_OK;
    if (cap < count.pos)
        return MLP_ERR_INVALID;
    writer w = {.buf = buf};
    crc32_table(w.table);
    return write_model(&w, net);
}

/* ---- atomic save ------------------------------------------------------- */

/* fsyncs the directory holding path, so the rename itself is durable.
 * Best effort: some file systems cannot sync a directory. */
static void sync_directory(char *path_copy)
{
    char *slash = strrchr(path_copy, '/');
    const char *dir = ".";
    if (slash == path_copy)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = path_copy;
    }
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Creates a new temporary file next to path, named path.tmp-XXXXXXXX;
 * returns its descriptor and leaves the name in tmp, or -1 with errno. The
 * suffix mixes time, pid and the network's address; O_EXCL makes a clash
 * retry, never overwrite. */
static int create_temporary(const mlp *net, const char *path, char *tmp, size_t tmp_size)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t seed = (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^
                    ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)net;
    for (int attempt = 0; attempt < 64; attempt++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        snprintf(tmp, tmp_size, "%s.tmp-%08x", path, (unsigned)(seed >> 32));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

mlp_status mlp_save(const mlp *net, const char *path)
{
    if (!net || !path || !*path)
        return MLP_ERR_INVALID;
    writer count = {0};
    mlp_status st = write_model(&count, net); /* refuses unstorable names first */
    if (st != MLP_OK)
        return st;

    size_t tmp_size = strlen(path) + 16;
    char *tmp = mlp_alloc(&net->allocator, tmp_size, 1);
    if (!tmp)
        return MLP_ERR_NOMEM;
    int fd = create_temporary(net, path, tmp, tmp_size);
    if (fd < 0) {
        int saved = errno;
        mlp_dealloc(&net->allocator, tmp);
        errno = saved;
        return MLP_ERR_IO;
    }
    /* Keep the permissions of the file being replaced. */
    struct stat old;
    if (stat(path, &old) == 0 && S_ISREG(old.st_mode))
        fchmod(fd, old.st_mode & 07777);

    FILE *file = fdopen(fd, "wb");
    bool ok = file != NULL;
    if (ok) {
        writer w = {.file = file};
        crc32_table(w.table);
        write_model(&w, net);
        ok = !w.failed && fflush(file) == 0 && fsync(fd) == 0;
    }
    int saved = errno;
    if (file ? fclose(file) != 0 : close(fd) != 0) {
        if (ok)
            saved = errno;
        ok = false;
    }
    if (ok && rename(tmp, path) != 0) {
        saved = errno;
        ok = false;
    }
    if (ok) {
        memcpy(tmp, path, strlen(path) + 1);
        sync_directory(tmp);
    } else {
        unlink(tmp);
    }
    mlp_dealloc(&net->allocator, tmp);
    errno = saved;
    return ok ? MLP_OK : MLP_ERR_IO;
}

/* ---- reading ----------------------------------------------------------- */

typedef struct reader {
    const unsigned char *mem; /* memory source, or NULL */
    FILE *file;
    size_t pos, size; /* bytes consumed; total size (SIZE_MAX: unknown) */
    uint32_t crc;
    mlp_status status; /* first failure; reads after it do nothing */
    uint32_t table[256];
} reader;

static bool get(reader *r, void *dst, size_t n)
{
    if (r->status != MLP_OK)
        return false;
    if (r->mem) {
        if (n > r->size - r->pos) {
            r->status = MLP_ERR_FORMAT; /* truncated */
            return false;
        }
        memcpy(dst, r->mem + r->pos, n);
    } else if (fread(dst, 1, n, r->file) != n) {
        r->status = ferror(r->file) ? MLP_ERR_IO : MLP_ERR_FORMAT;
        return false;
    }
    r->crc = crc32_update(r->table, r->crc, dst, n);
    r->pos += n;
    return true;
}

static uint32_t get_u32(reader *r)
{
    unsigned char b[4] = {0};
    get(r, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t get_u64(reader *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

/* Reads n floats; all must be finite (and >= 0 if nonnegative). */
static void get_floats(reader *r, float *v, size_t n, bool nonnegative)
{
    unsigned char chunk[4 * CHUNK_FLOATS];
    while (n > 0 && r->status == MLP_OK) {
        size_t k = n < CHUNK_FLOATS ? n : CHUNK_FLOATS;
        if (!get(r, chunk, 4 * k))
            return;
        for (size_t i = 0; i < k; i++) {
            const unsigned char *b = chunk + 4 * i;
            uint32_t bits =
                (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&v[i], &bits, 4);
        }
        if (!mlp_all_finite(v, k))
            r->status = MLP_ERR_FORMAT;
        for (size_t i = 0; nonnegative && i < k; i++)
            if (v[i] < 0.0f)
                r->status = MLP_ERR_FORMAT;
        v += k;
        n -= k;
    }
}

/* Reads a section header; FORMAT unless the tag is `tag`. */
static uint64_t get_section(reader *r, const char tag[4])
{
    char found[4] = {0};
    get(r, found, 4);
    uint64_t length = get_u64(r);
    if (r->status == MLP_OK && memcmp(found, tag, 4) != 0)
        r->status = MLP_ERR_FORMAT;
    return length;
}

/* Whether the source can still hold `need` more bytes: checked before any
 * allocation sized by the file, so a forged size fails without allocating.
 * Sources of unknown size (pipes) rely on the MLP_MAX_* limits alone. */
static bool can_hold(const reader *r, uint64_t need)
{
    return r->size == SIZE_MAX || need <= (uint64_t)(r->size - r->pos);
}

static const mlp_activation *resolve(const mlp_load_options *opt, const char *name)
{
    const mlp_activation *act = NULL;
    if (opt && opt->resolve)
        act = opt->resolve(opt->resolve_opaque, name);
    return act ? act : mlp_activation_by_name(name);
}

/* ARCH: shapes and activations, into layers (n_layers entries allocated
 * here). Every count is checked against its limit before it is used. */
static mlp_status read_arch(reader *r, const mlp_load_options *opt, const mlp_allocator *al,
                            mlp_config *cfg, mlp_layer **layers_out)
{
    uint64_t length = get_section(r, "ARCH");
    size_t start = r->pos;
    uint32_t inputs = get_u32(r), n_layers = get_u32(r);
    if (r->status != MLP_OK)
        return r->status;
    if (inputs == 0 || inputs > MLP_MAX_UNITS || n_layers == 0 || n_layers > MLP_MAX_LAYERS ||
        length < 8 + 9 * (uint64_t)n_layers || !can_hold(r, length - 8))
        return MLP_ERR_FORMAT;
    mlp_layer *layers = mlp_alloc(al, n_layers, sizeof *layers);
    if (!layers)
        return MLP_ERR_NOMEM;
    mlp_status st = MLP_OK;
    for (uint32_t l = 0; l < n_layers && st == MLP_OK; l++) {
        uint32_t units = get_u32(r), name_len = get_u32(r);
        char name[MLP_MAX_NAME + 1];
        if (r->status == MLP_OK &&
            (units == 0 || units > MLP_MAX_UNITS || name_len == 0 || name_len > MLP_MAX_NAME))
            r->status = MLP_ERR_FORMAT;
        if (!get(r, name, name_len)) {
            st = r->status;
            break;
        }
        name[name_len] = '\0';
        if (strlen(name) != name_len) /* a NUL inside */
            st = MLP_ERR_FORMAT;
        else if (!(layers[l].activation = resolve(opt, name)))
            st = MLP_ERR_ACTIVATION;
        layers[l].units = units;
    }
    if (st == MLP_OK && r->pos - start != length)
        st = MLP_ERR_FORMAT;
    if (st != MLP_OK) {
        mlp_dealloc(al, layers);
        return st;
    }
    cfg->inputs = inputs;
    cfg->n_layers = n_layers;
    cfg->layers = layers;
    *layers_out = layers;
    return MLP_OK;
}

/* OPTM: optimizer kind, step count and moments, into the new network. */
static mlp_status read_optimizer(reader *r, uint64_t length, mlp *net)
{
    uint32_t kind = get_u32(r), moments = get_u32(r);
    uint64_t steps = get_u64(r);
    if (r->status != MLP_OK)
        return r->status;
    if (kind > MLP_OPT_ADAMW || moments != (uint32_t)mlp_moments_needed((int)kind) ||
        length != 16 + 4 * (uint64_t)moments * net->n_params || !can_hold(r, length - 16))
        return MLP_ERR_FORMAT;
    float *m[2] = {NULL, NULL};
    for (uint32_t k = 0; k < moments; k++)
        if (!(m[k] = mlp_alloc(&net->allocator, net->n_params, sizeof(float)))) {
            mlp_dealloc(&net->allocator, m[0]);
            return MLP_ERR_NOMEM;
        }
    net->moment1 = m[0];
    net->moment2 = m[1];
    net->opt_kind = (int)kind;
    net->opt_steps = steps;
    /* RMSProp's only moment and Adam's second are running squares. */
    for (uint32_t k = 0; k < moments; k++)
        get_floats(r, m[k], net->n_params,
                   k + 1 == moments && kind != MLP_OPT_MOMENTUM && kind != MLP_OPT_NESTEROV);
    return r->status;
}

/* Checks the trailing CRC before anything is parsed, so any corruption is
 * MLP_ERR_FORMAT rather than whatever a damaged field happens to look like
 * (an unknown activation name, say). Files are read twice for this; a
 * source of unknown size (a pipe) is checked once, at its end. */
static mlp_status verify_checksum(reader *r)
{
    if (r->size == SIZE_MAX)
        return MLP_OK;
    if (r->size < 4)
        return MLP_ERR_FORMAT;
    reader scan = *r;
    unsigned char chunk[4096];
    for (size_t left = r->size - 4; left > 0;) {
        size_t k = left < sizeof chunk ? left : sizeof chunk;
        if (!get(&scan, chunk, k))
            return scan.status;
        left -= k;
    }
    uint32_t computed = scan.crc;
    if (!get(&scan, chunk, 4))
        return scan.status;
    if (computed != ((uint32_t)chunk[0] | (uint32_t)chunk[1] << 8 | (uint32_t)chunk[2] << 16 |
                     (uint32_t)chunk[3] << 24))
        return MLP_ERR_FORMAT;
    if (r->file && fseek(r->file, 0, SEEK_SET) != 0)
        return MLP_ERR_IO;
    return MLP_OK;
}

static mlp_status read_model(reader *r, const mlp_load_options *opt, mlp **out)
{
    if (opt && opt->abi_version != MLP_LOAD_OPTIONS_ABI)
        return MLP_ERR_INVALID;
    const mlp_allocator *custom = opt ? opt->allocator : NULL;
    if (custom && (!custom->alloc || !custom->free))
        return MLP_ERR_INVALID;
    crc32_table(r->table);
    mlp_status checked = verify_checksum(r);
    if (checked != MLP_OK)
        return checked;

    unsigned char head[8];
    get(r, head, sizeof head);
    uint32_t version = get_u32(r), flags = get_u32(r);
    if (r->status != MLP_OK)
        return r->status;
    if (memcmp(head, magic, sizeof magic) != 0 || version == 0 || version > FORMAT_VERSION ||
        flags != 0)
        return MLP_ERR_FORMAT;

    mlp_config cfg = {0};
    cfg.allocator = custom;
    mlp_layer *layers = NULL;
    mlp_allocator al = mlp_allocator_or_default(custom);
    mlp_status st = read_arch(r, opt, &al, &cfg, &layers);
    if (st != MLP_OK)
        return st;
    /* The parameter count follows from the shapes: 0 if beyond
     * MLP_MAX_PARAMS, which no saved network can be. */
    mlp *net = NULL;
    size_t n_params = mlp_config_param_count(&cfg);
    if (n_params == 0 || !can_hold(r, SECTION_HEADER + 8 + 4 * (uint64_t)n_params))
        st = MLP_ERR_FORMAT;
    if (st == MLP_OK) /* now INVALID only for a resolver's malformed vtable */
        st = mlp_create(&net, &cfg);
    mlp_dealloc(&al, layers);
    if (st != MLP_OK)
        return st;

    uint64_t length = get_section(r, "PARM");
    if (r->status == MLP_OK &&
        (length != 8 + 4 * (uint64_t)n_params || get_u64(r) != (uint64_t)n_params))
        r->status = MLP_ERR_FORMAT;
    get_floats(r, net->params, n_params, false);

    char tag[4] = {0};
    get(r, tag, 4);
    length = get_u64(r);
    if (r->status == MLP_OK && memcmp(tag, "OPTM", 4) == 0) {
        st = read_optimizer(r, length, net);
        if (st == MLP_OK) {
            get(r, tag, 4);
            length = get_u64(r);
        }
    }
    if (st == MLP_OK && r->status == MLP_OK && (memcmp(tag, "END\0", 4) != 0 || length != 0))
        r->status = MLP_ERR_FORMAT;
    uint32_t computed = r->crc, stored = get_u32(r);
    if (st == MLP_OK && r->status == MLP_OK && stored != computed)
        r->status = MLP_ERR_FORMAT;
    if (st == MLP_OK)
        st = r->status;
    if (st != MLP_OK) {
        mlp_free(net);
        return st;
    }
    *out = net;
    return MLP_OK;
}

mlp_status mlp_load_buffer(mlp **out, const void *buf, size_t len, const mlp_load_options *opt)
{
    if (!out || (!buf && len > 0))
        return MLP_ERR_INVALID;
    static const unsigned char empty[1];
    reader r = {.mem = buf ? buf : empty, .size = len};
    mlp *net = NULL;
    mlp_status st = read_model(&r, opt, &net);
    if (st == MLP_OK && r.pos != len) { /* bytes after the model */
        mlp_free(net);
        return MLP_ERR_FORMAT;
    }
    if (st == MLP_OK)
        *out = net;
    return st;
}

mlp_status mlp_load(mlp **out, const char *path, const mlp_load_options *opt)
{
    if (!out || !path || !*path || (opt && opt->abi_version != MLP_LOAD_OPTIONS_ABI))
        return MLP_ERR_INVALID;
    FILE *file = fopen(path, "rb");
    if (!file)
        return MLP_ERR_IO;
    reader r = {.file = file, .size = SIZE_MAX};
    struct stat info;
    if (fstat(fileno(file), &info) == 0 && S_ISREG(info.st_mode) && info.st_size >= 0)
        r.size = (size_t)info.st_size;
    mlp *net = NULL;
    mlp_status st = read_model(&r, opt, &net);
    if (st == MLP_OK && fgetc(file) != EOF) {
        st = MLP_ERR_FORMAT;
    } else if (st == MLP_OK && ferror(file)) {
        st = MLP_ERR_IO;
    }
    int saved = errno;
    fclose(file);
    errno = saved;
    if (st != MLP_OK) {
        mlp_free(net);
        return st;
    }
    *out = net;
    return MLP_OK;
}
