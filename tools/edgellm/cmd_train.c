/* `edgellm train`: trains a llama model from scratch (--dims with a --vocab) or fine-tunes one
 * (--init) on a text corpus with the library's training graph (src/train). Checkpoints are GGUF
 * files that load as models and also carry the optimizer state and the options of the run, so
 * `--resume` continues exactly where the run stopped.
 * `edgellm distill` is the same run with a teacher: any model the inference engine loads runs
 * forward on each batch and the student learns from its logits (ellm_train_distill). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "edgellm.h"
#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "train/train.h"
#include "train/train_ops.h"

/* "train" or "distill", for messages */
static const char *cmd_name = "train";
#define CMD cmd_name

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: edgellm train -o OUT.gguf (--init MODEL.gguf | --dims "
        "EMBD,LAYERS,HEADS,KV_HEADS,FF\n"
        "                     --vocab VOCAB.gguf) -f CORPUS.txt [options]\n"
        "  --init MODEL     fine-tune this llama model (F32 or quantized; trained in F32)\n"
        "  --dims E,L,H,K,F a new model: width, layers, heads, KV heads, feed-forward size;\n"
        "                   its tokenizer comes from --vocab (any GGUF with a vocabulary)\n"
        "  --ctx N          tokens per training sequence (default 256)\n"
        "  --batch N        sequences per step (default 16)\n"
        "  --steps N | --epochs E   length of the run (default: 1 epoch)\n"
        "  --lr X           peak learning rate (default 1e-3; warm-up, then cosine to lr/10)\n"
        "  --seed S         initialization and batch order (default 1)\n"
        "  --eval-split X   share of the corpus (its end) held out for the eval loss (0.05)\n"
        "  --checkpoint-every N  write OUT.gguf.ckpt every N steps (default 0: only on Ctrl-C)\n"
        "  --stop-at N      stop after step N with a checkpoint, as if interrupted\n"
        "  --resume CKPT    continue a run from its checkpoint (options come from it)\n"
        "  -t N             threads (default: all cores)\n"
        "  writes OUT.gguf, a CSV log OUT.gguf.csv and checkpoints OUT.gguf.ckpt\n");
}

static void usage_distill(FILE *out)
{
    fprintf(
        out,
        "usage: edgellm distill --teacher T.gguf --student S.gguf -o OUT.gguf -f CORPUS.txt\n"
        "                       [--temperature 2] [--alpha 0.5] [--top-k K] [train options]\n"
        "  trains the student on the teacher's next-token distributions:\n"
        "  loss = alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE\n"
        "  --teacher MODEL  any model edgellm runs (quantized too); run forward only\n"
        "  --student MODEL  the llama model to train (F32 or quantized; trained in F32); it\n"
        "                   must have the teacher's vocabulary\n"
        "  --temperature T  softening of both distributions (default 2)\n"
        "  --alpha A        weight of the teacher's term against plain cross-entropy (0.5)\n"
        "  --top-k K        keep only the teacher's K most likely tokens per position\n"
        "  reports the student's KL to the teacher (temperature 1) and both perplexities on\n"
        "  the held-out text before and after; train options: --ctx, --batch, --steps,\n"
        "  --epochs, --lr, --seed, --eval-split, --checkpoint-every, --stop-at, --resume\n"
        "  (with --teacher again), -t; see edgellm train --help\n");
}

typedef struct train_options {
    const char *out, *init, *dims, *vocab, *corpus, *resume;
    long ctx, batch, steps, seed, checkpoint_every, stop_at, threads;
    double epochs, lr, eval_split;
    /* edgellm distill */
    bool distill;
    const char *teacher;
    double temperature, alpha;
    long top_k; /* 0: the whole distribution */
} train_options;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int parse_dims(const char *s, ellm_train_config *cfg)
{
    int v[5], used = 0;
    if (sscanf(s, "%d,%d,%d,%d,%d%n", &v[0], &v[1], &v[2], &v[3], &v[4], &used) != 5 ||
        s[used] != '\0') {
        cli_error(CMD, "--dims wants five numbers EMBD,LAYERS,HEADS,KV_HEADS,FF, got '%s'", s);
        return EXIT_USAGE;
    }
    cfg->n_embd = v[0];
    cfg->n_layer = v[1];
    cfg->n_head = v[2];
    cfg->n_head_kv = v[3];
    cfg->n_ff = v[4];
    return 0;
}

static int parse_args(int argc, char **argv, bool distill, train_options *o)
{
    *o = (train_options){.ctx = 256,
                         .batch = 16,
                         .seed = 1,
                         .lr = 1e-3,
                         .eval_split = 0.05,
                         .distill = distill,
                         .temperature = 2,
                         .alpha = 0.5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            (distill ? usage_distill : usage)(stdout);
            return -1;
        }
        const char *valued[] = {"-o",
                                "--init",
                                "--dims",
                                "--vocab",
                                "-f",
                                "--ctx",
                                "--batch",
                                "--steps",
                                "--epochs",
                                "--lr",
                                "--seed",
                                "--eval-split",
                                "--checkpoint-every",
                                "--stop-at",
                                "--resume",
                                "-t"};
        const char *valued_distill[] = {
            "-o",        "--teacher", "--student",    "-f",
            "--ctx",     "--batch",   "--steps",      "--epochs",
            "--lr",      "--seed",    "--eval-split", "--checkpoint-every",
            "--stop-at", "--resume",  "-t",           "--temperature",
            "--alpha",   "--top-k"};
        bool known = false;
        if (distill)
            for (size_t k = 0; k < sizeof valued_distill / sizeof *valued_distill; k++)
                known |= !strcmp(a, valued_distill[k]);
        else
            for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
                known |= !strcmp(a, valued[k]);
        if (!known) {
            cli_error(CMD, "unknown option '%s' (see edgellm %s --help)", a, CMD);
            return EXIT_USAGE;
        }
        if (!(v = cli_option_value(CMD, argc, argv, &i)))
            return EXIT_USAGE;
        bool ok = true;
        if (!strcmp(a, "-o"))
            o->out = v;
        else if (!strcmp(a, "--init") || !strcmp(a, "--student"))
            o->init = v;
        else if (!strcmp(a, "--teacher"))
            o->teacher = v;
        else if (!strcmp(a, "--temperature"))
            ok = cli_parse_float(CMD, a, v, 1e-3, 1e3, &o->temperature);
        else if (!strcmp(a, "--alpha"))
            ok = cli_parse_float(CMD, a, v, 0, 1, &o->alpha);
        else if (!strcmp(a, "--top-k"))
            ok = cli_parse_int(CMD, a, v, 1, 1 << 24, &o->top_k);
        else if (!strcmp(a, "--dims"))
            o->dims = v;
        else if (!strcmp(a, "--vocab"))
            o->vocab = v;
        else if (!strcmp(a, "-f"))
            o->corpus = v;
        else if (!strcmp(a, "--resume"))
            o->resume = v;
        else if (!strcmp(a, "--ctx"))
            ok = cli_parse_int(CMD, a, v, 2, 1 << 16, &o->ctx);
        else if (!strcmp(a, "--batch"))
            ok = cli_parse_int(CMD, a, v, 1, 1 << 16, &o->batch);
        else if (!strcmp(a, "--steps"))
            ok = cli_parse_int(CMD, a, v, 1, 1L << 40, &o->steps);
        else if (!strcmp(a, "--epochs"))
            ok = cli_parse_float(CMD, a, v, 1e-6, 1e6, &o->epochs);
        else if (!strcmp(a, "--lr"))
            ok = cli_parse_float(CMD, a, v, 1e-9, 10, &o->lr);
        else if (!strcmp(a, "--seed"))
            ok = cli_parse_int(CMD, a, v, 0, 1L << 62, &o->seed);
        else if (!strcmp(a, "--eval-split"))
            ok = cli_parse_float(CMD, a, v, 0, 0.5, &o->eval_split);
        else if (!strcmp(a, "--checkpoint-every"))
            ok = cli_parse_int(CMD, a, v, 0, 1L << 40, &o->checkpoint_every);
        else if (!strcmp(a, "--stop-at"))
            ok = cli_parse_int(CMD, a, v, 1, 1L << 40, &o->stop_at);
        else if (!strcmp(a, "-t"))
            ok = cli_parse_int(CMD, a, v, 1, ELLM_THREADPOOL_MAX, &o->threads);
        if (!ok)
            return EXIT_USAGE;
    }
    if (!o->out || !o->corpus) {
        cli_error(CMD, "-o OUT.gguf and -f CORPUS.txt are required (see edgellm %s --help)", CMD);
        return EXIT_USAGE;
    }
    if (distill && (!o->teacher || (!o->init && !o->resume))) {
        cli_error(CMD, "--teacher MODEL.gguf and --student MODEL.gguf are required (--teacher "
                       "also with --resume)");
        return EXIT_USAGE;
    }
    if (!o->resume && !o->init == !o->dims) {
        cli_error(CMD, "give exactly one of --init MODEL.gguf and --dims E,L,H,K,F (or --resume)");
        return EXIT_USAGE;
    }
    if (!o->resume && o->dims && !o->vocab) {
        cli_error(CMD, "--dims needs --vocab VOCAB.gguf: the tokenizer of the new model");
        return EXIT_USAGE;
    }
    if (o->steps && o->epochs > 0) {
        cli_error(CMD, "give --steps or --epochs, not both");
        return EXIT_USAGE;
    }
    return 0;
}

/* Whether two tokenizers have the same tokens in the same order. */
static bool same_vocabulary(const edgellm_model *a, const edgellm_model *b)
{
    if (edgellm_n_vocab(a) != edgellm_n_vocab(b))
        return false;
    char pa[512], pb[512];
    for (int32_t t = 0; t < edgellm_n_vocab(a); t++) {
        size_t la = 0, lb = 0;
        if (edgellm_token_to_piece(a, t, pa, sizeof pa, &la) != EDGELLM_OK ||
            edgellm_token_to_piece(b, t, pb, sizeof pb, &lb) != EDGELLM_OK || la != lb ||
            memcmp(pa, pb, la) != 0)
            return false;
    }
    return true;
}

static edgellm_token *tokenize_corpus(const edgellm_model *vocab, const char *path, int32_t *n)
{
    size_t len = 0;
    char *text = cli_read_file(path, &len);
    if (!text) {
        cli_error(CMD, "cannot read the corpus: %s", edgellm_last_error());
        return NULL;
    }
    int32_t cap = (int32_t)(len < 1000000000 ? len + 16 : 1000000000);
    edgellm_token *ids = malloc((size_t)cap * sizeof *ids);
    edgellm_status st = ids ? edgellm_tokenize(vocab, text, len, 0, ids, cap, n)
                            : EDGELLM_ERR_OUT_OF_MEMORY;
    free(text);
    if (st != EDGELLM_OK) {
        cli_error(CMD, "tokenizing %s: %s", path, ids ? edgellm_last_error() : "no memory");
        free(ids);
        return NULL;
    }
    return ids;
}

/* Logits of the teacher for n_seq windows of n_ctx tokens, [n_seq * n_ctx][n_vocab]; with top_k
 * only the k largest of each row are kept, the others set to -INFINITY. */
static int teacher_logits(edgellm_context *ctx, const int32_t *tokens, long n_seq, long n_ctx,
                          int32_t n_vocab, long top_k, float *out, float *scratch)
{
    for (long i = 0; i < n_seq; i++) {
        edgellm_context_truncate(ctx, 0);
        if (edgellm_eval(ctx, tokens + i * n_ctx, (int32_t)n_ctx, 1) != EDGELLM_OK)
            return 1; /* the caller reports edgellm_last_error() with its context */
        for (long t = 0; t < n_ctx; t++) {
            float *row = out + (size_t)(i * n_ctx + t) * (size_t)n_vocab;
            memcpy(row, edgellm_get_logits(ctx, (int32_t)t), (size_t)n_vocab * sizeof *row);
            if (top_k <= 0 || top_k >= n_vocab)
                continue;
            /* the k-th largest value by selection on a copy, then mask what is below it (ties
             * at the threshold are kept) */
            memcpy(scratch, row, (size_t)n_vocab * sizeof *row);
            long lo = 0, hi = n_vocab - 1, k = top_k - 1;
            while (lo < hi) {
                float pivot = scratch[(lo + hi) / 2];
                long a = lo, b = hi;
                while (a <= b) {
                    while (scratch[a] > pivot)
                        a++;
                    while (scratch[b] < pivot)
                        b--;
                    if (a <= b) {
                        float tmp = scratch[a];
                        scratch[a++] = scratch[b];
                        scratch[b--] = tmp;
                    }
                }
                if (k <= b)
                    hi = b;
                else if (k >= a)
                    lo = a;
                else
                    break;
            }
            float threshold = scratch[k];
            for (int32_t v = 0; v < n_vocab; v++)
                if (row[v] < threshold)
                    row[v] = -INFINITY;
        }
    }
    return 0;
}

/* Run state that a checkpoint keeps besides the weights. */
typedef struct run_state {
    train_options o;
    int64_t step; /* steps done */
    uint64_t corpus_tokens;
} run_state;

/* The model as a GGUF: hyper-parameters, the tokenizer keys of vocab_src, F32 weights; with opt,
 * also the run options, the step and the optimizer moments (a checkpoint). */
static edgellm_status write_model(const char *path, const ellm_train_params *p,
                                  const gguf_file *vocab_src, const run_state *rs,
                                  const ellm_adamw *opt, const ellm_train_params *m_view,
                                  const ellm_train_params *v_view)
{
    gguf_writer *w = ellm_gguf_writer_create();
    if (!w)
        return EDGELLM_ERR_OUT_OF_MEMORY;
    const ellm_train_config *c = &p->cfg;
    edgellm_status st = ellm_gguf_writer_set_str(w, "general.architecture", "llama");
    if (!st)
        st = ellm_gguf_writer_set_str(w, "general.name", "edgellm-trained");
    if (!st)
        st = ellm_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)rs->o.ctx);
    if (!st)
        st = ellm_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->n_embd);
    if (!st)
        st = ellm_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layer);
    if (!st)
        st = ellm_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff);
    if (!st)
        st = ellm_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_head);
    if (!st)
        st = ellm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_head_kv);
    if (!st)
        st = ellm_gguf_writer_set_u32(w, "llama.rope.dimension_count",
                                      (uint32_t)(c->n_embd / c->n_head));
    if (!st)
        st = ellm_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_norm_eps);
    if (!st)
        st = ellm_gguf_writer_set_f32(w, "llama.rope.freq_base", c->rope_freq_base);
    for (uint64_t i = 0; !st && i < ellm_gguf_kv_count(vocab_src); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(vocab_src, i);
        if (kv->key.len > 10 && !memcmp(kv->key.data, "tokenizer.", 10)) {
            char *key = ellm_gguf_str_dup(kv->key);
            st = key ? ellm_gguf_writer_set_value(w, key, &kv->value) : EDGELLM_ERR_OUT_OF_MEMORY;
            free(key);
        }
    }
    if (!st && opt) {
        const train_options *o = &rs->o;
        st = ellm_gguf_writer_set_u64(w, "train.step", (uint64_t)rs->step);
        if (!st)
            st = ellm_gguf_writer_set_u64(w, "train.corpus_tokens", rs->corpus_tokens);
        if (!st)
            st = ellm_gguf_writer_set_u64(w, "train.seed", (uint64_t)o->seed);
        if (!st)
            st = ellm_gguf_writer_set_u64(w, "train.steps", (uint64_t)o->steps);
        if (!st)
            st = ellm_gguf_writer_set_u32(w, "train.batch", (uint32_t)o->batch);
        if (!st)
            st = ellm_gguf_writer_set_u64(w, "train.checkpoint_every",
                                          (uint64_t)o->checkpoint_every);
        if (!st)
            st = ellm_gguf_writer_set_f64(w, "train.lr", o->lr);
        if (!st)
            st = ellm_gguf_writer_set_f64(w, "train.eval_split", o->eval_split);
        if (!st && o->distill)
            st = ellm_gguf_writer_set_f64(w, "train.distill_temperature", o->temperature);
        if (!st && o->distill)
            st = ellm_gguf_writer_set_f64(w, "train.distill_alpha", o->alpha);
        if (!st && o->distill)
            st = ellm_gguf_writer_set_u64(w, "train.distill_top_k", (uint64_t)o->top_k);
    }
    ellm_train_tensor t;
    for (size_t i = 0; !st && i < ellm_train_tensor_count(c); i++) {
        ellm_train_tensor_at(p, i, &t);
        uint64_t ne[2] = {(uint64_t)t.ne0, (uint64_t)t.ne1};
        st = ellm_gguf_writer_add_tensor(w, t.name, ELLM_TYPE_F32, t.ne1 > 1 ? 2 : 1, ne, t.data);
        if (!st && opt) {
            char name[80];
            ellm_train_tensor mt;
            ellm_train_tensor_at(m_view, i, &mt);
            snprintf(name, sizeof name, "adam_m.%s", t.name);
            st = ellm_gguf_writer_add_tensor(w, name, ELLM_TYPE_F32, t.ne1 > 1 ? 2 : 1, ne,
                                             mt.data);
            ellm_train_tensor_at(v_view, i, &mt);
            snprintf(name, sizeof name, "adam_v.%s", t.name);
            if (!st)
                st = ellm_gguf_writer_add_tensor(w, name, ELLM_TYPE_F32, t.ne1 > 1 ? 2 : 1, ne,
                                                 mt.data);
        }
    }
    if (!st)
        st = ellm_gguf_writer_write(w, path);
    ellm_gguf_writer_free(w);
    return st;
}

/* Views of the optimizer moments in the parameter layout (data borrowed). */
static ellm_train_params moment_view(const ellm_train_params *p, float *data)
{
    ellm_train_params v = *p;
    v.data = data;
    return v;
}

static bool read_u64(const gguf_file *f, const char *key, uint64_t *out)
{
    return ellm_gguf_get_u64(f, key, out) == EDGELLM_OK;
}

static bool read_f64(const gguf_file *f, const char *key, double *out)
{
    const gguf_kv *kv = ellm_gguf_find_kv(f, key);
    if (!kv || kv->value.type != GGUF_TYPE_FLOAT64)
        return false;
    *out = kv->value.v.f64;
    return true;
}

/* Restores the run options, step and optimizer moments a checkpoint holds. */
static int read_checkpoint(const gguf_file *f, const ellm_train_params *p, run_state *rs,
                           ellm_adamw *opt)
{
    uint64_t step, tokens, seed, steps, batch, every;
    train_options *o = &rs->o;
    if (!read_u64(f, "train.step", &step) || !read_u64(f, "train.corpus_tokens", &tokens) ||
        !read_u64(f, "train.seed", &seed) || !read_u64(f, "train.steps", &steps) ||
        !read_u64(f, "train.batch", &batch) || !read_u64(f, "train.checkpoint_every", &every) ||
        !read_f64(f, "train.lr", &o->lr) || !read_f64(f, "train.eval_split", &o->eval_split)) {
        cli_error(CMD,
                  "%s is a model but not a training checkpoint (no train.* state); use it "
                  "with --init to fine-tune it",
                  o->resume);
        return 1;
    }
    uint64_t top_k = 0;
    bool distilled = read_f64(f, "train.distill_temperature", &o->temperature) &&
                     read_f64(f, "train.distill_alpha", &o->alpha) &&
                     read_u64(f, "train.distill_top_k", &top_k);
    if (distilled != o->distill) {
        cli_error(CMD, "%s is a checkpoint of edgellm %s: resume it with that command", o->resume,
                  distilled ? "distill (give --teacher again)" : "train");
        return 1;
    }
    o->top_k = (long)top_k;
    rs->step = (int64_t)step;
    rs->corpus_tokens = tokens;
    o->seed = (long)seed;
    o->steps = (long)steps;
    o->batch = (long)batch;
    o->checkpoint_every = (long)every;
    opt->t = (int64_t)step;
    for (size_t i = 0; i < ellm_train_tensor_count(&p->cfg); i++) {
        ellm_train_tensor t;
        ellm_train_tensor_at(p, i, &t);
        size_t off = (size_t)(t.data - p->data), n = (size_t)(t.ne0 * t.ne1);
        for (int k = 0; k < 2; k++) {
            char name[80];
            snprintf(name, sizeof name, "adam_%c.%s", k ? 'v' : 'm', t.name);
            const gguf_tensor_info *ti = ellm_gguf_find_tensor(f, name);
            if (!ti || ti->type != ELLM_TYPE_F32 || ti->n_elements != n) {
                cli_error(CMD,
                          "checkpoint %s lacks the optimizer tensor %s (or it has the wrong "
                          "shape); it cannot be resumed",
                          o->resume, name);
                return 1;
            }
            memcpy((k ? opt->v : opt->m) + off, ti->data, n * sizeof(float));
        }
    }
    return 0;
}

/* Deterministic start of sequence i of step s: resuming needs no data-loader state. */
static uint64_t window_start(uint64_t seed, int64_t step, long i, uint64_t range)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + (uint64_t)step * 0xbf58476d1ce4e5b9ull +
                 (uint64_t)i * 0x94d049bb133111ebull + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z % range;
}

static void format_eta(char *buf, size_t cap, double seconds)
{
    long s = seconds > 0 && seconds < 1e9 ? (long)seconds : 0;
    snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

/* Student and teacher on the same windows: the student's perplexity, the teacher's and the
 * student's mean KL to it (temperature 1, the whole distributions). */
typedef struct teacher_report {
    double student_ppl, teacher_ppl, kl;
} teacher_report;

static int compare_to_teacher(const ellm_train_params *p, ellm_train_work *w, ellm_threadpool *pool,
                              const int32_t *tok, const int32_t *tgt, const float *teacher,
                              long n_seq, long n_ctx, teacher_report *out)
{
    int64_t rows = (int64_t)n_seq * n_ctx;
    double ce = 0, kl = 0;
    if (ellm_train_forward_backward(p, NULL, w, pool, tok, tgt, 1.0f, &ce) != EDGELLM_OK) {
        cli_error(CMD, "%s", edgellm_last_error());
        return 1;
    }
    double teacher_ce = ellm_train_cross_entropy(pool, NULL, teacher, tgt, rows, p->cfg.n_vocab,
                                                 1.0f);
    ellm_train_distill_loss(pool, NULL, ellm_train_logits(w), teacher, tgt, rows, p->cfg.n_vocab,
                            1.0f, 1.0f, 1.0f, &kl);
    out->student_ppl = exp(ce);
    out->teacher_ppl = exp(teacher_ce);
    out->kl = kl;
    return 0;
}

/* The CSV log of a run. A full disk must not go unnoticed, nor cost the training: the first
 * failed write is reported and the run goes on (the model and checkpoints are what matter), and
 * the run's exit status says the log is incomplete. */
typedef struct train_log {
    FILE *f;
    const char *path;
    long long failed_at; /* the step at whose flush writing first failed; 0: never */
    int error;
} train_log;

static void flush_log(train_log *log, long long step)
{
    if (log->failed_at || (fflush(log->f) == 0 && !ferror(log->f)))
        return;
    log->error = errno;
    log->failed_at = step;
    fprintf(stderr,
            "edgellm %s: writing the log %s failed at step %lld: %s; training goes on without "
            "it (checkpoints and the model are still written)\n",
            CMD, log->path, step, strerror(log->error));
}

static int run(train_options o)
{
    int rc;
    const char *weights_path = o.resume ? o.resume : o.init;
    const char *vocab_path = o.resume ? o.resume : (o.vocab ? o.vocab : o.init);

    edgellm_model_params mp = edgellm_model_default_params();
    mp.vocab_only = 1;
    edgellm_model *vocab = NULL, *init_vocab = NULL;
    gguf_file *vocab_file = NULL, *weights_file = NULL;
    ellm_model *model = NULL;
    ellm_train_params *p = NULL, *g = NULL;
    ellm_train_work *work = NULL, *eval_work = NULL;
    ellm_threadpool *pool = NULL;
    ellm_adamw opt = {0.9f, 0.95f, 1e-8f, 0.1f, NULL, NULL, 0};
    edgellm_token *ids = NULL;
    int32_t *batch_tok = NULL, *batch_tgt = NULL;
    train_log log = {0};
    edgellm_model *teacher = NULL;
    edgellm_context *teacher_ctx = NULL;
    float *teacher_rows = NULL, *teacher_scratch = NULL, *report_teacher = NULL;
    int32_t *report_tok = NULL, *report_tgt = NULL;
    ellm_train_work *report_work = NULL;
    char ckpt_path[4096], csv_path[4096];
    rc = 1;
    if (snprintf(ckpt_path, sizeof ckpt_path, "%s.ckpt", o.out) >= (int)sizeof ckpt_path ||
        snprintf(csv_path, sizeof csv_path, "%s.csv", o.out) >= (int)sizeof csv_path) {
        cli_error(CMD, "the output path is too long");
        return EXIT_USAGE;
    }
    /* The checkpoint is the output's own: resuming from OUT.ckpt and writing it again is how a
     * run continues. Every other input is destroyed by an output written over it. */
    const cli_input inputs[] = {{o.distill ? "--student" : "--init", o.init},
                                {"--vocab", o.vocab},
                                {"-f", o.corpus},
                                {"--teacher", o.teacher},
                                {"--resume", o.resume}};
    const size_t n_inputs = sizeof inputs / sizeof *inputs;
    if (cli_output_refused(CMD, o.out, inputs, n_inputs) ||
        cli_output_refused(CMD, ckpt_path, inputs, n_inputs - 1) ||
        cli_output_overwrites_input(CMD, csv_path, inputs, n_inputs))
        return EXIT_USAGE;
    if (edgellm_model_load(vocab_path, &mp, &vocab) != EDGELLM_OK ||
        ellm_gguf_open(vocab_path, &vocab_file) != EDGELLM_OK) {
        cli_error(CMD, "%s %s: %s", o.resume ? "cannot resume from" : "loading the vocabulary of",
                  vocab_path, edgellm_last_error());
        goto done;
    }
    if (o.init && o.vocab && !o.resume) {
        if (edgellm_model_load(o.init, &mp, &init_vocab) != EDGELLM_OK) {
            cli_error(CMD, "loading %s: %s", o.init, edgellm_last_error());
            goto done;
        }
        if (!same_vocabulary(vocab, init_vocab)) {
            cli_error(CMD,
                      "the vocabulary of %s (%d tokens) differs from that of --init %s (%d "
                      "tokens); fine-tune with the model's own vocabulary (drop --vocab)",
                      o.vocab, (int)edgellm_n_vocab(vocab), o.init,
                      (int)edgellm_n_vocab(init_vocab));
            goto done;
        }
    }
    if (o.distill) {
        edgellm_model_params tp = edgellm_model_default_params();
        if (edgellm_model_load(o.teacher, &tp, &teacher) != EDGELLM_OK) {
            cli_error(CMD, "loading the teacher %s: %s", o.teacher, edgellm_last_error());
            goto done;
        }
        if (!same_vocabulary(vocab, teacher)) {
            cli_error(CMD,
                      "the teacher %s has another vocabulary (%d tokens) than the student %s "
                      "(%d tokens): distillation compares their distributions token by "
                      "token, so give a student with the teacher's vocabulary",
                      o.teacher, (int)edgellm_n_vocab(teacher), vocab_path,
                      (int)edgellm_n_vocab(vocab));
            goto done;
        }
    }
    if (weights_path) {
        edgellm_status st = ellm_gguf_open(weights_path, &weights_file);
        if (!st)
            st = ellm_model_create(weights_file, &model);
        if (!st)
            st = ellm_train_params_from_model(model, &p);
        if (st) {
            cli_error(CMD, "loading %s: %s", weights_path, edgellm_last_error());
            goto done;
        }
    } else {
        ellm_train_config cfg = {.n_vocab = edgellm_n_vocab(vocab),
                                 .rms_norm_eps = 1e-5f,
                                 .rope_freq_base = 10000.0f,
                                 .tied_embeddings = true};
        if ((rc = parse_dims(o.dims, &cfg)) != 0)
            goto done;
        rc = 1;
        if (ellm_train_params_create(&cfg, &p) != EDGELLM_OK) {
            cli_error(CMD, "--dims %s: %s", o.dims, edgellm_last_error());
            rc = EXIT_USAGE;
            goto done;
        }
        ellm_train_params_init_random(p, (uint64_t)o.seed);
    }
    if (edgellm_n_vocab(vocab) != p->cfg.n_vocab) {
        cli_error(CMD, "the tokenizer has %d tokens but the model %d", (int)edgellm_n_vocab(vocab),
                  (int)p->cfg.n_vocab);
        goto done;
    }
    if (ellm_adamw_init(&opt, p->n) != EDGELLM_OK) {
        cli_error(CMD, "%s", edgellm_last_error());
        goto done;
    }
    run_state rs = {o, 0, 0};
    if (o.resume) {
        if (read_checkpoint(weights_file, p, &rs, &opt))
            goto done;
        o.seed = rs.o.seed;
        o.steps = rs.o.steps;
        o.batch = rs.o.batch;
        o.lr = rs.o.lr;
        o.eval_split = rs.o.eval_split;
        o.checkpoint_every = rs.o.checkpoint_every;
        o.temperature = rs.o.temperature;
        o.alpha = rs.o.alpha;
        o.top_k = rs.o.top_k;
        o.ctx = 0;
        uint32_t ctx = 0;
        ellm_gguf_get_u32(weights_file, "llama.context_length", &ctx);
        o.ctx = ctx;
        rs.o = o;
    }

    int32_t n_tokens = 0;
    if (!(ids = tokenize_corpus(vocab, o.corpus, &n_tokens)))
        goto done;
    if (o.resume && rs.corpus_tokens != (uint64_t)n_tokens) {
        cli_error(CMD,
                  "the corpus has %d tokens but the checkpoint was trained on %llu: resume "
                  "with the same corpus",
                  (int)n_tokens, (unsigned long long)rs.corpus_tokens);
        goto done;
    }
    rs.corpus_tokens = (uint64_t)n_tokens;
    int64_t n_eval = (int64_t)(o.eval_split * n_tokens);
    if (n_eval > 0 && n_eval < o.ctx + 1)
        n_eval = 0; /* too little to hold one window */
    int64_t n_train = n_tokens - n_eval;
    int64_t need = (int64_t)o.batch * o.ctx + 1;
    if (n_train < need) {
        cli_error(CMD,
                  "the corpus has %lld training tokens, fewer than one batch (%ld x %ld + 1 "
                  "= %lld); use a larger corpus or a smaller --batch or --ctx",
                  (long long)n_train, o.batch, o.ctx, (long long)need);
        rc = EXIT_USAGE;
        goto done;
    }
    if (!o.steps) {
        double epochs = o.epochs > 0 ? o.epochs : 1.0;
        o.steps = (long)ceil(epochs * (double)n_train / (double)(o.batch * o.ctx));
        rs.o.steps = o.steps;
    }
    if (ellm_train_params_create(&p->cfg, &g) != EDGELLM_OK ||
        ellm_train_work_create(&p->cfg, (int32_t)o.batch, (int32_t)o.ctx, &work) != EDGELLM_OK ||
        ellm_threadpool_create((int)o.threads, &pool) != EDGELLM_OK) {
        cli_error(CMD, "%s", edgellm_last_error());
        goto done;
    }
    long n_eval_seq = n_eval > 0 ? (long)((n_eval - 1) / o.ctx) : 0;
    if (n_eval_seq > 8)
        n_eval_seq = 8;
    if (n_eval_seq > 0 &&
        ellm_train_work_create(&p->cfg, (int32_t)n_eval_seq, (int32_t)o.ctx, &eval_work)) {
        cli_error(CMD, "%s", edgellm_last_error());
        goto done;
    }
    size_t rows = (size_t)o.batch * (size_t)o.ctx;
    batch_tok = malloc(rows * sizeof *batch_tok);
    batch_tgt = malloc(rows * sizeof *batch_tgt);
    log.path = csv_path;
    log.f = fopen(csv_path, o.resume ? "a" : "w");
    FILE *csv = log.f;
    if (!batch_tok || !batch_tgt || !csv) {
        cli_error(CMD, batch_tok && batch_tgt ? "cannot write the log %s" : "no memory%s",
                  batch_tok && batch_tgt ? csv_path : "");
        goto done;
    }
    if (!o.resume)
        fprintf(csv, "step,loss,eval_loss,lr,grad_norm,tokens_per_s%s\n",
                o.distill ? ",kl_to_teacher" : "");
    /* The teacher sees the windows the student trains on; the before/after comparison uses
     * the held-out windows, or the corpus's first ones when nothing is held out. */
    long n_report_seq = n_eval_seq;
    int64_t report_from = n_train;
    if (o.distill && !n_report_seq) {
        n_report_seq = (long)((n_train - 1) / o.ctx) < 8 ? (long)((n_train - 1) / o.ctx) : 8;
        report_from = 0;
    }
    if (o.distill) {
        edgellm_context_params cp = edgellm_context_default_params();
        cp.n_ctx = (int32_t)o.ctx;
        cp.n_batch = (int32_t)o.ctx;
        cp.n_threads = (int32_t)o.threads;
        size_t V = (size_t)p->cfg.n_vocab, report_rows = (size_t)n_report_seq * (size_t)o.ctx;
        teacher_rows = malloc(rows * V * sizeof *teacher_rows);
        teacher_scratch = malloc(V * sizeof *teacher_scratch);
        report_teacher = malloc(report_rows * V * sizeof *report_teacher);
        report_tok = malloc(report_rows * sizeof *report_tok);
        report_tgt = malloc(report_rows * sizeof *report_tgt);
        if (!teacher_rows || !teacher_scratch || !report_teacher || !report_tok || !report_tgt) {
            cli_error(CMD,
                      "no memory for the teacher's logits (%ld x %ld x %zu floats); use a "
                      "smaller --batch or --ctx",
                      o.batch, o.ctx, V);
            goto done;
        }
        if (edgellm_context_create(teacher, &cp, &teacher_ctx) != EDGELLM_OK) {
            cli_error(CMD, "the teacher %s: %s", o.teacher, edgellm_last_error());
            goto done;
        }
        for (size_t i = 0; i < report_rows; i++) {
            report_tok[i] = ids[report_from + (int64_t)(i / (size_t)o.ctx) * o.ctx +
                                (int64_t)(i % (size_t)o.ctx)];
            report_tgt[i] = ids[report_from + (int64_t)(i / (size_t)o.ctx) * o.ctx +
                                (int64_t)(i % (size_t)o.ctx) + 1];
        }
        if (ellm_train_work_create(&p->cfg, (int32_t)n_report_seq, (int32_t)o.ctx, &report_work) !=
            EDGELLM_OK) {
            cli_error(CMD, "%s", edgellm_last_error());
            goto done;
        }
        if (teacher_logits(teacher_ctx, report_tok, n_report_seq, o.ctx, p->cfg.n_vocab, 0,
                           report_teacher, teacher_scratch)) {
            cli_error(CMD, "the teacher: %s", edgellm_last_error());
            goto done;
        }
        teacher_report before;
        if (compare_to_teacher(p, report_work, pool, report_tok, report_tgt, report_teacher,
                               n_report_seq, o.ctx, &before))
            goto done;
        fprintf(stderr,
                "edgellm distill: before: KL to the teacher %.4f, perplexity %.3f (teacher "
                "%.3f) on %ld %s windows\n",
                before.kl, before.student_ppl, before.teacher_ppl, n_report_seq,
                n_eval_seq ? "held-out" : "training");
    }
    char mem[32];
    fprintf(stderr,
            "edgellm %s: %zu parameters, %lld training and %lld eval tokens, %ld steps of "
            "%ld x %ld tokens, %s of activations\n",
            CMD, p->n, (long long)n_train, (long long)n_eval, o.steps, o.batch, o.ctx,
            cli_format_bytes(ellm_train_work_bytes(work), mem, sizeof mem));

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);

    ellm_train_params mv = moment_view(p, opt.m), vv = moment_view(p, opt.v);
    int64_t warmup = o.steps / 10 < 100 ? o.steps / 10 : 100;
    double t_start = cli_now_seconds();
    int64_t first_step = rs.step;
    const char *last_good = o.resume; /* the newest checkpoint on disk */
    long report_every = o.steps / 50 > 1 ? o.steps / 50 : 1;
    for (int64_t step = rs.step; step < o.steps; step++) {
        for (long i = 0; i < o.batch; i++) {
            uint64_t start = window_start((uint64_t)o.seed, step, i, (uint64_t)(n_train - o.ctx));
            memcpy(batch_tok + i * o.ctx, ids + start, (size_t)o.ctx * sizeof *ids);
            memcpy(batch_tgt + i * o.ctx, ids + start + 1, (size_t)o.ctx * sizeof *ids);
        }
        memset(g->data, 0, g->n * sizeof *g->data);
        double loss = 0, kl = NAN;
        ellm_train_distill kd = {teacher_rows, (float)o.temperature, (float)o.alpha, &kl};
        if (o.distill && teacher_logits(teacher_ctx, batch_tok, o.batch, o.ctx, p->cfg.n_vocab,
                                        o.top_k, teacher_rows, teacher_scratch)) {
            /* a teacher that breaks on some window (NaN weights reached only by rare tokens)
             * stops the run mid-way: say which checkpoint still holds the last good student */
            if (last_good)
                cli_error(CMD,
                          "step %lld: the teacher: %s; stopped without updating. The last "
                          "good checkpoint is %s (continue with --resume %s and a working "
                          "teacher)",
                          (long long)step + 1, edgellm_last_error(), last_good, last_good);
            else
                cli_error(CMD, "step %lld: the teacher: %s; stopped, no checkpoint written",
                          (long long)step + 1, edgellm_last_error());
            goto done;
        }
        if (o.distill ? ellm_train_forward_backward_distill(p, g, work, pool, batch_tok, batch_tgt,
                                                            &kd, 1.0f, &loss)
                      : ellm_train_forward_backward(p, g, work, pool, batch_tok, batch_tgt, 1.0f,
                                                    &loss)) {
            cli_error(CMD, "step %lld: %s", (long long)step + 1, edgellm_last_error());
            goto done;
        }
        double norm = ellm_train_clip_grad_norm(g, 1.0);
        if (!isfinite(loss) || !isfinite(norm)) {
            if (last_good)
                cli_error(CMD,
                          "step %lld: the loss became %g (gradient norm %g); stopped without "
                          "updating. The last good checkpoint is %s: retry from the one "
                          "before the divergence with a lower --lr",
                          (long long)step + 1, loss, norm, last_good);
            else
                cli_error(CMD,
                          "step %lld: the loss became %g (gradient norm %g); stopped, no "
                          "checkpoint written. Check the weights, or lower --lr",
                          (long long)step + 1, loss, norm);
            goto done;
        }
        float lr = ellm_train_lr((float)o.lr, (float)o.lr / 10, warmup, o.steps, step);
        ellm_adamw_update(&opt, p, g, lr);
        rs.step = step + 1;

        double eval_loss = NAN;
        bool last = rs.step == o.steps;
        bool report = rs.step % report_every == 0 || last || rs.step == first_step + 1;
        if (eval_work && report) {
            int32_t *et = malloc((size_t)n_eval_seq * o.ctx * 2 * sizeof *et);
            if (et) {
                for (long i = 0; i < n_eval_seq; i++)
                    for (long t = 0; t < o.ctx; t++) {
                        et[i * o.ctx + t] = ids[n_train + i * o.ctx + t];
                        et[(n_eval_seq + i) * o.ctx + t] = ids[n_train + i * o.ctx + t + 1];
                    }
                ellm_train_forward_backward(p, NULL, eval_work, pool, et, et + n_eval_seq * o.ctx,
                                            1.0f, &eval_loss);
                free(et);
            }
        }
        double elapsed = cli_now_seconds() - t_start;
        double tps = (double)(rs.step - first_step) * (double)rows / (elapsed > 0 ? elapsed : 1);
        fprintf(csv, "%lld,%.6f,%.6f,%.6g,%.6g,%.1f", (long long)rs.step, loss, eval_loss, lr, norm,
                tps);
        if (o.distill)
            fprintf(csv, ",%.6f", kl);
        fputc('\n', csv);
        if (report) {
            char eta[32];
            format_eta(eta, sizeof eta,
                       (double)(o.steps - rs.step) * (double)rows / (tps > 0 ? tps : 1));
            char eval_text[32] = "-";
            if (!isnan(eval_loss))
                snprintf(eval_text, sizeof eval_text, "%.4f", eval_loss);
            char kl_text[32] = "";
            if (o.distill)
                snprintf(kl_text, sizeof kl_text, "  kl %.4f", kl);
            fprintf(stderr, "step %lld/%ld  loss %.4f  eval %s%s  lr %.3g  %.0f tok/s  ETA %s\n",
                    (long long)rs.step, o.steps, loss, eval_text, kl_text, lr, tps, eta);
            flush_log(&log, (long long)rs.step);
        }
        bool stop = interrupted || (o.stop_at && rs.step >= o.stop_at && !last);
        if ((o.checkpoint_every && rs.step % o.checkpoint_every == 0) || stop) {
            if (write_model(ckpt_path, p, vocab_file, &rs, &opt, &mv, &vv) != EDGELLM_OK) {
                cli_error(CMD,
                          "writing the checkpoint %s: %s (the previous checkpoint is "
                          "kept)",
                          ckpt_path, edgellm_last_error());
                goto done;
            }
            last_good = ckpt_path;
        }
        if (stop) {
            fprintf(stderr,
                    "edgellm train: stopped after step %lld; checkpoint %s (continue "
                    "with --resume %s)\n",
                    (long long)rs.step, ckpt_path, ckpt_path);
            rc = interrupted ? 130 : 0;
            goto done;
        }
    }
    if (write_model(o.out, p, vocab_file, &rs, NULL, NULL, NULL) != EDGELLM_OK) {
        cli_error(CMD, "writing %s: %s", o.out, edgellm_last_error());
        goto done;
    }
    if (o.distill) {
        teacher_report after;
        if (compare_to_teacher(p, report_work, pool, report_tok, report_tgt, report_teacher,
                               n_report_seq, o.ctx, &after))
            goto done;
        fprintf(stderr,
                "edgellm distill: after: KL to the teacher %.4f, perplexity %.3f (teacher %.3f)\n",
                after.kl, after.student_ppl, after.teacher_ppl);
    }
    fprintf(stderr, "edgellm %s: wrote %s; peak memory %s\n", CMD, o.out,
            cli_format_bytes(cli_peak_rss_bytes(), mem, sizeof mem));
    rc = 0;
done:
    /* Also after --stop-at or Ctrl-C, whose checkpoint a resumed run appends to this log. */
    if (rc != 1 && log.f) {
        flush_log(&log, (long long)rs.step);
        if (log.failed_at) {
            cli_error(CMD, "the log %s is incomplete: writing it failed at step %lld: %s", log.path,
                      log.failed_at, strerror(log.error));
            rc = 1;
        }
    }
    free(teacher_rows);
    free(teacher_scratch);
    free(report_teacher);
    free(report_tok);
    free(report_tgt);
    ellm_train_work_free(report_work);
    edgellm_context_free(teacher_ctx);
    edgellm_model_free(teacher);
    if (log.f)
        fclose(log.f);
    free(batch_tok);
    free(batch_tgt);
    free(ids);
    ellm_adamw_free(&opt);
    ellm_threadpool_free(pool);
    ellm_train_work_free(work);
    ellm_train_work_free(eval_work);
    ellm_train_params_free(g);
    ellm_train_params_free(p);
    ellm_model_free(model);
    ellm_gguf_close(weights_file);
    ellm_gguf_close(vocab_file);
    edgellm_model_free(vocab);
    edgellm_model_free(init_vocab);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    train_options o;
    cmd_name = "train";
    int rc = parse_args(argc, argv, false, &o);
    return rc ? (rc < 0 ? 0 : rc) : run(o);
}

int cmd_distill(int argc, char **argv)
{
    train_options o;
    cmd_name = "distill";
    int rc = parse_args(argc, argv, true, &o);
    return rc ? (rc < 0 ? 0 : rc) : run(o);
}
