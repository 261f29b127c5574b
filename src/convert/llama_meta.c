/* The general.* and llama.* metadata every importer writes for a llama-architecture model. */
#include "convert/convert.h"
#include "core/status.h"

uint32_t ellm_gguf_file_type(ellm_type weight_type)
{
    /* general.file_type values of the GGUF convention ("mostly <type>"). */
    switch (weight_type) {
    case ELLM_TYPE_F16: return 1;
    case ELLM_TYPE_Q4_0: return 2;
    case ELLM_TYPE_Q4_1: return 3;
    case ELLM_TYPE_Q8_0: return 7;
    case ELLM_TYPE_Q5_0: return 8;
    case ELLM_TYPE_Q5_1: return 9;
    case ELLM_TYPE_Q2_K: return 10;
    case ELLM_TYPE_Q3_K: return 11; /* Q3_K_S */
    case ELLM_TYPE_IQ4_NL: return 25;
    case ELLM_TYPE_IQ4_XS: return 30;
    case ELLM_TYPE_BF16: return 32;
    default: return 0; /* all F32 */
    }
}

edgellm_status ellm_write_llama_meta(gguf_writer *w, const ellm_llama_meta *m)
{
    edgellm_status st = EDGELLM_OK;
#define SET(call)                                                                                  \
    if (st == EDGELLM_OK)                                                                          \
        st = call;
    SET(ellm_gguf_writer_set_str(w, "general.architecture", "llama"))
    SET(ellm_gguf_writer_set_str(w, "general.name", m->name))
    SET(ellm_gguf_writer_set_u32(w, "general.file_type", ellm_gguf_file_type(m->weight_type)))
    SET(ellm_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)m->n_ctx))
    SET(ellm_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)m->n_embd))
    SET(ellm_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)m->n_layer))
    SET(ellm_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)m->n_ff))
    SET(ellm_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)m->n_head))
    SET(ellm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)m->n_head_kv))
    SET(ellm_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)m->n_rot))
    SET(ellm_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", m->rms_eps))
    SET(ellm_gguf_writer_set_f32(w, "llama.rope.freq_base", m->rope_base))
#undef SET
    return st;
}
