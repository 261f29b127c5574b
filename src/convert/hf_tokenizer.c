/* Hugging Face byte-level BPE tokenizers (tokenizer.json and its companion files) to the
 * tokenizer.ggml.* keys of GGUF. Shapes used (from the tokenizers library's JSON format):
 * model {type "BPE", vocab {text: id}, merges ["a b"] or [["a","b"]], unk_token}, added_tokens
 * [{id, content, special}], pre_tokenizer (Split with a Regex pattern, ByteLevel, Digits, or a
 * Sequence of them), normalizer. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/hf_tokenizer.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "model/arch.h"
#include "tokenizer/tokenizer.h"

/* The split regexes of the supported families, as tokenizer.json spells them. */
static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct hf_files {
    char dir[4096];
    json_t *tokenizer, *config, *tok_config, *gen_config; /* all but tokenizer may be NULL */
} hf_files;

typedef struct vocab_out {
    int32_t n;
    char **text;
    int32_t *type;
} vocab_out;

/* Companion files are read with every number as a double: tokenizer_config.json often holds
 * model_max_length = 1e30 written as an integer, which does not fit 64 bits. */
static edgellm_status load_json(const char *dir, const char *name, bool required, json_t **out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *out = NULL;
    FILE *f = ellm_fopen_regular(path);
    if (!f) {
        if (!required && errno == ENOENT) {
            ellm_clear_error();
            return EDGELLM_OK;
        }
        return ellm_fail_wrap(EDGELLM_ERR_IO, "a Hugging Face model directory needs a %s", name);
    }
    json_error_t err;
    size_t flags = strcmp(name, "tokenizer.json") == 0 ? 0 : JSON_DECODE_INT_AS_REAL;
    *out = json_loadf(f, JSON_DECODE_ANY | flags, &err);
    fclose(f);
    if (!*out)
        return ellm_fail(EDGELLM_ERR_FORMAT, "'%s' is not valid JSON (line %d: %s)", path, err.line,
                         err.text);
    return EDGELLM_OK;
}

static void close_files(hf_files *h)
{
    json_decref(h->tokenizer);
    json_decref(h->config);
    json_decref(h->tok_config);
    json_decref(h->gen_config);
}

static edgellm_status open_files(const char *dir, hf_files *h)
{
    memset(h, 0, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    edgellm_status st = load_json(dir, "tokenizer.json", true, &h->tokenizer);
    if (st == EDGELLM_OK)
        st = load_json(dir, "tokenizer_config.json", false, &h->tok_config);
    if (st == EDGELLM_OK)
        st = load_json(dir, "config.json", false, &h->config);
    if (st == EDGELLM_OK)
        st = load_json(dir, "generation_config.json", false, &h->gen_config);
    if (st != EDGELLM_OK)
        close_files(h);
    return st;
}

/* The text of a special-token entry: "…" or {"content": "…"}; NULL if absent/null. */
static const char *token_content(json_t *v)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

/* Which pre-tokenizer family the tokenizer's pre_tokenizer is. */
static edgellm_status detect_pre(const hf_files *h, const char **out)
{
    json_t *pt = json_object_get(h->tokenizer, "pre_tokenizer");
    json_t *list = json_array();
    if (!list)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory");
    if (json_is_object(pt) && json_is_array(json_object_get(pt, "pretokenizers")))
        json_array_extend(list, json_object_get(pt, "pretokenizers"));
    else if (json_is_object(pt))
        json_array_append(list, pt);
    const char *regex = NULL;
    bool byte_level = false, byte_level_regex = false, digits = false, other = false;
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!type) {
            other = true;
        } else if (!strcmp(type, "Split")) {
            json_t *pat = json_object_get(json_object_get(p, "pattern"), "Regex");
            if (regex || !json_is_string(pat))
                other = true;
            else
                regex = json_string_value(pat);
        } else if (!strcmp(type, "ByteLevel")) {
            byte_level = true;
            json_t *ur = json_object_get(p, "use_regex");
            byte_level_regex = !json_is_boolean(ur) || json_is_true(ur);
        } else if (!strcmp(type, "Digits") &&
                   json_is_true(json_object_get(p, "individual_digits"))) {
            digits = true;
        } else {
            other = true;
        }
    }
    *out = NULL;
    if (byte_level && !other) {
        if (regex && !byte_level_regex && !digits && !strcmp(regex, LLAMA3_REGEX))
            *out = "llama-bpe";
        else if (regex && !byte_level_regex && !digits && !strcmp(regex, QWEN2_REGEX))
            *out = "qwen2";
        else if (!regex && byte_level_regex && digits)
            *out = "smollm";
        else if (!regex && byte_level_regex && !digits)
            *out = "gpt2";
    }
    char *desc = json_dumps(pt, JSON_COMPACT);
    json_decref(list);
    edgellm_status st = EDGELLM_OK;
    if (!*out)
        st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                       "'%s/tokenizer.json': the pre-tokenizer is not one of the supported "
                       "byte-level BPE families (llama-bpe, qwen2, gpt2, smollm): %.300s",
                       h->dir, desc ? desc : "?");
    free(desc);
    return st;
}

static void free_vocab(vocab_out *v)
{
    if (v->text)
        for (int32_t i = 0; i < v->n; i++)
            free(v->text[i]);
    free(v->text);
    free(v->type);
}

static char *dup_str(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int32_t config_int(json_t *obj, const char *key, int32_t fallback)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    double d = json_number_value(v);
    return json_is_number(v) && d >= 0 && d < INT32_MAX && d == (double)(int32_t)d ? (int32_t)d
                                                                                   : fallback;
}

/* Tokens and types: model.vocab, then added_tokens over them; holes and padding up to
 * config.json's vocab_size become unused "[PADn]" tokens. */
static edgellm_status build_vocab(const hf_files *h, vocab_out *out)
{
    memset(out, 0, sizeof *out);
    json_t *model = json_object_get(h->tokenizer, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(h->tokenizer, "added_tokens");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return ellm_fail(EDGELLM_ERR_FORMAT, "'%s/tokenizer.json' has no model.vocab object",
                         h->dir);
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val)
    {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= ELLM_HF_MAX_VOCAB)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "'%s/tokenizer.json': vocab entry '%.40s' has no valid id", h->dir,
                             key);
        if (json_integer_value(val) > max_id)
            max_id = json_integer_value(val);
    }
    size_t i;
    json_t *a;
    json_array_foreach(added, i, a)
    {
        json_t *id = json_object_get(a, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= ELLM_HF_MAX_VOCAB ||
            !json_is_string(json_object_get(a, "content")))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "'%s/tokenizer.json': added_tokens[%zu] needs an id below %d and a "
                             "content",
                             h->dir, i, ELLM_HF_MAX_VOCAB);
        if (json_integer_value(id) > max_id)
            max_id = json_integer_value(id);
    }
    int32_t n = (int32_t)max_id + 1;
    json_t *size = json_object_get(h->config, "vocab_size");
    if (size && !json_is_null(size)) {
        double d = json_number_value(size);
        if (!json_is_number(size) || !(d >= 1 && d <= ELLM_HF_MAX_VOCAB) || d != floor(d))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "'%s/config.json': 'vocab_size' must be an integer in 1..%d", h->dir,
                             ELLM_HF_MAX_VOCAB);
        if ((int32_t)d > n)
            n = (int32_t)d;
    }
    /* Memory follows the ids, so it is bounded by the tokens the file really defines. */
    size_t defined = json_object_size(vocab) + json_array_size(added);
    if ((size_t)n > defined + ELLM_HF_MAX_PADDING)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "'%s': the vocabulary spans %d ids but only %zu tokens are defined "
                         "(tokenizer.json ids and config.json vocab_size may leave at most %d "
                         "unnamed); the files are broken",
                         h->dir, (int)n, defined, ELLM_HF_MAX_PADDING);
    out->n = n;
    out->text = calloc((size_t)n, sizeof *out->text);
    out->type = calloc((size_t)n, sizeof *out->type);
    if (!out->text || !out->type)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d tokens", n);
    json_object_foreach(vocab, key, val)
    {
        int32_t id = (int32_t)json_integer_value(val);
        free(out->text[id]);
        out->text[id] = dup_str(key, strlen(key));
        out->type[id] = ELLM_TOKEN_NORMAL;
        if (!out->text[id])
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary");
    }
    json_array_foreach(added, i, a)
    {
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        json_t *content = json_object_get(a, "content");
        free(out->text[id]);
        out->text[id] = dup_str(json_string_value(content), json_string_length(content));
        /* Special added tokens are control tokens; the others (e.g. <think>) are text the
         * model reads and writes, matched whole like control tokens. */
        out->type[id] = json_is_true(json_object_get(a, "special")) ? ELLM_TOKEN_CONTROL
                                                                    : ELLM_TOKEN_USER_DEFINED;
        if (!out->text[id])
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary");
    }
    for (int32_t id = 0; id < n; id++) {
        if (out->text[id])
            continue;
        char pad[32];
        int len = snprintf(pad, sizeof pad, "[PAD%d]", (int)id);
        out->text[id] = dup_str(pad, (size_t)len);
        out->type[id] = ELLM_TOKEN_UNUSED;
        if (!out->text[id])
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary");
    }
    return EDGELLM_OK;
}

static edgellm_status write_merges(gguf_writer *w, const hf_files *h)
{
    json_t *merges = json_object_get(json_object_get(h->tokenizer, "model"), "merges");
    if (!json_is_array(merges))
        return ellm_fail(EDGELLM_ERR_FORMAT, "'%s/tokenizer.json' has no model.merges list",
                         h->dir);
    size_t n = json_array_size(merges);
    char **strs = calloc(n ? n : 1, sizeof *strs);
    if (!strs)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %zu merges", n);
    edgellm_status st = EDGELLM_OK;
    for (size_t i = 0; i < n && st == EDGELLM_OK; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            strs[i] = dup_str(json_string_value(m), json_string_length(m));
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
            size_t ll = json_string_length(l), rl = json_string_length(r);
            strs[i] = malloc(ll + rl + 2);
            if (strs[i]) {
                memcpy(strs[i], json_string_value(l), ll);
                strs[i][ll] = ' ';
                memcpy(strs[i] + ll + 1, json_string_value(r), rl);
                strs[i][ll + 1 + rl] = '\0';
            }
        } else {
            st = ellm_fail(EDGELLM_ERR_FORMAT,
                           "'%s/tokenizer.json': merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]",
                           h->dir, i);
            break;
        }
        if (!strs[i])
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the merges");
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str_array(w, "tokenizer.ggml.merges", (const char *const *)strs,
                                            n);
    for (size_t i = 0; i < n; i++)
        free(strs[i]);
    free(strs);
    return st;
}

static int32_t find_token(const vocab_out *v, const char *text)
{
    if (!text)
        return -1;
    for (int32_t id = v->n - 1; id >= 0; id--) /* added tokens sit at the end */
        if (!strcmp(v->text[id], text))
            return id;
    return -1;
}

static edgellm_status set_id(gguf_writer *w, const char *key, int32_t id)
{
    return id >= 0 ? ellm_gguf_writer_set_u32(w, key, (uint32_t)id) : EDGELLM_OK;
}

/* Special ids: tokenizer_config.json names them; config/generation_config give ids. */
static edgellm_status write_specials(gguf_writer *w, const hf_files *h, const vocab_out *v)
{
    json_t *tc = h->tok_config;
    int32_t bos = find_token(v, token_content(json_object_get(tc, "bos_token")));
    int32_t eos = find_token(v, token_content(json_object_get(tc, "eos_token")));
    int32_t pad = find_token(v, token_content(json_object_get(tc, "pad_token")));
    int32_t unk = find_token(v, token_content(json_object_get(tc, "unk_token")));
    if (unk < 0)
        unk = find_token(v, json_string_value(json_object_get(
                                json_object_get(h->tokenizer, "model"), "unk_token")));
    if (bos < 0)
        bos = config_int(h->gen_config, "bos_token_id", config_int(h->config, "bos_token_id", -1));
    if (eos < 0)
        eos = config_int(h->gen_config, "eos_token_id", config_int(h->config, "eos_token_id", -1));
    if (bos >= v->n)
        bos = -1;
    if (eos >= v->n)
        eos = -1;
    /* End of turn / end of message, by the markers chat models use. */
    static const char *const eot_markers[] = {"<|eot_id|>", "<|im_end|>", "<|end|>",
                                              "<end_of_turn>"};
    int32_t eot = -1;
    for (size_t k = 0; k < sizeof eot_markers / sizeof eot_markers[0] && eot < 0; k++)
        eot = find_token(v, eot_markers[k]);
    int32_t eom = find_token(v, "<|eom_id|>");

    /* add_bos_token when the file says so; otherwise a tokenizer that names a BOS token adds
     * it (Llama 3's omits the flag but its models expect <|begin_of_text|> first). */
    json_t *ab = json_object_get(tc, "add_bos_token");
    bool add_bos = json_is_boolean(ab) ? json_is_true(ab) : bos >= 0;
    bool add_eos = json_is_true(json_object_get(tc, "add_eos_token"));

    edgellm_status st = set_id(w, "tokenizer.ggml.bos_token_id", bos);
    if (st == EDGELLM_OK)
        st = set_id(w, "tokenizer.ggml.eos_token_id", eos);
    if (st == EDGELLM_OK)
        st = set_id(w, "tokenizer.ggml.eot_token_id", eot);
    if (st == EDGELLM_OK)
        st = set_id(w, "tokenizer.ggml.eom_token_id", eom);
    if (st == EDGELLM_OK)
        st = set_id(w, "tokenizer.ggml.unknown_token_id", unk);
    if (st == EDGELLM_OK)
        st = set_id(w, "tokenizer.ggml.padding_token_id", pad);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos && bos >= 0);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos);

    /* chat_template: a string, or a list of {name, template} where "default" is the one. */
    json_t *ct = json_object_get(tc, "chat_template");
    const char *tmpl = json_string_value(ct);
    if (json_is_array(ct)) {
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e)
        {
            const char *nm = json_string_value(json_object_get(e, "name"));
            if (nm && !strcmp(nm, "default"))
                tmpl = json_string_value(json_object_get(e, "template"));
        }
    }
    if (st == EDGELLM_OK && tmpl)
        st = ellm_gguf_writer_set_str(w, "tokenizer.chat_template", tmpl);
    return st;
}

edgellm_status ellm_hf_write_tokenizer(gguf_writer *w, const char *dir, int32_t *out_n_vocab)
{
    hf_files h;
    edgellm_status st = open_files(dir, &h);
    if (st != EDGELLM_OK)
        return st;
    json_t *model = json_object_get(h.tokenizer, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    const char *norm = json_string_value(
        json_object_get(json_object_get(h.tokenizer, "normalizer"), "type"));
    const char *pre = NULL;
    vocab_out v = {0};
    if (!mtype || strcmp(mtype, "BPE") != 0 ||
        json_is_true(json_object_get(model, "byte_fallback")))
        st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                       "'%s/tokenizer.json' is a %s tokenizer%s; only byte-level BPE tokenizers "
                       "are supported",
                       dir, mtype ? mtype : "(unnamed)",
                       json_is_true(json_object_get(model, "byte_fallback"))
                           ? " with byte fallback (SentencePiece-style)"
                           : "");
    /* NFC (Qwen) is accepted: GGUF has no key for it and runtimes tokenize without it, which
     * only differs for text holding decomposed characters. */
    if (st == EDGELLM_OK && norm && strcmp(norm, "NFC") != 0)
        st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                       "'%s/tokenizer.json': normalizer '%s' is not supported (only none or NFC)",
                       dir, norm);
    if (st == EDGELLM_OK)
        st = detect_pre(&h, &pre);
    if (st == EDGELLM_OK)
        st = build_vocab(&h, &v);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)v.text,
                                            (uint64_t)v.n);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v.type,
                                        (uint64_t)v.n);
    if (st == EDGELLM_OK)
        st = write_merges(w, &h);
    if (st == EDGELLM_OK)
        st = write_specials(w, &h, &v);
    if (st == EDGELLM_OK && out_n_vocab)
        *out_n_vocab = v.n;
    free_vocab(&v);
    close_files(&h);
    return st;
}

/* general.architecture: the table's row for the config's model class (what a weight import would
 * write), else its model_type as it is; "llama" without either. */
static const char *architecture(json_t *config)
{
    const json_t *classes = json_object_get(config, "architectures");
    const char *cls = json_string_value(json_array_get(classes, 0));
    const ellm_arch *arch = NULL;
    if (cls && ellm_arch_find_hf(cls, &arch) == EDGELLM_OK)
        return arch->name;
    ellm_clear_error();
    const char *mt = json_string_value(json_object_get(config, "model_type"));
    return mt ? mt : "llama";
}

edgellm_status ellm_convert_hf_vocab_only(const char *dir, const char *out_path, const char *name)
{
    json_t *config = NULL;
    edgellm_status st = load_json(dir, "config.json", false, &config);
    if (st != EDGELLM_OK)
        return st;
    gguf_writer *w = ellm_gguf_writer_create();
    if (!w) {
        json_decref(config);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a GGUF writer");
    }
    char base[256];
    if (!name) {
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        size_t b = n;
        while (b > 0 && dir[b - 1] != '/')
            b--;
        snprintf(base, sizeof base, "%.*s", (int)(n - b), dir + b);
        name = base;
    }
    st = ellm_gguf_writer_set_str(w, "general.architecture", architecture(config));
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "general.name", name);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "general.type", "vocab");
    int32_t n_vocab = 0;
    if (st == EDGELLM_OK)
        st = ellm_hf_write_tokenizer(w, dir, &n_vocab);
    if (st == EDGELLM_OK) {
        char key[160];
        snprintf(key, sizeof key, "%s.vocab_size", architecture(config));
        st = ellm_gguf_writer_set_u32(w, key, (uint32_t)n_vocab);
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, out_path);
    ellm_gguf_writer_free(w);
    json_decref(config);
    return st;
}
