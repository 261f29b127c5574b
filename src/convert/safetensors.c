/* safetensors reader and validator (see safetensors.h for the format and what is checked). */
#define _POSIX_C_SOURCE 200809L
#include "convert/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/checked_math.h"
#include "core/mapped_file.h"
#include "core/status.h"

static const struct {
    const char *name;
    unsigned size;
} dtypes[ELLM_ST_DTYPE_COUNT] = {
    [ELLM_ST_BOOL] = {"BOOL", 1},       [ELLM_ST_U8] = {"U8", 1},
    [ELLM_ST_I8] = {"I8", 1},           [ELLM_ST_F8_E4M3] = {"F8_E4M3", 1},
    [ELLM_ST_F8_E5M2] = {"F8_E5M2", 1}, [ELLM_ST_I16] = {"I16", 2},
    [ELLM_ST_U16] = {"U16", 2},         [ELLM_ST_F16] = {"F16", 2},
    [ELLM_ST_BF16] = {"BF16", 2},       [ELLM_ST_I32] = {"I32", 4},
    [ELLM_ST_U32] = {"U32", 4},         [ELLM_ST_F32] = {"F32", 4},
    [ELLM_ST_I64] = {"I64", 8},         [ELLM_ST_U64] = {"U64", 8},
    [ELLM_ST_F64] = {"F64", 8},
};

const char *ellm_st_dtype_name(ellm_st_dtype dtype)
{
    return (unsigned)dtype < ELLM_ST_DTYPE_COUNT ? dtypes[dtype].name : "?";
}

/* A JSON number that is a non-negative integer. */
static bool get_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static edgellm_status parse_entry(const char *what, const char *name, const json_t *entry,
                                  uint64_t data_size, ellm_st_tensor *t, uint64_t *begin)
{
    if (!json_is_object(entry))
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: header entry '%s' is not an object", what, name);
    const json_t *dtype = json_object_get(entry, "dtype");
    const json_t *shape = json_object_get(entry, "shape");
    const json_t *offsets = json_object_get(entry, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offsets))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: tensor '%s' needs a string dtype, a shape array and a data_offsets "
                         "array",
                         what, name);
    int found = -1;
    for (int d = 0; d < ELLM_ST_DTYPE_COUNT; d++)
        if (!strcmp(json_string_value(dtype), dtypes[d].name))
            found = d;
    if (found < 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%.16s'", what,
                         name, json_string_value(dtype));
    t->dtype = (ellm_st_dtype)found;
    size_t nd = json_array_size(shape);
    if (nd > ELLM_ST_MAX_DIMS)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: tensor '%s' has %zu dimensions (at most %d)",
                         what, name, nd, ELLM_ST_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t n = 1;
    for (size_t d = 0; d < nd; d++) {
        if (!get_uint(json_array_get(shape, d), &t->shape[d]))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "%s: tensor '%s': shape entry %zu is not a non-negative integer", what,
                             name, d);
        if (!ellm_mul_u64(n, t->shape[d], &n))
            return ellm_fail(EDGELLM_ERR_FORMAT, "%s: tensor '%s': shape overflows", what, name);
    }
    t->n_elements = n;
    uint64_t b, e, want;
    if (json_array_size(offsets) != 2 || !get_uint(json_array_get(offsets, 0), &b) ||
        !get_uint(json_array_get(offsets, 1), &e))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets must be two non-negative integers", what,
                         name);
    if (b > e || e > data_size)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] lie outside the %llu-byte "
                         "data section (truncated or corrupt file)",
                         what, name, (unsigned long long)b, (unsigned long long)e,
                         (unsigned long long)data_size);
    if (!ellm_mul_u64(n, dtypes[found].size, &want) || want != e - b)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: tensor '%s': %llu bytes at data_offsets, but its shape and dtype %s "
                         "need %llu",
                         what, name, (unsigned long long)(e - b), dtypes[found].name,
                         (unsigned long long)want);
    t->n_bytes = e - b;
    *begin = b;
    return EDGELLM_OK;
}

typedef struct span {
    uint64_t begin, end;
    size_t index;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin   ? -1
           : x->begin > y->begin ? 1
                                 : (x->end > y->end) - (x->end < y->end);
}

static edgellm_status grow(ellm_st_set *set, size_t extra)
{
    ellm_st_tensor *t = realloc(set->tensors, (set->n_tensors + extra) * sizeof *t);
    if (!t)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the tensor list");
    set->tensors = t;
    return EDGELLM_OK;
}

edgellm_status ellm_st_parse(const void *data, size_t size, const char *what, int shard,
                             ellm_st_set *set)
{
    const uint8_t *p = data;
    if (size < 8)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s is %zu bytes: too short for a safetensors file (8-byte header "
                         "length first)",
                         what, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen < 2 || hlen > ELLM_ST_MAX_HEADER || hlen > size - 8)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s: header length %llu does not fit the %zu-byte file (or exceeds %u); "
                         "not a safetensors file, or truncated",
                         what, (unsigned long long)hlen, size, ELLM_ST_MAX_HEADER);
    if (p[8] != '{')
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: the header is not a JSON object", what);
    uint64_t data_size = size - 8 - hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: the JSON header does not parse: %s", what,
                         jerr.text);
    edgellm_status st = EDGELLM_OK;
    size_t first = set->n_tensors, count = 0;
    span *spans = NULL;
    if (!json_is_object(root))
        st = ellm_fail(EDGELLM_ERR_FORMAT, "%s: the JSON header is not an object", what);
    if (st == EDGELLM_OK) {
        size_t cap = json_object_size(root);
        spans = malloc((cap ? cap : 1) * sizeof *spans);
        st = spans ? grow(set, cap) : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    }
    const char *key;
    json_t *value;
    if (st == EDGELLM_OK) {
        json_object_foreach(root, key, value)
        {
            if (!strcmp(key, "__metadata__")) {
                if (!json_is_object(value)) {
                    st = ellm_fail(EDGELLM_ERR_FORMAT, "%s: __metadata__ is not an object", what);
                    break;
                }
                continue;
            }
            ellm_st_tensor *t = &set->tensors[first + count];
            memset(t, 0, sizeof *t);
            uint64_t begin = 0;
            st = parse_entry(what, key, value, data_size, t, &begin);
            if (st != EDGELLM_OK)
                break;
            t->name = strdup(key);
            if (!t->name) {
                st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
                break;
            }
            t->data = p + 8 + hlen + begin;
            t->shard = shard;
            spans[count] = (span){begin, begin + t->n_bytes, first + count};
            count++;
            set->n_tensors++;
        }
    }
    /* Tensors must tile the data section exactly: no overlaps (two names aliasing bytes) and no
     * holes (unindexed bytes), as the format requires. */
    if (st == EDGELLM_OK) {
        qsort(spans, count, sizeof *spans, cmp_span);
        uint64_t at = 0;
        for (size_t i = 0; i < count && st == EDGELLM_OK; i++) {
            const char *name = set->tensors[spans[i].index].name;
            if (spans[i].begin < at)
                st = ellm_fail(EDGELLM_ERR_FORMAT,
                               "%s: tensor '%s' at bytes [%llu, %llu) overlaps the previous "
                               "tensor",
                               what, name, (unsigned long long)spans[i].begin,
                               (unsigned long long)spans[i].end);
            else if (spans[i].begin > at)
                st = ellm_fail(EDGELLM_ERR_FORMAT,
                               "%s: %llu unindexed bytes before tensor '%s' (corrupt header)", what,
                               (unsigned long long)(spans[i].begin - at), name);
            at = spans[i].end;
        }
        if (st == EDGELLM_OK && at != data_size)
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "%s: the header indexes %llu data bytes but the file has %llu after "
                           "it",
                           what, (unsigned long long)at, (unsigned long long)data_size);
    }
    free(spans);
    json_decref(root);
    return st;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const ellm_st_tensor *)a)->name, ((const ellm_st_tensor *)b)->name);
}

/* Sorts the tensors by name (for lookups) and refuses a name held by two shards. */
static edgellm_status sort_unique(ellm_st_set *set)
{
    qsort(set->tensors, set->n_tensors, sizeof *set->tensors, cmp_tensor_name);
    for (size_t i = 1; i < set->n_tensors; i++)
        if (!strcmp(set->tensors[i - 1].name, set->tensors[i].name))
            return ellm_fail(EDGELLM_ERR_FORMAT, "tensor '%s' appears in two shards (%s and %s)",
                             set->tensors[i].name, set->file_names[set->tensors[i - 1].shard],
                             set->file_names[set->tensors[i].shard]);
    return EDGELLM_OK;
}

static edgellm_status add_file(ellm_st_set *set, const char *dir, const char *file)
{
    if (strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, "."))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "shard name '%s' is not a plain file name in the model folder", file);
    for (int i = 0; i < set->n_files; i++)
        if (!strcmp(strrchr(set->file_names[i], '/') + 1, file))
            return EDGELLM_OK;
    ellm_mapped_file *files = realloc(set->files, (size_t)(set->n_files + 1) * sizeof *files);
    if (files)
        set->files = files;
    char **names = realloc(set->file_names, (size_t)(set->n_files + 1) * sizeof *names);
    if (names)
        set->file_names = names;
    if (!files || !names)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    size_t len = strlen(dir) + strlen(file) + 2;
    char *path = malloc(len);
    if (!path)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    snprintf(path, len, "%s/%s", dir, file);
    edgellm_status st = ellm_map_file(path, EDGELLM_PAGES_HUGE, &set->files[set->n_files]);
    if (st != EDGELLM_OK) {
        free(path);
        return ellm_fail_wrap(st, "model shard missing or unreadable");
    }
    set->file_names[set->n_files] = path;
    int shard = set->n_files++;
    return ellm_st_parse(set->files[shard].data, set->files[shard].size, path, shard, set);
}

static edgellm_status open_index(const char *dir, const char *index_path, ellm_st_set *set)
{
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s: %s (line %d)", index_path, jerr.text, jerr.line);
    edgellm_status st = EDGELLM_OK;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0)
        st = ellm_fail(EDGELLM_ERR_FORMAT, "%s has no weight_map object", index_path);
    const char *name;
    json_t *file;
    if (st == EDGELLM_OK) {
        json_object_foreach(map, name, file)
        {
            if (!json_is_string(file)) {
                st = ellm_fail(EDGELLM_ERR_FORMAT, "%s: weight_map['%s'] is not a file name",
                               index_path, name);
                break;
            }
            if ((st = add_file(set, dir, json_string_value(file))) != EDGELLM_OK)
                break;
        }
    }
    if (st == EDGELLM_OK)
        st = sort_unique(set);
    if (st == EDGELLM_OK) {
        /* The index and the shards must agree on where every tensor is. */
        json_object_foreach(map, name, file)
        {
            const ellm_st_tensor *t = ellm_st_find(set, name);
            if (!t ||
                strcmp(strrchr(set->file_names[t->shard], '/') + 1, json_string_value(file)) != 0) {
                st = ellm_fail(EDGELLM_ERR_FORMAT,
                               "%s places tensor '%s' in %s, but that shard does not hold it",
                               index_path, name, json_string_value(file));
                break;
            }
        }
        if (st == EDGELLM_OK && json_object_size(map) != set->n_tensors)
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "%s lists %zu tensors but its shards hold %zu; index and shards "
                           "disagree",
                           index_path, json_object_size(map), set->n_tensors);
    }
    json_decref(root);
    return st;
}

edgellm_status ellm_st_open_dir(const char *dir, ellm_st_set *out)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(dir) + 64;
    char *index = malloc(len);
    if (!index)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    snprintf(index, len, "%s/model.safetensors.index.json", dir);
    int fd = ellm_open_regular(index);
    edgellm_status st;
    if (fd >= 0) {
        close(fd);
        st = open_index(dir, index, out);
    } else if (errno != ENOENT) {
        st = EDGELLM_ERR_IO;
    } else {
        ellm_clear_error();
        st = add_file(out, dir, "model.safetensors");
        if (st != EDGELLM_OK && out->n_files == 0)
            st = ellm_fail_wrap(st,
                                "%s has neither model.safetensors nor "
                                "model.safetensors.index.json",
                                dir);
        if (st == EDGELLM_OK)
            st = sort_unique(out);
    }
    free(index);
    if (st != EDGELLM_OK)
        ellm_st_close(out);
    return st;
}

const ellm_st_tensor *ellm_st_find(const ellm_st_set *set, const char *name)
{
    size_t lo = 0, hi = set->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(set->tensors[mid].name, name);
        if (c == 0)
            return &set->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void ellm_st_close(ellm_st_set *set)
{
    for (size_t i = 0; i < set->n_tensors; i++)
        free(set->tensors[i].name);
    free(set->tensors);
    for (int i = 0; i < set->n_files; i++) {
        ellm_unmap_file(&set->files[i]);
        free(set->file_names[i]);
    }
    free(set->files);
    free(set->file_names);
    memset(set, 0, sizeof *set);
}
