/* SentencePiece model files (MODEL.model, a ModelProto protobuf as spm_train writes it) to a
 * GGUF vocabulary. Only the fields the tokenizer needs are decoded, straight from the protobuf
 * wire format (field numbers from sentencepiece_model.proto):
 *   ModelProto       1 pieces (repeated), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece    1 piece, 2 score (float), 3 type (1 normal ... 6 byte, as GGUF's token_type)
 *   TrainerSpec      3 model_type (1 unigram, 2 bpe, 3 word, 4 char), 40..42 unk/bos/eos ids
 *   NormalizerSpec   1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
 *                    4 remove_extra_whitespaces, 5 escape_whitespaces
 * edgellm's SentencePiece tokenizer merges pairs by the score of the merged piece, which is what
 * SentencePiece's BPE encoder does, without normalization; models that would be encoded
 * differently (unigram, normalization rules, whitespace collapsing) are refused by name. */
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "core/mapped_file.h"
#include "core/status.h"

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_BYTES = 2, WIRE_FIXED32 = 5 };
enum { SPM_UNIGRAM = 1, SPM_BPE = 2 };
enum { SPM_NORMAL = 1, SPM_BYTE = 6 };

typedef struct pb_reader {
    const uint8_t *p, *end;
} pb_reader;

typedef struct pb_field {
    uint32_t number, wire;
    uint64_t varint;     /* WIRE_VARINT; WIRE_FIXED32 bits */
    const uint8_t *data; /* WIRE_BYTES */
    size_t len;
} pb_field;

static bool read_varint(pb_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p == r->end)
            return false;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* The next field of r, or false at the end (*bad set when the bytes are not protobuf). */
static bool next_field(pb_reader *r, pb_field *f, bool *bad)
{
    if (r->p == r->end)
        return false;
    uint64_t key;
    if (!read_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX) {
        *bad = true;
        return false;
    }
    f->number = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    f->data = NULL;
    f->len = 0;
    f->varint = 0;
    switch (f->wire) {
    case WIRE_VARINT:
        if (read_varint(r, &f->varint))
            return true;
        break;
    case WIRE_FIXED64:
        if (r->end - r->p >= 8) {
            r->p += 8;
            return true;
        }
        break;
    case WIRE_BYTES: {
        uint64_t len;
        if (read_varint(r, &len) && len <= (uint64_t)(r->end - r->p)) {
            f->data = r->p;
            f->len = (size_t)len;
            r->p += len;
            return true;
        }
        break;
    }
    case WIRE_FIXED32:
        if (r->end - r->p >= 4) {
            f->varint = (uint64_t)r->p[0] | (uint64_t)r->p[1] << 8 | (uint64_t)r->p[2] << 16 |
                        (uint64_t)r->p[3] << 24;
            r->p += 4;
            return true;
        }
        break;
    default: break; /* groups (3, 4) are not used by SentencePiece */
    }
    *bad = true;
    return false;
}

typedef struct spm_piece {
    const uint8_t *text;
    size_t len;
    float score;
    int32_t type;
} spm_piece;

typedef struct spm_model {
    spm_piece *pieces;
    int32_t n_pieces;
    int64_t model_type;
    int64_t unk_id, bos_id, eos_id;
    const uint8_t *normalizer_name;
    size_t normalizer_name_len;
    bool has_charsmap, add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} spm_model;

static edgellm_status corrupt(const char *path, const char *what)
{
    return ellm_fail(EDGELLM_ERR_FORMAT,
                     "%s is not a SentencePiece model (%s); give the MODEL.model file spm_train "
                     "wrote",
                     path, what);
}

static edgellm_status parse_piece(const char *path, const pb_field *f, spm_piece *out)
{
    pb_reader r = {f->data, f->data + f->len};
    pb_field g;
    bool bad = false, has_text = false;
    *out = (spm_piece){.type = SPM_NORMAL};
    while (next_field(&r, &g, &bad)) {
        if (g.number == 1 && g.wire == WIRE_BYTES) {
            out->text = g.data;
            out->len = g.len;
            has_text = true;
        } else if (g.number == 2 && g.wire == WIRE_FIXED32) {
            uint32_t bits = (uint32_t)g.varint;
            memcpy(&out->score, &bits, sizeof bits);
        } else if (g.number == 3 && g.wire == WIRE_VARINT) {
            out->type = (int32_t)g.varint;
        }
    }
    if (bad)
        return corrupt(path, "a piece is malformed");
    if (!has_text || out->len == 0)
        return corrupt(path, "a piece has no text");
    if (memchr(out->text, '\0', out->len))
        return corrupt(path, "a piece contains a NUL byte");
    if (out->type < 1 || out->type > SPM_BYTE)
        return corrupt(path, "a piece has an unknown type");
    if (!(out->score == out->score) || out->score > 3.4e38f || out->score < -3.4e38f)
        return corrupt(path, "a piece has a non-finite score");
    return EDGELLM_OK;
}

/* Negative ids (-1 = none) are sign-extended 64-bit varints. */
static int64_t as_int32(uint64_t v) { return (int64_t)(int32_t)(uint32_t)v; }

static edgellm_status parse_trainer(const char *path, const pb_field *f, spm_model *m)
{
    pb_reader r = {f->data, f->data + f->len};
    pb_field g;
    bool bad = false;
    while (next_field(&r, &g, &bad)) {
        if (g.wire != WIRE_VARINT)
            continue;
        if (g.number == 3)
            m->model_type = as_int32(g.varint);
        else if (g.number == 40)
            m->unk_id = as_int32(g.varint);
        else if (g.number == 41)
            m->bos_id = as_int32(g.varint);
        else if (g.number == 42)
            m->eos_id = as_int32(g.varint);
    }
    return bad ? corrupt(path, "its trainer_spec is malformed") : EDGELLM_OK;
}

static edgellm_status parse_normalizer(const char *path, const pb_field *f, spm_model *m)
{
    pb_reader r = {f->data, f->data + f->len};
    pb_field g;
    bool bad = false;
    while (next_field(&r, &g, &bad)) {
        if (g.number == 1 && g.wire == WIRE_BYTES) {
            m->normalizer_name = g.data;
            m->normalizer_name_len = g.len;
        } else if (g.number == 2 && g.wire == WIRE_BYTES) {
            m->has_charsmap = g.len > 0;
        } else if (g.number == 3 && g.wire == WIRE_VARINT) {
            m->add_dummy_prefix = g.varint != 0;
        } else if (g.number == 4 && g.wire == WIRE_VARINT) {
            m->remove_extra_whitespaces = g.varint != 0;
        } else if (g.number == 5 && g.wire == WIRE_VARINT) {
            m->escape_whitespaces = g.varint != 0;
        }
    }
    return bad ? corrupt(path, "its normalizer_spec is malformed") : EDGELLM_OK;
}

static edgellm_status parse_model(const char *path, const uint8_t *data, size_t size, spm_model *m)
{
    /* proto2 defaults for fields a file leaves out */
    *m = (spm_model){.model_type = SPM_UNIGRAM,
                     .unk_id = 0,
                     .bos_id = 1,
                     .eos_id = 2,
                     .add_dummy_prefix = true,
                     .remove_extra_whitespaces = true,
                     .escape_whitespaces = true};
    pb_reader r = {data, data + size};
    pb_field f;
    bool bad = false;
    size_t n_pieces = 0;
    while (next_field(&r, &f, &bad))
        n_pieces += f.number == 1 && f.wire == WIRE_BYTES;
    if (bad)
        return corrupt(path, "the protobuf is malformed or truncated");
    if (n_pieces == 0)
        return corrupt(path, "it holds no pieces");
    if (n_pieces > (size_t)ELLM_SPM_MAX_PIECES)
        return ellm_fail(EDGELLM_ERR_FORMAT, "%s has %zu pieces; at most %d are accepted", path,
                         n_pieces, ELLM_SPM_MAX_PIECES);
    m->pieces = malloc(n_pieces * sizeof *m->pieces);
    if (!m->pieces)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %zu pieces", n_pieces);
    r = (pb_reader){data, data + size};
    edgellm_status st = EDGELLM_OK;
    while (st == EDGELLM_OK && next_field(&r, &f, &bad)) {
        if (f.number == 1 && f.wire == WIRE_BYTES)
            st = parse_piece(path, &f, &m->pieces[m->n_pieces++]);
        else if (f.number == 2 && f.wire == WIRE_BYTES)
            st = parse_trainer(path, &f, m);
        else if (f.number == 3 && f.wire == WIRE_BYTES)
            st = parse_normalizer(path, &f, m);
    }
    return st;
}

/* Why the engine would encode text differently from SentencePiece, or NULL. */
static const char *encoding_mismatch(const spm_model *m)
{
    if (m->model_type == SPM_UNIGRAM)
        return "it is a unigram model (edgellm's SentencePiece tokenizer merges pairs as the BPE "
               "encoder does); train it with --model_type=bpe";
    if (m->model_type != SPM_BPE)
        return "it is a word or char model; train it with --model_type=bpe";
    if (m->has_charsmap)
        return "it normalizes text (a precompiled normalization rule) which edgellm does not "
               "apply; train it with --normalization_rule_name=identity";
    if (m->remove_extra_whitespaces)
        return "it collapses repeated spaces, which edgellm does not; train it with "
               "--remove_extra_whitespaces=false";
    if (!m->escape_whitespaces)
        return "it keeps spaces unescaped, while edgellm always writes them as U+2581";
    return NULL;
}

static edgellm_status set_special(gguf_writer *w, const char *key, int64_t id, int32_t n)
{
    if (id < 0)
        return EDGELLM_OK;
    if (id >= n)
        return ellm_fail(EDGELLM_ERR_FORMAT, "the model's %s %lld is beyond its %d pieces", key,
                         (long long)id, n);
    return ellm_gguf_writer_set_u32(w, key, (uint32_t)id);
}

static edgellm_status write_vocab(gguf_writer *w, const spm_model *m)
{
    int32_t n = m->n_pieces;
    char **texts = calloc((size_t)n, sizeof *texts);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    edgellm_status st = EDGELLM_OK;
    if (!texts || !scores || !types)
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d tokens", n);
    for (int32_t i = 0; st == EDGELLM_OK && i < n; i++) {
        const spm_piece *p = &m->pieces[i];
        if (!(texts[i] = malloc(p->len + 1))) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d tokens", n);
            break;
        }
        memcpy(texts[i], p->text, p->len);
        texts[i][p->len] = '\0';
        scores[i] = p->score;
        types[i] = p->type;
    }
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)texts,
                                            (uint64_t)n);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores,
                                        (uint64_t)n);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
                                        (uint64_t)n);
    if (st == EDGELLM_OK)
        st = set_special(w, "tokenizer.ggml.unknown_token_id", m->unk_id, n);
    if (st == EDGELLM_OK)
        st = set_special(w, "tokenizer.ggml.bos_token_id", m->bos_id, n);
    if (st == EDGELLM_OK)
        st = set_special(w, "tokenizer.ggml.eos_token_id", m->eos_id, n);
    /* spm_encode adds neither BOS nor EOS unless asked to; the vocabulary does the same. */
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", m->add_dummy_prefix);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n);
    for (int32_t i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(scores);
    free(types);
    return st;
}

edgellm_status ellm_convert_sentencepiece(const char *model_path, const char *out_path,
                                          const char *name)
{
    ellm_mapped_file file = {0};
    edgellm_status st = ellm_map_file(model_path, EDGELLM_PAGES_HUGE, &file);
    if (st != EDGELLM_OK)
        return st;
    spm_model m = {0};
    st = file.size == 0 ? corrupt(model_path, "it is empty")
                        : parse_model(model_path, file.data, file.size, &m);
    const char *mismatch = st == EDGELLM_OK ? encoding_mismatch(&m) : NULL;
    if (mismatch)
        st = ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                       "%s cannot be imported: edgellm would tokenize differently, because %s",
                       model_path, mismatch);
    gguf_writer *w = NULL;
    if (st == EDGELLM_OK && !(w = ellm_gguf_writer_create()))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for a GGUF writer");
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "general.architecture", "llama");
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "general.name", name ? name : "sentencepiece");
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_set_str(w, "general.type", "vocab");
    if (st == EDGELLM_OK)
        st = write_vocab(w, &m);
    if (st == EDGELLM_OK)
        st = ellm_gguf_writer_write(w, out_path);
    ellm_gguf_writer_free(w);
    free(m.pieces);
    ellm_unmap_file(&file);
    return st;
}
