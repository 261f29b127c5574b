/* Re-quantizing a GGUF model: every 2-D weight is converted to the target type (through float),
 * with the usual per-tensor choices, and every metadata key is carried over. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "core/status.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

typedef struct requant {
    const gguf_tensor_info *src;
    ellm_type type;
    const ellm_quantize_options *options;
    int index, total;
} requant;

static edgellm_status fill_requantized(void *user, void *dst, uint64_t n_bytes)
{
    const requant *r = user;
    const gguf_tensor_info *t = r->src;
    uint64_t n_rows = t->n_elements / t->ne[0], src_rb = 0, dst_rb = 0;
    ellm_row_bytes(t->type, t->ne[0], &src_rb);
    ellm_row_bytes(r->type, t->ne[0], &dst_rb);
    if (dst_rb * n_rows != n_bytes)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "internal size mismatch");
    float *row = malloc(t->ne[0] * sizeof *row);
    if (!row)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a row");
    for (uint64_t i = 0; i < n_rows; i++) {
        ellm_dequantize_row((ellm_type)t->type, (const uint8_t *)t->data + i * src_rb, row,
                            (int64_t)t->ne[0]);
        ellm_quantize_row(r->type, row, (uint8_t *)dst + i * dst_rb, (int64_t)t->ne[0]);
    }
    free(row);
    if (r->options->on_progress)
        r->options->on_progress(r->options->user, r->index + 1, r->total);
    return EDGELLM_OK;
}

static bool name_is(gguf_str s, const char *name) { return gguf_str_eq(s, name); }

/* The type one tensor gets: norms and other 1-D tensors stay as they are; the output head (the
 * token embedding when the head is tied to it) keeps 8 bits under a 4-bit target, as the common
 * recipes keep it at higher precision; rows that do not split into the target's blocks take F16,
 * the nearest type that fits any row length. */
static ellm_type choose(const gguf_tensor_info *t, ellm_type target, bool tied, bool *fell_back)
{
    *fell_back = false;
    if (t->n_dims < 2)
        return (ellm_type)t->type;
    ellm_type want = target;
    bool head = name_is(t->name, "output.weight") || (tied && name_is(t->name, "token_embd.weight"));
    if (target == ELLM_TYPE_Q4_0 && head)
        want = ELLM_TYPE_Q8_0;
    const ellm_type_traits *tr = ellm_type_traits_of(want);
    if (t->ne[0] % tr->block_size != 0) {
        *fell_back = true;
        return ELLM_TYPE_F16;
    }
    return want;
}

edgellm_status ellm_quantize_model(const char *in_path, const char *out_path, ellm_type target,
                                   const ellm_quantize_options *options)
{
    ellm_quantize_options none = {0};
    const ellm_quantize_options *o = options ? options : &none;
    if (target != ELLM_TYPE_F32 && target != ELLM_TYPE_F16 && target != ELLM_TYPE_BF16 &&
        target != ELLM_TYPE_Q8_0 && target != ELLM_TYPE_Q4_0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "quantizing to %s is not supported yet (supported: F32, F16, BF16, Q8_0, "
                         "Q4_0)",
                         ellm_type_name(target));
    gguf_file *in = NULL;
    edgellm_status st = gguf_open(in_path, &in);
    if (st != EDGELLM_OK)
        return st;
    for (uint64_t i = 0; i < gguf_tensor_count(in); i++) {
        const gguf_tensor_info *t = gguf_tensor_at(in, i);
        if (!ellm_type_supported((ellm_type)t->type)) {
            gguf_close(in);
            return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                             "tensor '%.*s' is %s, which this build cannot read yet",
                             (int)t->name.len, t->name.data, ellm_type_name(t->type));
        }
    }
    gguf_writer *w = gguf_writer_create();
    uint64_t n = gguf_tensor_count(in);
    requant *jobs = calloc(n ? n : 1, sizeof *jobs);
    if (!w || !jobs)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    for (uint64_t i = 0; st == EDGELLM_OK && i < gguf_kv_count(in); i++) {
        const gguf_kv *kv = gguf_kv_at(in, i);
        char *key = gguf_str_dup(kv->key);
        if (!key) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
            break;
        }
        st = strcmp(key, "general.file_type") == 0
                 ? gguf_writer_set_u32(w, key, ellm_gguf_file_type(target))
                 : gguf_writer_set_value(w, key, &kv->value);
        free(key);
    }
    if (st == EDGELLM_OK && !gguf_find_kv(in, "general.file_type"))
        st = gguf_writer_set_u32(w, "general.file_type", ellm_gguf_file_type(target));
    for (uint64_t i = 0; st == EDGELLM_OK && i < n; i++) {
        const gguf_tensor_info *t = gguf_tensor_at(in, i);
        bool fell_back;
        bool tied = gguf_find_tensor(in, "output.weight") == NULL;
        jobs[i] = (requant){t, choose(t, target, tied, &fell_back), o, (int)i, (int)n};
        char *name = gguf_str_dup(t->name);
        if (!name) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
            break;
        }
        if (fell_back && o->on_fallback)
            o->on_fallback(o->user, name, target, jobs[i].type);
        st = gguf_writer_add_tensor_fill(w, name, jobs[i].type, t->n_dims, t->ne,
                                         fill_requantized, &jobs[i]);
        free(name);
    }
    if (st == EDGELLM_OK)
        st = gguf_writer_write(w, out_path);
    gguf_writer_free(w);
    free(jobs);
    gguf_close(in);
    return st;
}
