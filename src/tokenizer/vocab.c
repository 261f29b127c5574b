/* Vocabulary from GGUF metadata: token texts, scores and types, special ids, and a hash index
 * from text to id. */
#include <stdlib.h>
#include <string.h>

#include "core/hex.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_internal.h"

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

edgellm_token ellm_vocab_find(const ellm_vocab *v, const char *text, size_t len)
{
    for (uint64_t s = hash_bytes(text, len) & v->index_mask;; s = (s + 1) & v->index_mask) {
        int32_t id = v->index[s];
        if (id < 0)
            return -1;
        if (v->tokens[id].len == len && memcmp(v->tokens[id].text, text, len) == 0)
            return id;
    }
}

edgellm_token ellm_vocab_match_special(const ellm_vocab *v, const char *text, size_t len)
{
    if (len == 0 || !v->special_first[(uint8_t)text[0]])
        return -1;
    for (int32_t k = 0; k < v->n_specials; k++) {
        const ellm_vocab_token *t = &v->tokens[v->specials[k]];
        if (t->len <= len && memcmp(text, t->text, t->len) == 0)
            return v->specials[k];
    }
    return -1;
}

static edgellm_status build_index(ellm_vocab *v)
{
    uint64_t cap = 64;
    while (cap < (uint64_t)v->n_tokens * 2)
        cap *= 2;
    v->index = malloc(cap * sizeof *v->index);
    if (!v->index)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary index");
    memset(v->index, 0xFF, cap * sizeof *v->index);
    v->index_mask = cap - 1;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        const ellm_vocab_token *t = &v->tokens[id];
        uint64_t s = hash_bytes(t->text, t->len) & v->index_mask;
        bool duplicate = false;
        while (v->index[s] >= 0) {
            const ellm_vocab_token *o = &v->tokens[v->index[s]];
            if (o->len == t->len && memcmp(o->text, t->text, t->len) == 0) {
                duplicate = true; /* the first id with a text wins, as in other runtimes */
                break;
            }
            s = (s + 1) & v->index_mask;
        }
        if (!duplicate)
            v->index[s] = id;
    }
    return EDGELLM_OK;
}

static edgellm_status get_special(const gguf_file *f, const char *key, int32_t n,
                                  edgellm_token *out)
{
    uint32_t id;
    edgellm_status st = ellm_gguf_get_u32(f, key, &id);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return EDGELLM_OK;
    if (st != EDGELLM_OK)
        return st;
    if (id >= (uint32_t)n)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s is %u but the vocabulary has %d tokens", key, id,
                         n);
    *out = (edgellm_token)id;
    return EDGELLM_OK;
}

static edgellm_status load_arrays(ellm_vocab *v, const gguf_file *f)
{
    const gguf_array *tokens, *scores = NULL, *types = NULL;
    edgellm_status st = ellm_gguf_get_array(f, "tokenizer.ggml.tokens", &tokens);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "the model has no vocabulary (tokenizer.ggml.tokens is missing)");
    if (st != EDGELLM_OK)
        return st;
    if (tokens->elem_type != GGUF_TYPE_STRING || tokens->n == 0 || tokens->n > INT32_MAX / 2)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "tokenizer.ggml.tokens must be a non-empty array of strings");
    v->n_tokens = (int32_t)tokens->n;
    st = ellm_gguf_get_array(f, "tokenizer.ggml.scores", &scores);
    if (st != EDGELLM_OK && st != EDGELLM_ERR_NOT_FOUND)
        return st;
    if (scores && scores->n != tokens->n)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "tokenizer.ggml.scores has %llu entries but there are %d tokens",
                         (unsigned long long)scores->n, v->n_tokens);
    st = ellm_gguf_get_array(f, "tokenizer.ggml.token_type", &types);
    if (st != EDGELLM_OK && st != EDGELLM_ERR_NOT_FOUND)
        return st;
    if (types && types->n != tokens->n)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "tokenizer.ggml.token_type has %llu entries but there are %d tokens",
                         (unsigned long long)types->n, v->n_tokens);

    uint64_t text_bytes = 0;
    for (uint64_t i = 0; i < tokens->n; i++)
        text_bytes += tokens->strings[i].len + 1;
    v->tokens = calloc((size_t)v->n_tokens, sizeof *v->tokens);
    v->text_pool = malloc((size_t)text_bytes);
    if (!v->tokens || !v->text_pool)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d tokens", v->n_tokens);
    char *p = v->text_pool;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        gguf_str s = tokens->strings[i];
        memcpy(p, s.data, s.len);
        p[s.len] = '\0';
        ellm_vocab_token *t = &v->tokens[i];
        t->text = p;
        t->len = (uint32_t)s.len;
        p += s.len + 1;
        float score = 0;
        if (scores && !ellm_gguf_array_get_f32(scores, (uint64_t)i, &score))
            return ellm_fail(EDGELLM_ERR_FORMAT, "tokenizer.ggml.scores must hold numbers");
        t->score = score;
        int64_t type = ELLM_TOKEN_NORMAL;
        if (types && !ellm_gguf_array_get_i64(types, (uint64_t)i, &type))
            return ellm_fail(EDGELLM_ERR_FORMAT, "tokenizer.ggml.token_type must hold integers");
        if (type < 0 || type > ELLM_TOKEN_BYTE)
            type = ELLM_TOKEN_NORMAL;
        t->type = (ellm_token_type)type;
    }
    return EDGELLM_OK;
}

/* "<0xAB>" -> 0xAB, else -1. */
int ellm_parse_byte_token(const char *text, size_t len)
{
    if (len != 6 || memcmp(text, "<0x", 3) != 0 || text[5] != '>')
        return -1;
    int hi = ellm_hex_digit(text[3]), lo = ellm_hex_digit(text[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static void add_eog(ellm_vocab *v, edgellm_token t)
{
    if (t < 0 || v->n_eog == (int32_t)(sizeof v->eog / sizeof v->eog[0]))
        return;
    for (int32_t k = 0; k < v->n_eog; k++)
        if (v->eog[k] == t)
            return;
    v->eog[v->n_eog++] = t;
}

/* End of generation: EOS, the end-of-turn / end-of-message ids the file names, and control
 * tokens whose text is a well-known end marker (files often name only one of them, while the
 * chat templates of their models end turns with another). */
static void collect_eog(ellm_vocab *v)
{
    static const char *const markers[] = {"<|eot_id|>",    "<|eom_id|>",      "<|im_end|>",
                                          "<|endoftext|>", "<|end_of_text|>", "<end_of_turn>",
                                          "<|end|>",       "<|return|>",      "</s>"};
    add_eog(v, v->eos);
    add_eog(v, v->eot);
    add_eog(v, v->eom);
    for (size_t m = 0; m < sizeof markers / sizeof markers[0]; m++) {
        edgellm_token t = ellm_vocab_find(v, markers[m], strlen(markers[m]));
        if (t >= 0 && v->tokens[t].type == ELLM_TOKEN_CONTROL)
            add_eog(v, t);
    }
}

edgellm_status ellm_vocab_load(const gguf_file *f, ellm_vocab **out)
{
    *out = NULL;
    gguf_str model;
    edgellm_status st = ellm_gguf_get_str(f, "tokenizer.ggml.model", &model);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "the model has no tokenizer (tokenizer.ggml.model is missing)");
    if (st != EDGELLM_OK)
        return st;
    bool spm = ellm_gguf_str_eq(model, "llama"), bpe = ellm_gguf_str_eq(model, "gpt2");
    if (!spm && !bpe)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "tokenizer '%.*s' is not supported yet (supported: llama/SentencePiece, "
                         "gpt2/byte-level BPE)",
                         (int)(model.len > 40 ? 40 : model.len), model.data);
    ellm_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary");
    /* SentencePiece vocabularies conventionally put <unk>, <s>, </s> first; byte-level BPE ones
     * name their special tokens explicitly and add no dummy-prefix space. */
    v->bos = spm ? 1 : -1;
    v->eos = spm ? 2 : -1;
    v->unk = spm ? 0 : -1;
    v->eot = -1;
    v->eom = -1;
    v->add_bos = spm;
    v->add_space_prefix = spm;
    st = load_arrays(v, f);
    if (st == EDGELLM_OK && v->n_tokens < 3)
        v->bos = v->eos = v->unk = -1;
    if (st == EDGELLM_OK)
        st = get_special(f, "tokenizer.ggml.bos_token_id", v->n_tokens, &v->bos);
    if (st == EDGELLM_OK)
        st = get_special(f, "tokenizer.ggml.eos_token_id", v->n_tokens, &v->eos);
    if (st == EDGELLM_OK)
        st = get_special(f, "tokenizer.ggml.unknown_token_id", v->n_tokens, &v->unk);
    if (st == EDGELLM_OK)
        st = get_special(f, "tokenizer.ggml.eot_token_id", v->n_tokens, &v->eot);
    if (st == EDGELLM_OK)
        st = get_special(f, "tokenizer.ggml.eom_token_id", v->n_tokens, &v->eom);
    if (st == EDGELLM_OK) {
        bool b;
        edgellm_status s2 = ellm_gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b);
        if (s2 == EDGELLM_OK)
            v->add_bos = b;
        else if (s2 != EDGELLM_ERR_NOT_FOUND)
            st = s2;
        s2 = ellm_gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &b);
        if (s2 == EDGELLM_OK)
            v->add_space_prefix = b;
        else if (s2 != EDGELLM_ERR_NOT_FOUND && st == EDGELLM_OK)
            st = s2;
    }
    if (st == EDGELLM_OK)
        st = build_index(v);
    if (st == EDGELLM_OK) {
        for (int b = 0; b < 256; b++) {
            char name[7];
            static const char hex[] = "0123456789ABCDEF";
            memcpy(name, "<0x", 3);
            name[3] = hex[b >> 4];
            name[4] = hex[b & 15];
            name[5] = '>';
            name[6] = '\0';
            v->byte_tokens[b] = ellm_vocab_find(v, name, 6);
        }
        /* Control and user-defined tokens, longest first, for special-token parsing. */
        v->specials = malloc((size_t)v->n_tokens * sizeof *v->specials);
        if (!v->specials)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary");
        for (int32_t i = 0; st == EDGELLM_OK && i < v->n_tokens; i++) {
            ellm_token_type t = v->tokens[i].type;
            if ((t == ELLM_TOKEN_CONTROL || t == ELLM_TOKEN_USER_DEFINED) && v->tokens[i].len > 0)
                v->specials[v->n_specials++] = i;
        }
        for (int32_t i = 1; st == EDGELLM_OK && i < v->n_specials; i++) {
            int32_t id = v->specials[i], j = i;
            while (j > 0 && v->tokens[v->specials[j - 1]].len < v->tokens[id].len) {
                v->specials[j] = v->specials[j - 1];
                j--;
            }
            v->specials[j] = id;
        }
        for (int32_t k = 0; st == EDGELLM_OK && k < v->n_specials; k++)
            v->special_first[(uint8_t)v->tokens[v->specials[k]].text[0]] = 1;
        if (st == EDGELLM_OK)
            collect_eog(v);
    }
    if (st == EDGELLM_OK && bpe)
        st = ellm_bpe_load(v, f);
    if (st != EDGELLM_OK) {
        ellm_vocab_free(v);
        return st;
    }
    *out = v;
    return EDGELLM_OK;
}

void ellm_vocab_free(ellm_vocab *v)
{
    if (!v)
        return;
    free(v->tokens);
    free(v->text_pool);
    free(v->index);
    free(v->specials);
    ellm_bpe_free(v->bpe);
    free(v);
}

edgellm_status ellm_vocab_byte_fallback(const ellm_vocab *v, edgellm_token byte_token, uint8_t byte,
                                        edgellm_token *out)
{
    *out = byte_token >= 0 ? byte_token : v->unk;
    if (*out < 0)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "no token can stand for byte 0x%02X of the text: the vocabulary has "
                         "neither a token for it nor an unknown token",
                         byte);
    return EDGELLM_OK;
}

int32_t ellm_vocab_size(const ellm_vocab *v) { return v->n_tokens; }
edgellm_token ellm_vocab_bos(const ellm_vocab *v) { return v->bos; }
edgellm_token ellm_vocab_eos(const ellm_vocab *v) { return v->eos; }
bool ellm_vocab_add_bos(const ellm_vocab *v) { return v->add_bos && v->bos >= 0; }

bool ellm_vocab_is_eog(const ellm_vocab *v, edgellm_token t)
{
    for (int32_t k = 0; t >= 0 && k < v->n_eog; k++)
        if (v->eog[k] == t)
            return true;
    return false;
}

ellm_token_type ellm_vocab_token_type(const ellm_vocab *v, edgellm_token t)
{
    return t >= 0 && t < v->n_tokens ? v->tokens[t].type : ELLM_TOKEN_UNDEFINED;
}

const char *ellm_vocab_token_text(const ellm_vocab *v, edgellm_token t)
{
    return t >= 0 && t < v->n_tokens ? v->tokens[t].text : NULL;
}
