/* The shape a cloud's answer must have before the gateway restores and relays it. */
#ifndef EDGELLM_GATEWAY_CLOUD_ANSWER_H
#define EDGELLM_GATEWAY_CLOUD_ANSWER_H

#include <jansson.h>
#include <stddef.h>

/* What is checked and where a choice keeps its answer: a whole completion's or a streamed
 * completion chunk's `text`, a whole chat answer's `message`, or a streamed chat chunk's `delta`
 * (whose members all may be absent, and whose tool calls arrive in pieces: a name or arguments
 * when present). */
typedef enum gw_choice_shape {
    GW_CHOICE_TEXT,
    GW_CHOICE_TEXT_CHUNK,
    GW_CHOICE_MESSAGE,
    GW_CHOICE_DELTA,
} gw_choice_shape;

/* A 200 from the cloud, a whole answer or one streamed chunk, is checked before it is relayed:
 * an answer with a number for its text, no choice, or tool-call arguments that are not a JSON
 * string would otherwise reach the client as a 200 it cannot read. A chunk may have no choice
 * (the usage chunk that ends a stream has none). Returns NULL when the answer has that shape,
 * else the field at fault (written to field) with what it should be. */
const char *ellm_gw_cloud_answer_fault(json_t *answer, gw_choice_shape shape, char *field,
                                       size_t cap);

#endif
