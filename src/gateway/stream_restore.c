/* Streamed restoration: a table of the stream's texts sorted by (choice, kind, call), each with
 * its streaming restorer; a chunk's fragments are taken out, the rest of each choice is restored
 * whole, then each fragment goes through its restorer. */
#include <stdlib.h>
#include <string.h>

#include "gateway/pii_json.h"
#include "gateway/stream_restore.h"

typedef struct streamed_member {
    const char *holder; /* the delta's object holding the text; NULL: the delta itself */
    const char *key;
} streamed_member;

static const streamed_member streamed_members[] = {
    {NULL, "content"}, /* first: a completion's `text` takes its place */
    {NULL, "refusal"},
    {NULL, "reasoning_content"},    /* DeepSeek; vLLM before 0.11 */
    {NULL, "reasoning"},            /* vLLM since 0.11, OpenRouter */
    {"function_call", "arguments"}, /* the deprecated single function call */
    {"audio", "transcript"},        /* with audio output: the words of the audio's chunks */
};
#define N_STREAMED_MEMBERS ((int)(sizeof streamed_members / sizeof streamed_members[0]))
/* The kind of a tool call's arguments, after the members': a choice's tool calls sort together. */
#define TOOL_CALL_TEXT N_STREAMED_MEMBERS

typedef struct streamed_text {
    /* The sort key: call is the tool call's index for TOOL_CALL_TEXT, else 0. */
    json_int_t choice;
    int kind; /* an index into streamed_members, or TOOL_CALL_TEXT */
    json_int_t call;
    pii_restorer *restorer;
    /* The serial of the chunk that last fed it (0: none yet); while that is the chunk being
     * restored, a tail held back when the text ends is appended to its fragment there. */
    unsigned long fed_in;
    json_t *parent;
    const char *key;
} streamed_text;

/* A fragment taken out of the chunk while the rest of its choice is restored whole. */
typedef struct fragment {
    json_t *parent;
    const char *key;
    int kind;
    json_int_t call;
    json_t *text;
} fragment;

struct gw_stream_restore {
    pii_session *session;
    bool chat;
    streamed_text *texts; /* sorted by (choice, kind, call) */
    size_t n_texts, texts_cap;
    fragment *fragments; /* the choice being restored; reused */
    size_t fragments_cap;
    unsigned long serial; /* chunks restored, [DONE] included */
    json_t *head;         /* the last chunk but its choices: the frame of a held-back tail */
    json_t *before;       /* where the chunk being restored puts tails of their own */
};

gw_stream_restore *ellm_gw_stream_restore_create(pii_session *session, bool chat)
{
    gw_stream_restore *s = calloc(1, sizeof *s);
    if (s) {
        s->session = session;
        s->chat = chat;
    }
    return s;
}

void ellm_gw_stream_restore_free(gw_stream_restore *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_texts; i++)
        ellm_pii_restorer_free(s->texts[i].restorer);
    free(s->texts);
    free(s->fragments);
    json_decref(s->head);
    free(s);
}

/* The object of a chunk's choice holding its text of kind (one of streamed_members), with the
 * text's key; NULL when the choice has no such object. */
static json_t *member_parent(const gw_stream_restore *s, json_t *choice, int kind, const char **key)
{
    if (!s->chat) {
        *key = "text";
        return kind == 0 ? choice : NULL;
    }
    const streamed_member *m = &streamed_members[kind];
    json_t *delta = json_object_get(choice, "delta");
    *key = m->key;
    return m->holder ? json_object_get(delta, m->holder) : delta;
}

/* items (n of them, room for *cap) with room for one more: reallocated, doubling, when full;
 * NULL (items unchanged) when out of memory. */
static void *room_for_one(void *items, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return items;
    size_t more = *cap ? *cap * 2 : 8;
    void *grown = realloc(items, more * size);
    if (grown)
        *cap = more;
    return grown;
}

static bool streamed_text_before(const streamed_text *t, json_int_t choice, int kind,
                                 json_int_t call)
{
    if (t->choice != choice)
        return t->choice < choice;
    return t->kind != kind ? t->kind < kind : t->call < call;
}

/* Where (choice, kind, call) is, or would go, in the sorted texts. */
static size_t streamed_text_at(const gw_stream_restore *s, json_int_t choice, int kind,
                               json_int_t call)
{
    size_t lo = 0, hi = s->n_texts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (streamed_text_before(&s->texts[mid], choice, kind, call))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The streamed text (choice, kind, call), created when first seen; NULL past the bound or out of
 * memory. A pointer into the table lasts until the next text is created. */
static streamed_text *streamed_text_get(gw_stream_restore *s, json_int_t choice, int kind,
                                        json_int_t call)
{
    size_t at = streamed_text_at(s, choice, kind, call);
    if (at < s->n_texts && s->texts[at].choice == choice && s->texts[at].kind == kind &&
        s->texts[at].call == call)
        return &s->texts[at];
    if (s->n_texts == GW_MAX_STREAMED_TEXTS)
        return NULL;
    streamed_text *texts = room_for_one(s->texts, s->n_texts, &s->texts_cap, sizeof *texts);
    if (!texts)
        return NULL;
    s->texts = texts;
    pii_restorer *restorer;
    if (ellm_pii_restorer_create(s->session, &restorer) != EDGELLM_OK)
        return NULL;
    memmove(s->texts + at + 1, s->texts + at, (s->n_texts - at) * sizeof *s->texts);
    s->n_texts++;
    s->texts[at] = (streamed_text){
        .choice = choice, .kind = kind, .call = call, .restorer = restorer};
    return &s->texts[at];
}

/* A chunk of its own for a text's held-back tail, in the frame of the stream's chunks. */
static void put_tail_chunk(gw_stream_restore *s, const streamed_text *t, const char *tail, size_t n)
{
    json_t *text = json_stringn(tail, n), *choice;
    const streamed_member *m = t->kind < TOOL_CALL_TEXT ? &streamed_members[t->kind] : NULL;
    if (!s->chat)
        choice = json_pack("{s:I,s:o,s:n}", "index", t->choice, "text", text, "finish_reason");
    else if (!m)
        choice = json_pack("{s:I,s:{s:[{s:I,s:{s:o}}]},s:n}", "index", t->choice, "delta",
                           "tool_calls", "index", t->call, "function", "arguments", text,
                           "finish_reason");
    else if (m->holder)
        choice = json_pack("{s:I,s:{s:{s:o}},s:n}", "index", t->choice, "delta", m->holder, m->key,
                           text, "finish_reason");
    else
        choice = json_pack("{s:I,s:{s:o},s:n}", "index", t->choice, "delta", m->key, text,
                           "finish_reason");
    json_t *chunk = json_is_object(s->head) ? json_copy(s->head) : json_object();
    if (choice && chunk && json_object_set_new(chunk, "choices", json_pack("[o]", choice)) == 0)
        json_array_append(s->before, chunk);
    json_decref(chunk);
}

/* The end of a streamed text: its held-back tail (text that did not become a placeholder) goes
 * out, appended to the text's fragment when that is in the chunk being restored, else in a
 * chunk of its own, which precedes that chunk. */
static void streamed_text_end(gw_stream_restore *s, streamed_text *t)
{
    pii_buffer tail = {0};
    ellm_pii_restorer_finish(t->restorer, &tail);
    if (tail.len && t->fed_in == s->serial) {
        json_t *now = json_object_get(t->parent, t->key);
        size_t have = json_string_length(now);
        char *joined = malloc(have + tail.len);
        if (joined) {
            memcpy(joined, json_string_value(now), have);
            memcpy(joined + have, tail.data, tail.len);
            json_object_set_new(t->parent, t->key, json_stringn(joined, have + tail.len));
            free(joined);
        }
    } else if (tail.len) {
        put_tail_chunk(s, t, tail.data, tail.len);
    }
    ellm_pii_buffer_free(&tail);
}

/* Every choice is over (the usage chunk, or [DONE]): every held-back tail goes out. */
static void streamed_texts_end(gw_stream_restore *s)
{
    for (size_t i = 0; i < s->n_texts; i++)
        streamed_text_end(s, &s->texts[i]);
}

static bool add_fragment(gw_stream_restore *s, size_t *n, json_t *parent, const char *key, int kind,
                         json_int_t call)
{
    fragment *fragments = room_for_one(s->fragments, *n, &s->fragments_cap, sizeof *fragments);
    if (!fragments)
        return false;
    s->fragments = fragments;
    s->fragments[(*n)++] = (fragment){parent, key, kind, call,
                                      json_incref(json_object_get(parent, key))};
    return true;
}

/* Collects a choice's fragments (its streamed members, each tool call's arguments) into
 * s->fragments, creating their streamed texts. */
static gw_stream_status gather_fragments(gw_stream_restore *s, json_t *choice, json_int_t c,
                                         size_t *n)
{
    bool ok = true;
    *n = 0;
    for (int kind = 0; kind < N_STREAMED_MEMBERS && ok; kind++) {
        const char *key;
        json_t *parent = member_parent(s, choice, kind, &key);
        if (json_is_string(json_object_get(parent, key)))
            ok = streamed_text_get(s, c, kind, 0) && add_fragment(s, n, parent, key, kind, 0);
    }
    json_t *calls = s->chat ? json_object_get(json_object_get(choice, "delta"), "tool_calls")
                            : NULL;
    size_t k;
    json_t *call;
    json_array_foreach(calls, k, call)
    {
        json_t *function = json_object_get(call, "function");
        json_t *index = json_object_get(call, "index");
        json_int_t at = json_is_integer(index) ? json_integer_value(index) : (json_int_t)k;
        if (!ok || !json_is_string(json_object_get(function, "arguments")))
            continue;
        ok = streamed_text_get(s, c, TOOL_CALL_TEXT, at) &&
             add_fragment(s, n, function, "arguments", TOOL_CALL_TEXT, at);
    }
    if (ok)
        return GW_STREAM_OK;
    for (size_t f = 0; f < *n; f++)
        json_decref(s->fragments[f].text);
    return s->n_texts == GW_MAX_STREAMED_TEXTS ? GW_STREAM_TOO_MANY_TEXTS : GW_STREAM_OUT_OF_MEMORY;
}

/* Restores one choice of a chunk: its fragments through their streaming restorers, every other
 * string whole. A text ends with its choice (finish_reason), not when another text of the
 * choice begins: a cloud may switch back to a tool call (or to its reasoning) after another
 * began, and a placeholder split at the switch is then restored. The price: a tool call whose
 * arguments end in what could begin a placeholder (a whole JSON object never does) gets that
 * tail at its choice's end, in a chunk naming its index, after the later calls' fragments. */
static gw_stream_status restore_choice(gw_stream_restore *s, json_t *choices, size_t i)
{
    json_t *choice = json_array_get(choices, i);
    json_t *index = json_object_get(choice, "index");
    json_int_t c = json_is_integer(index) ? json_integer_value(index) : (json_int_t)i;
    size_t n;
    gw_stream_status st = gather_fragments(s, choice, c, &n);
    if (st != GW_STREAM_OK)
        return st;
    for (size_t f = 0; f < n; f++)
        json_object_set_new(s->fragments[f].parent, s->fragments[f].key, json_null());
    gw_walk w = {.mode = GW_WALK_RESTORE, .session = s->session};
    ellm_gw_walk_strings(choices, NULL, i, choice, &w);
    for (size_t f = 0; f < n; f++) {
        fragment *fr = &s->fragments[f];
        streamed_text *t = streamed_text_get(s, c, fr->kind, fr->call);
        pii_buffer got = {0};
        ellm_pii_restorer_feed(t->restorer, json_string_value(fr->text),
                               json_string_length(fr->text), &got);
        json_object_set_new(fr->parent, fr->key, json_stringn(got.data ? got.data : "", got.len));
        ellm_pii_buffer_free(&got);
        json_decref(fr->text);
        t->fed_in = s->serial;
        t->parent = fr->parent;
        t->key = fr->key;
    }
    if (json_is_string(json_object_get(choice, "finish_reason")))
        for (size_t at = streamed_text_at(s, c, 0, 0); at < s->n_texts && s->texts[at].choice == c;
             at++)
            streamed_text_end(s, &s->texts[at]);
    return GW_STREAM_OK;
}

gw_stream_status ellm_gw_stream_restore_chunk(gw_stream_restore *s, json_t *chunk, json_t *before)
{
    s->serial++;
    s->before = before;
    json_t *choices = json_object_get(chunk, "choices");
    if (json_array_size(choices)) {
        json_decref(s->head);
        s->head = json_copy(chunk);
        json_object_del(s->head, "choices");
        json_object_del(s->head, "usage");
        for (size_t i = 0; i < json_array_size(choices); i++) {
            gw_stream_status st = restore_choice(s, choices, i);
            if (st != GW_STREAM_OK)
                return st;
        }
    } else if (json_is_object(json_object_get(chunk, "usage"))) {
        streamed_texts_end(s); /* the usage chunk comes after every choice */
    }
    return GW_STREAM_OK;
}

void ellm_gw_stream_restore_done(gw_stream_restore *s, json_t *before)
{
    s->serial++;
    s->before = before;
    streamed_texts_end(s);
}
