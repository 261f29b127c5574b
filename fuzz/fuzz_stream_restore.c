/* libFuzzer target for the gateway's streamed restoration (src/gateway/stream_restore.c).
 *
 * Built mode (most inputs): the input picks a few texts of a streamed answer, each a (choice,
 * kind, call): a completion's `text`, a chat delta's content, refusal, reasoning,
 * function_call.arguments, audio.transcript, or a tool call's arguments; their bytes (letters,
 * brackets, a two-byte letter, whole and cut-short placeholders of a session that redacted a
 * few values); where each text is cut into fragments; and how the fragments are dealt into
 * chunks, texts of several choices and calls interleaved, with finish_reason and a usage chunk
 * where the input says. The chunks go through the restoration as the relay sends them (the
 * chunks it puts before one, then the chunk), and for each text the concatenation of what went
 * out must equal the whole text restored at once, with none of the session's placeholders left.
 *
 * Raw mode (first byte & 3 == 3): the rest is lines of hostile JSON, each fed as an event when
 * it passes the cloud-answer check, as the relay does; only crashes and sanitizer reports
 * count. Unlike the relay, a refused line does not end the stream, so later lines still run. */
#define _GNU_SOURCE /* memmem */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/cloud_answer.h"
#include "gateway/pii.h"
#include "gateway/stream_restore.h"

/* Values the session redacts: two of one type, so placeholders share a prefix. */
static const char redacted_values[] = "Mail jane.doe@example.com or joe@example.org, call +44 20 "
                                      "7946 0958, card 4111 1111 1111 1111, SSN 123-45-6789.";

#define MAX_TEXTS 6
#define MAX_TEXT_LEN 512
#define MAX_CUTS 6
#define TOOL_CALL_KIND 6 /* after the six delta members (stream_restore.c's streamed_members) */

static pii_policy *policy;

typedef struct input {
    const uint8_t *data;
    size_t size, at;
} input;

/* The next byte of the input; 0 once it is used up, so every input is a whole test. */
static unsigned next_byte(input *in) { return in->at < in->size ? in->data[in->at++] : 0; }

typedef struct text {
    json_int_t choice, call;
    int kind;
    char bytes[MAX_TEXT_LEN];
    size_t len;
    size_t cuts[MAX_CUTS + 2]; /* fragment f is bytes[cuts[f], cuts[f + 1]) */
    size_t n_fragments, sent;
    char *relayed; /* what went out for this text, joined */
    size_t relayed_len;
} text;

typedef struct stream {
    bool chat;
    text texts[MAX_TEXTS];
    size_t n_texts;
    pii_entity *entities; /* with the session's placeholders */
    size_t n_entities;
} stream;

static void append(char *buf, size_t *len, size_t cap, const char *s, size_t n)
{
    if (n > cap - *len)
        n = cap - *len;
    memcpy(buf + *len, s, n);
    *len += n;
}

/* The bytes of a text: a token per input byte. */
static void build_text(input *in, const stream *st, text *t)
{
    unsigned n_tokens = next_byte(in) % 16;
    for (unsigned i = 0; i < n_tokens; i++) {
        unsigned b = next_byte(in);
        const char *placeholder = st->entities[(b >> 3) % st->n_entities].placeholder;
        size_t plen = strlen(placeholder);
        switch (b & 7) {
        case 0:
        case 1:
            append(t->bytes, &t->len, MAX_TEXT_LEN, placeholder, plen);
            break;
        case 2: /* cut short: held back, then given out unchanged */
            append(t->bytes, &t->len, MAX_TEXT_LEN, placeholder, 1 + (b >> 5) % (plen - 1));
            break;
        case 3:
            append(t->bytes, &t->len, MAX_TEXT_LEN, "[", 1);
            break;
        case 4:
            append(t->bytes, &t->len, MAX_TEXT_LEN, "\xc3\xa9", 2);
            break;
        case 5:
            append(t->bytes, &t->len, MAX_TEXT_LEN, "]_", 1 + (b >> 7));
            break;
        default: {
            char letter = (char)('a' + (b >> 3) % 26);
            append(t->bytes, &t->len, MAX_TEXT_LEN, &letter, 1);
        }
        }
    }
    /* A cut-off two-byte letter at the end would not be a JSON string. */
    if (t->len && (unsigned char)t->bytes[t->len - 1] == 0xc3)
        t->len--;
}

static int compare_sizes(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Cuts at input-chosen bytes, never inside the two-byte letter (a fragment is a JSON string). */
static void cut_text(input *in, text *t)
{
    size_t n = 0, cuts[MAX_CUTS];
    unsigned n_cuts = next_byte(in) % (MAX_CUTS + 1);
    for (unsigned i = 0; i < n_cuts; i++) {
        size_t at = next_byte(in) % (t->len + 1);
        while (at < t->len && ((unsigned char)t->bytes[at] & 0xc0) == 0x80)
            at++;
        cuts[n++] = at;
    }
    qsort(cuts, n, sizeof *cuts, compare_sizes);
    t->cuts[0] = 0;
    t->n_fragments = 0;
    for (size_t i = 0; i < n; i++)
        if (cuts[i] > t->cuts[t->n_fragments] && cuts[i] < t->len)
            t->cuts[++t->n_fragments] = cuts[i];
    t->cuts[++t->n_fragments] = t->len;
}

static const json_int_t choice_indexes[] = {0, 1, 2, (json_int_t)1 << 40, INT64_MAX};
static const json_int_t call_indexes[] = {0, 1, 5, INT64_MAX};

static text *find_text(stream *st, json_int_t choice, int kind, json_int_t call)
{
    for (size_t i = 0; i < st->n_texts; i++)
        if (st->texts[i].choice == choice && st->texts[i].kind == kind && st->texts[i].call == call)
            return &st->texts[i];
    return NULL;
}

static void build_stream(input *in, stream *st)
{
    unsigned n = 1 + next_byte(in) % MAX_TEXTS;
    for (unsigned i = 0; i < n; i++) {
        json_int_t choice = choice_indexes[next_byte(in) % 5];
        int kind = st->chat ? (int)(next_byte(in) % (TOOL_CALL_KIND + 1)) : 0;
        json_int_t call = kind == TOOL_CALL_KIND ? call_indexes[next_byte(in) % 4] : 0;
        if (find_text(st, choice, kind, call))
            continue;
        text *t = &st->texts[st->n_texts++];
        *t = (text){.choice = choice, .kind = kind, .call = call};
        build_text(in, st, t);
        cut_text(in, t);
    }
}

/* The chat delta members, in stream_restore.c's order: holder (NULL: the delta) and key. */
static const char *const member_holders[] = {NULL, NULL, NULL, NULL, "function_call", "audio"};
static const char *const member_keys[] = {"content",   "refusal",   "reasoning_content",
                                          "reasoning", "arguments", "transcript"};

/* Whether a fragment of t can join the choice object o (a member is set once per object). */
static bool fits(const stream *st, json_t *o, const text *t)
{
    if (!o || json_integer_value(json_object_get(o, "index")) != t->choice ||
        json_is_string(json_object_get(o, "fin")))
        return false;
    if (!st->chat)
        return false; /* a completion's choice has one text */
    if (t->kind == TOOL_CALL_KIND)
        return true; /* tool_calls may repeat an index: its fragments join in order */
    json_t *delta = json_object_get(o, "delta");
    json_t *holder = member_holders[t->kind] ? json_object_get(delta, member_holders[t->kind])
                                             : delta;
    return !json_object_get(holder, member_keys[t->kind]);
}

/* Puts t's next fragment into chunk (its choices array), in the last choice object when it fits. */
static void add_fragment(const stream *st, json_t *choices, text *t)
{
    const char *s = t->bytes + t->cuts[t->sent];
    size_t n = t->cuts[t->sent + 1] - t->cuts[t->sent];
    bool first = t->sent == 0;
    t->sent++;
    json_t *piece = json_stringn(s, n);
    if (!piece)
        abort(); /* the builder made a string JSON cannot hold */
    json_t *o = json_array_get(choices, json_array_size(choices) - 1);
    if (!fits(st, o, t)) {
        o = st->chat ? json_pack("{s:I,s:{},s:n}", "index", t->choice, "delta", "finish_reason")
                     : json_pack("{s:I,s:s,s:n}", "index", t->choice, "text", "",
                                 "finish_reason");
        json_array_append_new(choices, o);
    }
    if (!st->chat) {
        json_object_set_new(o, "text", piece);
        return;
    }
    json_t *delta = json_object_get(o, "delta");
    if (t->kind == TOOL_CALL_KIND) {
        json_t *calls = json_object_get(delta, "tool_calls");
        if (!calls)
            json_object_set_new(delta, "tool_calls", calls = json_array());
        json_t *call = first ? json_pack("{s:I,s:s,s:s,s:{s:s,s:o}}", "index", t->call, "id",
                                         "call_1", "type", "function", "function", "name", "f",
                                         "arguments", piece)
                             : json_pack("{s:I,s:{s:o}}", "index", t->call, "function",
                                         "arguments", piece);
        json_array_append_new(calls, call);
        return;
    }
    json_t *holder = delta;
    if (member_holders[t->kind]) {
        holder = json_object_get(delta, member_holders[t->kind]);
        if (!holder) {
            holder = first && t->kind == 4 ? json_pack("{s:s}", "name", "f") : json_object();
            json_object_set_new(delta, member_holders[t->kind], holder);
        }
    }
    json_object_set_new(holder, member_keys[t->kind], piece);
}

/* Appends what an event that went out holds for each text to that text's relayed bytes. */
static void take_relayed(stream *st, json_t *event)
{
    size_t i, k;
    json_t *o, *call;
    json_array_foreach(json_object_get(event, "choices"), i, o)
    {
        json_int_t c = json_integer_value(json_object_get(o, "index"));
        json_t *delta = json_object_get(o, "delta");
        for (int kind = 0; kind <= TOOL_CALL_KIND; kind++) {
            json_t *parents[64];
            json_int_t calls[64];
            size_t n = 0;
            if (!st->chat && kind == 0) {
                parents[n] = o;
                calls[n++] = 0;
            } else if (st->chat && kind == TOOL_CALL_KIND) {
                json_array_foreach(json_object_get(delta, "tool_calls"), k, call)
                {
                    if (n == 64)
                        abort(); /* more calls in one event than the builder can make */
                    parents[n] = json_object_get(call, "function");
                    calls[n++] = json_integer_value(json_object_get(call, "index"));
                }
            } else if (st->chat) {
                parents[n] = member_holders[kind] ? json_object_get(delta, member_holders[kind])
                                                  : delta;
                calls[n++] = 0;
            }
            for (size_t f = 0; f < n; f++) {
                const char *key = !st->chat ? "text" : kind == TOOL_CALL_KIND ? "arguments"
                                                                              : member_keys[kind];
                json_t *s = json_object_get(parents[f], key);
                if (!s)
                    continue;
                text *t = find_text(st, c, kind, calls[f]);
                if (!t || !json_is_string(s))
                    abort(); /* a text no fragment was sent for, or not a string */
                size_t len = json_string_length(s);
                char *grown = realloc(t->relayed, t->relayed_len + len + 1);
                if (!grown)
                    abort();
                memcpy(grown + t->relayed_len, json_string_value(s), len);
                t->relayed = grown;
                t->relayed_len += len;
            }
        }
    }
}

/* Restores one chunk and collects what goes out: the chunks put before it, then it. */
static void relay_chunk(stream *st, gw_stream_restore *restore, json_t *chunk, json_t *before)
{
    char field[128];
    if (ellm_gw_cloud_answer_fault(chunk, st->chat ? GW_CHOICE_DELTA : GW_CHOICE_TEXT_CHUNK,
                                   field, sizeof field))
        abort(); /* the builder made a chunk the relay would refuse */
    if (ellm_gw_stream_restore_chunk(restore, chunk, before) != GW_STREAM_OK)
        abort();
    size_t i;
    json_t *event;
    json_array_foreach(before, i, event) take_relayed(st, event);
    json_array_clear(before);
    take_relayed(st, chunk);
}

static bool choice_sent(const stream *st, json_int_t choice)
{
    for (size_t i = 0; i < st->n_texts; i++)
        if (st->texts[i].choice == choice && st->texts[i].sent < st->texts[i].n_fragments)
            return false;
    return true;
}

static void check_texts(const stream *st, const pii_session *session)
{
    for (size_t i = 0; i < st->n_texts; i++) {
        const text *t = &st->texts[i];
        char *whole;
        size_t whole_len;
        if (ellm_pii_restore(session, t->bytes, t->len, &whole, &whole_len) != EDGELLM_OK)
            abort();
        if (t->relayed_len != whole_len || memcmp(t->relayed ? t->relayed : "", whole, whole_len))
            abort(); /* the stream restored this text differently from the whole answer */
        for (size_t e = 0; e < st->n_entities; e++)
            if (memmem(t->relayed ? t->relayed : "", t->relayed_len, st->entities[e].placeholder,
                       strlen(st->entities[e].placeholder)))
                abort(); /* a placeholder the session knows went out */
        free(whole);
    }
}

static void run_built(input *in, stream *st, const pii_session *session,
                      gw_stream_restore *restore, json_t *before)
{
    build_stream(in, st);
    size_t left = 0;
    for (size_t i = 0; i < st->n_texts; i++)
        left += st->texts[i].n_fragments;
    while (left) {
        json_t *chunk = json_pack("{s:s,s:s,s:[]}", "id", "chatcmpl-1", "object",
                                  st->chat ? "chat.completion.chunk" : "text_completion",
                                  "choices");
        json_t *choices = json_object_get(chunk, "choices");
        unsigned slots = 1 + next_byte(in) % 4;
        for (unsigned s = 0; s < slots && left; s++) {
            size_t pick = next_byte(in) % st->n_texts;
            while (st->texts[pick].sent == st->texts[pick].n_fragments)
                pick = (pick + 1) % st->n_texts;
            text *t = &st->texts[pick];
            add_fragment(st, choices, t);
            left--;
            /* The choice's last fragment may carry its finish_reason ("fin" marks the object
             * closed to the builder until the chunk is complete). */
            if (choice_sent(st, t->choice) && (next_byte(in) & 1))
                json_object_set_new(json_array_get(choices, json_array_size(choices) - 1), "fin",
                                    json_string("stop"));
        }
        size_t i;
        json_t *o;
        json_array_foreach(choices, i, o)
        {
            json_t *fin = json_object_get(o, "fin");
            if (fin) {
                json_object_set(o, "finish_reason", fin);
                json_object_del(o, "fin");
            }
        }
        relay_chunk(st, restore, chunk, before);
        json_decref(chunk);
    }
    if (next_byte(in) & 1) {
        json_t *usage = json_pack("{s:s,s:[],s:{s:i}}", "id", "chatcmpl-1", "choices", "usage",
                                  "total_tokens", 1);
        relay_chunk(st, restore, usage, before);
        json_decref(usage);
    }
    ellm_gw_stream_restore_done(restore, before);
    size_t i;
    json_t *event;
    json_array_foreach(before, i, event) take_relayed(st, event);
    check_texts(st, session);
}

/* Hostile events: each line that parses and passes the check is restored; nothing is asserted
 * but the absence of crashes, leaks and undefined behaviour. */
static void run_raw(const uint8_t *data, size_t size, bool chat, gw_stream_restore *restore,
                    json_t *before)
{
    const char *at = (const char *)data, *end = at + size;
    while (at < end) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        size_t n = nl ? (size_t)(nl - at) : (size_t)(end - at);
        json_t *event = json_loadb(at, n, 0, NULL);
        char field[128];
        if (json_is_object(event) &&
            !ellm_gw_cloud_answer_fault(event, chat ? GW_CHOICE_DELTA : GW_CHOICE_TEXT_CHUNK, field,
                                        sizeof field))
            ellm_gw_stream_restore_chunk(restore, event, before);
        json_decref(event);
        json_array_clear(before);
        at += n + 1;
    }
    ellm_gw_stream_restore_done(restore, before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!policy && ellm_pii_policy_default(&policy) != EDGELLM_OK)
        abort();
    if (size < 1)
        return 0;
    stream st = {.chat = !(data[0] & 4)};
    pii_session *session;
    char *redacted;
    size_t redacted_len;
    if (ellm_pii_session_create(policy, &session) != EDGELLM_OK ||
        ellm_pii_redact(session, redacted_values, sizeof redacted_values - 1, &redacted,
                        &redacted_len, &st.entities, &st.n_entities) != EDGELLM_OK ||
        st.n_entities < 2)
        abort();
    gw_stream_restore *restore = ellm_gw_stream_restore_create(session, st.chat);
    json_t *before = json_array();
    if (!restore || !before)
        abort();
    if ((data[0] & 3) == 3) {
        run_raw(data + 1, size - 1, st.chat, restore, before);
    } else {
        input in = {data, size, 1};
        run_built(&in, &st, session, restore, before);
    }
    for (size_t i = 0; i < st.n_texts; i++)
        free(st.texts[i].relayed);
    json_decref(before);
    ellm_gw_stream_restore_free(restore);
    free(st.entities);
    free(redacted);
    ellm_pii_session_free(session);
    return 0;
}
