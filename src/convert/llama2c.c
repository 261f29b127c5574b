/* llama2.c checkpoints: a 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size — negative when a separate classifier follows — and seq_len), then float32 tensors
 * in export order. The tokenizer.bin holds max_token_length, then per token a float32 score, an
 * int32 byte length and the bytes. Q/K rows are already in the interleaved-pair RoPE layout GGUF
 * llama files use, so no permutation is applied. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "core/checked_math.h"
#include "core/finite.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

typedef struct l2c_config {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    bool shared_classifier;
} l2c_config;

typedef struct l2c_tensor {
    char name[64];
    const float *data; /* into the mapped checkpoint */
    uint64_t ne[2];
    uint32_t n_dims;
    ellm_type type;
} l2c_tensor;

static edgellm_status read_config(const ellm_mapped_file *f, const char *path, l2c_config *c)
{
    if (f->size < 28)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s' is %zu bytes: too short for a llama2.c checkpoint header", path,
                         f->size);
    int32_t h[7];
    memcpy(h, f->data, sizeof h);
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->shared_classifier = h[5] > 0;
    c->vocab_size = h[5] < 0 ? -h[5] : h[5];
    c->seq_len = h[6];
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->vocab_size <= 0 || c->seq_len <= 0 || c->dim > (1 << 16) ||
        c->hidden_dim > (1 << 18) || c->n_layers > 1024 || c->vocab_size > (1 << 22) ||
        c->seq_len > (1 << 22) || h[5] == INT32_MIN)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s' is not a llama2.c checkpoint: header dim=%d hidden=%d layers=%d "
                         "heads=%d kv_heads=%d vocab=%d seq_len=%d is not plausible",
                         path, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    if (c->dim % c->n_heads != 0 || c->n_heads % c->n_kv_heads != 0 ||
        (c->dim / c->n_heads) % 2 != 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s': %d heads do not divide dim %d evenly (or %d KV heads do not "
                         "divide the heads)",
                         path, c->n_heads, c->dim, c->n_kv_heads);
    return EDGELLM_OK;
}

/* Lays out the tensors; fails unless the file size is exactly what the header implies. */
static edgellm_status map_tensors(const ellm_mapped_file *f, const char *path, const l2c_config *c,
                                  l2c_tensor *out, int *n_out)
{
    uint64_t dim = (uint64_t)c->dim, hid = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers;
    uint64_t head = dim / (uint64_t)c->n_heads, kv_dim = head * (uint64_t)c->n_kv_heads;
    uint64_t vocab = (uint64_t)c->vocab_size;
    struct part {
        const char *name;              /* NULL: skipped */
        uint64_t per_layer_rows, cols; /* rows = output dim (ne1), cols = input dim (ne0) */
        bool layered;
    } parts[] = {
        {"token_embd", vocab, dim, false},
        {"attn_norm", 1, dim, true},
        {"attn_q", dim, dim, true},
        {"attn_k", kv_dim, dim, true},
        {"attn_v", kv_dim, dim, true},
        {"attn_output", dim, dim, true},
        {"ffn_norm", 1, dim, true},
        {"ffn_gate", hid, dim, true},
        {"ffn_down", dim, hid, true},
        {"ffn_up", hid, dim, true},
        {"output_norm", 1, dim, false},
        {NULL, (uint64_t)c->seq_len, head / 2, false},
        {NULL, (uint64_t)c->seq_len, head / 2, false},
        {c->shared_classifier ? NULL : "output", vocab, dim, false},
    };
    size_t nparts = sizeof parts / sizeof parts[0] - (c->shared_classifier ? 1 : 0);
    uint64_t offset = 28;
    int n = 0;
    for (size_t p = 0; p < nparts; p++) {
        uint64_t count = parts[p].layered ? L : 1;
        for (uint64_t l = 0; l < count; l++) {
            uint64_t elems = parts[p].per_layer_rows * parts[p].cols, bytes, end;
            if (!ellm_mul_u64(elems, 4, &bytes) || !ellm_add_u64(offset, bytes, &end) ||
                end > f->size)
                return ellm_fail(EDGELLM_ERR_FORMAT,
                                 "'%s' is truncated: the header (dim %d, %d layers, vocab %d) "
                                 "needs more than its %zu bytes",
                                 path, c->dim, c->n_layers, c->vocab_size, f->size);
            if (parts[p].name) {
                l2c_tensor *t = &out[n++];
                if (parts[p].layered)
                    snprintf(t->name, sizeof t->name, "blk.%llu.%s.weight", (unsigned long long)l,
                             parts[p].name);
                else
                    snprintf(t->name, sizeof t->name, "%s.weight", parts[p].name);
                t->data = (const float *)((const uint8_t *)f->data + offset);
                t->ne[0] = parts[p].cols;
                t->ne[1] = parts[p].per_layer_rows;
                t->n_dims = parts[p].per_layer_rows == 1 ? 1 : 2;
            }
            offset = end;
        }
    }
    if (offset != f->size)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s' has %zu bytes but its header describes %llu; it is not a "
                         "llama2.c checkpoint of this shape (or it is corrupt)",
                         path, f->size, (unsigned long long)offset);
    *n_out = n;
    return EDGELLM_OK;
}

typedef struct l2c_vocab {
    char **tokens;
    float *scores;
    int32_t *types;
    int32_t n;
} l2c_vocab;

static void free_vocab(l2c_vocab *v)
{
    if (v->tokens)
        for (int32_t i = 0; i < v->n; i++)
            free(v->tokens[i]);
    free(v->tokens);
    free(v->scores);
    free(v->types);
}

static edgellm_status read_vocab(const char *path, int32_t n, l2c_vocab *v)
{
    ellm_mapped_file f;
    edgellm_status st = ellm_map_file(path, EDGELLM_PAGES_HUGE, &f);
    if (st != EDGELLM_OK)
        return st;
    const uint8_t *p = f.data;
    uint64_t pos = 4;
    v->n = n;
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->scores = calloc((size_t)n, sizeof *v->scores);
    v->types = calloc((size_t)n, sizeof *v->types);
    if (!v->tokens || !v->scores || !v->types)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d tokens", n);
    if (st == EDGELLM_OK && f.size < 4)
        st = ellm_fail(EDGELLM_ERR_FORMAT, "'%s' is too short for a llama2.c tokenizer", path);
    for (int32_t i = 0; st == EDGELLM_OK && i < n; i++) {
        int32_t len;
        if (f.size - pos < 8) {
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "'%s' ends after %d tokens but the model has a vocabulary of %d; "
                           "wrong tokenizer for this checkpoint?",
                           path, i, n);
            break;
        }
        memcpy(&v->scores[i], p + pos, 4);
        memcpy(&len, p + pos + 4, 4);
        pos += 8;
        if (!isfinite(v->scores[i])) {
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "'%s': token %d has a score of %g; scores must be finite numbers", path,
                           i, v->scores[i]);
            break;
        }
        if (len < 0 || (uint64_t)len > f.size - pos) {
            st = ellm_fail(EDGELLM_ERR_FORMAT, "'%s': token %d has a bad length %d", path, i, len);
            break;
        }
        /* llama2.c stores spaces as ' '; GGUF SentencePiece vocabularies use U+2581. */
        v->tokens[i] = malloc((size_t)len * 3 + 1);
        if (!v->tokens[i]) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for tokens");
            break;
        }
        size_t out = 0;
        for (int32_t k = 0; k < len; k++) {
            char ch = (char)p[pos + (uint64_t)k];
            if (ch == '\0') {
                st = ellm_fail(EDGELLM_ERR_FORMAT, "'%s': token %d contains a NUL byte", path, i);
                break;
            }
            if (ch == ' ') {
                memcpy(v->tokens[i] + out, "\xE2\x96\x81", 3);
                out += 3;
            } else {
                v->tokens[i][out++] = ch;
            }
        }
        v->tokens[i][out] = '\0';
        if (st != EDGELLM_OK)
            break;
        pos += (uint64_t)len;
        const char *t = v->tokens[i];
        if (i == 0)
            v->types[i] = 2; /* UNKNOWN */
        else if (i == 1 || i == 2) {
            v->types[i] = 3; /* CONTROL: <s>, </s> */
            /* llama2.c exports them as "\n<s>\n"; the SentencePiece names carry no newlines. */
            char *text = v->tokens[i];
            size_t tl = strlen(text);
            while (tl > 0 && text[tl - 1] == '\n')
                text[--tl] = '\0';
            size_t lead = strspn(text, "\n");
            memmove(text, text + lead, tl - lead + 1);
        } else if (len == 6 && !memcmp(t, "<0x", 3) && t[5] == '>')
            v->types[i] = 6; /* BYTE */
        else
            v->types[i] = 1; /* NORMAL */
    }
    if (st == EDGELLM_OK && pos != f.size)
        st = ellm_fail(EDGELLM_ERR_FORMAT,
                       "'%s' has more than %d tokens; wrong tokenizer for this checkpoint?", path,
                       n);
    ellm_unmap_file(&f);
    return st;
}

static edgellm_status fill_tensor(void *user, void *dst, uint64_t n_bytes)
{
    const l2c_tensor *t = user;
    uint64_t row_bytes = 0;
    ellm_row_bytes(t->type, t->ne[0], &row_bytes);
    if (row_bytes * t->ne[1] != n_bytes)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "internal size mismatch for '%s'", t->name);
    for (uint64_t r = 0; r < t->ne[1]; r++) {
        const float *row = t->data + r * t->ne[0];
        int64_t bad = ellm_first_nonfinite(row, (int64_t)t->ne[0]);
        if (bad >= 0)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "the checkpoint holds %s at row %llu, column %lld: it is broken "
                             "and would only compute NaN; nothing was written",
                             isnan(row[bad]) ? "NaN" : "an infinite value", (unsigned long long)r,
                             (long long)bad);
        ellm_quantize_row(t->type, row, (uint8_t *)dst + r * row_bytes, (int64_t)t->ne[0]);
    }
    return EDGELLM_OK;
}

static ellm_type choose_type(const l2c_tensor *t, const ellm_convert_options *o)
{
    if (t->n_dims == 1 || o->out_type == ELLM_TYPE_F32)
        return ELLM_TYPE_F32;
    const ellm_type_traits *tr = ellm_type_traits_of(o->out_type);
    if (t->ne[0] % tr->block_size == 0)
        return o->out_type;
    /* Rows that do not split into blocks keep 16-bit precision. */
    if (o->on_fallback)
        o->on_fallback(o->user, t->name, o->out_type, ELLM_TYPE_F16);
    return ELLM_TYPE_F16;
}

static edgellm_status write_gguf(const l2c_config *c, const l2c_vocab *v, l2c_tensor *tensors,
                                 int n_tensors, const char *out_path, const ellm_convert_options *o,
                                 const char *name)
{
    gguf_writer *w = ellm_gguf_writer_create();
    if (!w)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the GGUF writer");
    ellm_llama_meta meta = {
        name,       o->out_type,   c->seq_len,          c->dim,   c->n_layers, c->hidden_dim,
        c->n_heads, c->n_kv_heads, c->dim / c->n_heads, 10000.0f, 1e-5f};
    edgellm_status st = ellm_write_llama_meta(w, &meta);
#define SET(call)                                                                                  \
    if (st == EDGELLM_OK)                                                                          \
        st = call;
    SET(ellm_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size))
    SET(ellm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"))
    SET(ellm_gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens,
                                       (uint64_t)v->n))
    SET(ellm_gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->scores,
                                   (uint64_t)v->n))
    SET(ellm_gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types,
                                   (uint64_t)v->n))
    SET(ellm_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1))
    SET(ellm_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2))
    SET(ellm_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0))
    SET(ellm_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true))
    SET(ellm_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false))
#undef SET
    for (int i = 0; st == EDGELLM_OK && i < n_tensors; i++) {
        l2c_tensor *t = &tensors[i];
        t->type = choose_type(t, o);
        st = ellm_gguf_writer_add_tensor_fill(w, t->name, t->type, t->n_dims, t->ne, fill_tensor,
                                              t);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, out_path);
    ellm_gguf_writer_free(w);
    return st;
}

edgellm_status ellm_convert_llama2c(const char *checkpoint_path, const char *tokenizer_path,
                                    const char *out_path, const ellm_convert_options *options)
{
    ellm_convert_options o = {.out_type = ELLM_TYPE_F32};
    if (options)
        o = *options;
    if (o.out_type != ELLM_TYPE_F32 && o.out_type != ELLM_TYPE_F16 &&
        o.out_type != ELLM_TYPE_Q8_0 && o.out_type != ELLM_TYPE_Q4_0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "output type %s is not supported here",
                         ellm_type_name(o.out_type));
    ellm_mapped_file f;
    edgellm_status st = ellm_map_file(checkpoint_path, EDGELLM_PAGES_HUGE, &f);
    if (st != EDGELLM_OK)
        return st;
    l2c_config c = {0};
    l2c_vocab v = {0};
    /* Embedding, 9 tensors per layer, final norm and an optional classifier. */
    l2c_tensor *tensors = NULL;
    int n_tensors = 0;
    st = read_config(&f, checkpoint_path, &c);
    if (st == EDGELLM_OK) {
        tensors = calloc((size_t)c.n_layers * 9 + 3, sizeof *tensors);
        if (!tensors)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    }
    if (st == EDGELLM_OK)
        st = map_tensors(&f, checkpoint_path, &c, tensors, &n_tensors);
    if (st == EDGELLM_OK)
        st = read_vocab(tokenizer_path, c.vocab_size, &v);
    if (st == EDGELLM_OK) {
        char name[128];
        if (o.name) {
            snprintf(name, sizeof name, "%s", o.name);
        } else {
            const char *base = strrchr(checkpoint_path, '/');
            snprintf(name, sizeof name, "%s", base ? base + 1 : checkpoint_path);
            char *dot = strrchr(name, '.');
            if (dot && dot != name)
                *dot = '\0';
        }
        st = write_gguf(&c, &v, tensors, n_tensors, out_path, &o, name);
    }
    free_vocab(&v);
    free(tensors);
    ellm_unmap_file(&f);
    return st;
}
