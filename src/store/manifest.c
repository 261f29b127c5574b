/* Manifests: the one reader (every field validated before use), the writer, listing names. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mapped_file.h"
#include "core/status.h"
#include "store/store_internal.h"

void ellm_store_model_clear(store_model *model)
{
    free(model->versions);
    memset(model, 0, sizeof *model);
}

const store_version *ellm_store_model_find(const store_model *model, const char *version)
{
    for (size_t i = 0; i < model->n_versions; i++)
        if (strcmp(model->versions[i].version, version) == 0)
            return &model->versions[i];
    return NULL;
}

/* The forms a manifest field may take; anything else makes the manifest corrupt. */
typedef enum field_form {
    FIELD_TOKEN,  /* a version name */
    FIELD_SHA256, /* 64 lowercase hex digits: it becomes part of a blob path */
    FIELD_KEY,    /* 64 lowercase hex digits, or "" when unsigned */
    FIELD_SIG,    /* 128 lowercase hex digits, or "" when unsigned */
    FIELD_TEXT    /* printable text (shown by `models info`) */
} field_form;

static const char *field_form_name(field_form form)
{
    switch (form) {
    case FIELD_TOKEN: return "a version name (letters, digits, '.', '_', '-')";
    case FIELD_SHA256: return "a SHA-256 (64 lowercase hex digits)";
    case FIELD_KEY: return "an Ed25519 key (64 lowercase hex digits) or empty";
    case FIELD_SIG: return "an Ed25519 signature (128 lowercase hex digits) or empty";
    case FIELD_TEXT: return "text without control characters";
    }
    return "?";
}

/* Copies obj[key] into out when it has the given form; a missing key reads as "" and is accepted
 * where "" is. */
static bool read_field(json_t *obj, const char *key, field_form form, bool may_be_empty, char *out,
                       size_t cap)
{
    json_t *value = json_object_get(obj, key);
    if (value && !json_is_string(value))
        return false;
    const char *v = value ? json_string_value(value) : "";
    size_t len = strlen(v);
    if (len >= cap || (value && json_string_length(value) != len)) /* too long, or a NUL inside */
        return false;
    bool ok;
    if (len == 0)
        ok = may_be_empty;
    else if (form == FIELD_TOKEN)
        ok = ellm_st_valid_token(v, len);
    else if (form == FIELD_SHA256 || form == FIELD_KEY)
        ok = ellm_st_valid_hex(v, 32);
    else if (form == FIELD_SIG)
        ok = ellm_st_valid_hex(v, 64);
    else
        ok = !ellm_st_has_control(v);
    if (ok)
        memcpy(out, v, len + 1);
    return ok;
}

static bool read_count(json_t *obj, const char *key, uint64_t *out)
{
    json_t *value = json_object_get(obj, key);
    if (!value) {
        *out = 0;
        return true;
    }
    if (!json_is_integer(value) || json_integer_value(value) < 0)
        return false;
    *out = (uint64_t)json_integer_value(value);
    return true;
}

/* The one reader of manifests. Every field must have the form the store writes before any of it
 * is used: a sha256 becomes part of a path, versions and text are printed. A manifest with a field
 * out of form is refused whole: dropping the entry would let gc delete the blob it references. */
edgellm_status ellm_st_load_manifest(store *s, const char *name, store_model *out)
{
    memset(out, 0, sizeof *out);
    char path[1300];
    edgellm_status st = ellm_st_path(path, sizeof path, "%s/models/%s/manifest.json", s->root,
                                     name);
    if (st != EDGELLM_OK)
        return st;
    struct stat sb;
    if (lstat(path, &sb) != 0 && (errno == ENOENT || errno == ENOTDIR))
        return ellm_fail(EDGELLM_ERR_NOT_FOUND,
                         "model '%s' is not installed (see 'edgellm models list')", name);
    FILE *f = ellm_fopen_regular(path);
    if (!f)
        return ellm_fail_wrap(EDGELLM_ERR_IO,
                              "cannot read the manifest of '%s' (restore it, or remove the model "
                              "with 'edgellm models remove %s')",
                              name, name);
    json_error_t err;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    json_t *versions = root ? json_object_get(root, "versions") : NULL;
    if (!root || !json_is_object(root) || !json_is_array(versions)) {
        json_decref(root);
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "manifest %s is corrupt (%s); restore it, or remove the model with "
                         "'edgellm models remove %s'",
                         path, root ? "no \"versions\" list" : err.text, name);
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    const char *bad = NULL, *expected = NULL;
    size_t bad_entry = 0;
#define FIELD(obj, key, form, may_be_empty, dst)                                                   \
    do {                                                                                           \
        if (!bad && !read_field((obj), (key), (form), (may_be_empty), (dst), sizeof(dst))) {       \
            bad = (key);                                                                           \
            expected = field_form_name(form);                                                      \
        }                                                                                          \
    } while (0)
    FIELD(root, "active", FIELD_TOKEN, true, out->active);
    FIELD(root, "previous", FIELD_TOKEN, true, out->previous);
    out->pinned = json_is_true(json_object_get(root, "pinned"));
    size_t n = json_array_size(versions);
    out->versions = n ? calloc(n, sizeof *out->versions) : NULL;
    if (n && !out->versions) {
        json_decref(root);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n && !bad; i++) {
        json_t *v = json_array_get(versions, i);
        store_version *sv = &out->versions[i];
        bad_entry = i + 1;
        uint64_t context = 0, installed = 0;
        FIELD(v, "version", FIELD_TOKEN, false, sv->version);
        FIELD(v, "sha256", FIELD_SHA256, false, sv->sha256);
        FIELD(v, "architecture", FIELD_TEXT, true, sv->architecture);
        FIELD(v, "quantization", FIELD_TEXT, true, sv->quantization);
        FIELD(v, "source", FIELD_TEXT, true, sv->source);
        FIELD(v, "signed_by", FIELD_KEY, true, sv->signed_by);
        FIELD(v, "signature", FIELD_SIG, true, sv->signature);
        if (!bad &&
            !(read_count(v, "size", &sv->size) && read_count(v, "parameters", &sv->n_params) &&
              read_count(v, "context_length", &context) &&
              read_count(v, "min_ram_bytes", &sv->min_ram_bytes) &&
              read_count(v, "installed_at", &installed))) {
            bad = "size, parameters, context_length, min_ram_bytes or installed_at";
            expected = "a count (an integer from 0)";
        }
        sv->context_length = context > UINT32_MAX ? UINT32_MAX : (uint32_t)context;
        sv->installed_at = (int64_t)installed;
        out->n_versions = i + 1;
    }
#undef FIELD
    json_decref(root);
    if (bad) {
        ellm_store_model_clear(out);
        char where[48] = "";
        if (bad_entry)
            snprintf(where, sizeof where, "version entry %zu: ", bad_entry);
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "manifest %s is corrupt: %s%s is not %s; restore it, or remove the model "
                         "with 'edgellm models remove %s' and reinstall it",
                         path, where, bad, expected, name);
    }
    return EDGELLM_OK;
}

edgellm_status ellm_st_save_manifest(store *s, const store_model *m)
{
    json_t *versions = json_array();
    for (size_t i = 0; i < m->n_versions; i++) {
        const store_version *v = &m->versions[i];
        json_array_append_new(
            versions,
            json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:I}", "version",
                      v->version, "sha256", v->sha256, "size", (json_int_t)v->size, "architecture",
                      v->architecture, "quantization", v->quantization, "parameters",
                      (json_int_t)v->n_params, "context_length", (json_int_t)v->context_length,
                      "min_ram_bytes", (json_int_t)v->min_ram_bytes, "source", v->source,
                      "signed_by", v->signed_by, "signature", v->signature, "installed_at",
                      (json_int_t)v->installed_at));
    }
    json_t *root = json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", m->name, "active", m->active,
                             "previous", m->previous, "pinned", m->pinned, "versions", versions);
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!text)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory writing a manifest");
    char dir[1200];
    edgellm_status st = ellm_st_path(dir, sizeof dir, "%s/models/%s", s->root, m->name);
    if (st == EDGELLM_OK && mkdir(dir, 0755) != 0 && errno != EEXIST)
        st = ellm_fail(EDGELLM_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    if (st == EDGELLM_OK) {
        char models_dir[1200];
        st = ellm_st_path(models_dir, sizeof models_dir, "%s/models", s->root);
        if (st == EDGELLM_OK)
            st = ellm_st_fsync_dir(models_dir);
    }
    if (st == EDGELLM_OK)
        st = ellm_st_write_atomic(dir, "manifest.json", text, strlen(text));
    free(text);
    return st;
}

edgellm_status ellm_store_get_model(store *s, const char *name, store_model *out)
{
    return ellm_st_load_manifest(s, name, out);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

edgellm_status ellm_store_list_names(store *s, char ***names_out, size_t *count_out)
{
    *names_out = NULL;
    *count_out = 0;
    char dir[1200];
    edgellm_status st = ellm_st_path(dir, sizeof dir, "%s/models", s->root);
    if (st != EDGELLM_OK)
        return st;
    DIR *d = opendir(dir);
    if (!d)
        return ellm_fail(EDGELLM_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        /* Only names the store can create; anything else in models/ is not a model. */
        if (!ellm_st_valid_token(e->d_name, strlen(e->d_name)) ||
            strlen(e->d_name) >= STORE_NAME_MAX)
            continue;
        /* A manifest that exists but cannot be read is listed, so its readers report it. */
        char manifest[1400];
        struct stat sb;
        if (ellm_st_path(manifest, sizeof manifest, "%s/%s/manifest.json", dir, e->d_name) !=
                EDGELLM_OK ||
            (lstat(manifest, &sb) != 0 && (errno == ENOENT || errno == ENOTDIR)))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        names[n] = strdup(e->d_name);
        if (names[n])
            n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, cmp_names);
    *names_out = names;
    *count_out = n;
    return EDGELLM_OK;
}

void ellm_store_free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}
