/* The PII restoration of a cloud's streamed answer, chunk by chunk: each text that arrives in
 * fragments (a choice's content and the other delta members of streamed_members, each tool
 * call's arguments) has a streaming restorer of its own, so a placeholder split across two
 * chunks reaches the client restored. The transport (reading events, writing them) is the
 * relay's, in gateway.c. */
#ifndef EDGELLM_GATEWAY_STREAM_RESTORE_H
#define EDGELLM_GATEWAY_STREAM_RESTORE_H

#include <jansson.h>
#include <stdbool.h>

#include "gateway/pii.h"

/* A cloud can name any number of choices and tool calls, so how many texts get a restorer is
 * bounded: beyond that the stream is refused as a misshapen one is. */
#define GW_MAX_STREAMED_TEXTS 4096

typedef struct gw_stream_restore gw_stream_restore;

typedef enum gw_stream_status {
    GW_STREAM_OK,
    GW_STREAM_TOO_MANY_TEXTS, /* the chunk names more than GW_MAX_STREAMED_TEXTS texts */
    GW_STREAM_OUT_OF_MEMORY,
} gw_stream_status;

/* A restoration with session's placeholders (borrowed: it must outlive the restoration) for a
 * chat stream (delta members and tool calls) or a completions stream (`text`); NULL when out of
 * memory. */
gw_stream_restore *ellm_gw_stream_restore_create(pii_session *session, bool chat);

/* Restores one chunk in place; it must have passed ellm_gw_cloud_answer_fault. Held-back tails
 * of texts that end here (a choice's finish_reason, the usage chunk) are appended to the chunk's
 * fragment of that text when there is one, else to `before` as chunks of their own (in the
 * frame of the stream's chunks), which go to the client before this one. On a fault nothing of
 * the chunk may be relayed, but `before` still goes out. */
gw_stream_status ellm_gw_stream_restore_chunk(gw_stream_restore *s, json_t *chunk, json_t *before);

/* The stream's [DONE]: every tail still held back, as chunks appended to `before`. */
void ellm_gw_stream_restore_done(gw_stream_restore *s, json_t *before);

void ellm_gw_stream_restore_free(gw_stream_restore *s);

#endif
