/* On-device PII detection, redaction to typed placeholders and restoration (issue 13, part 3).
 *
 * A policy (immutable, shareable between threads) says which detectors run and adds the user's
 * own terms and PCRE2 patterns. A session holds one conversation's mapping between original
 * values and placeholders ("[EMAIL_1]"): the same value always gets the same placeholder, two
 * values never share one. The mapping lives only in memory and is wiped when the session is
 * freed. No error message of this module contains a scanned value.
 *
 * Errors are reported as edgellm_status with the message in edgellm_last_error(). */
#ifndef EDGELLM_GATEWAY_PII_H
#define EDGELLM_GATEWAY_PII_H

#include <stdbool.h>
#include <stddef.h>

#include "edgellm.h"

/* Built-in entity types, in the order detectors are documented (docs/gateway.md). */
typedef enum pii_builtin {
    PII_EMAIL,
    PII_PHONE,
    PII_CARD,
    PII_IBAN,
    PII_SSN,
    PII_IP_ADDRESS,
    PII_URL_CREDENTIALS,
    PII_SECRET,
    PII_DOB,
    PII_BUILTIN_COUNT
} pii_builtin;

const char *ellm_pii_builtin_name(pii_builtin type);

typedef struct pii_entity {
    size_t start, end; /* byte offsets of the value in the scanned text */
    const char *type;  /* a built-in name or a policy type; lives as long as the policy */
    const char
        *placeholder; /* set by ellm_pii_redact ("[EMAIL_1]"); lives as long as the session */
} pii_entity;

typedef struct pii_policy pii_policy;

/* The built-in detectors only. */
edgellm_status ellm_pii_policy_default(pii_policy **out);
/* A policy from JSON text. Only the "pii" member is read, so one file can hold the gateway's
 * other settings too:
 *   {"pii": {"terms":    {"CONTACT": ["Alice Smith", "Bob"]},      (case-insensitive, whole words)
 *            "patterns": {"EMPLOYEE_ID": "EMP-[0-9]{6}"},           (PCRE2, string or array)
 *            "disable":  ["IP_ADDRESS"],                           (built-in detectors to skip)
 *            "allow":    ["support@example.com"]}}                  (values never redacted)
 * `origin` names the source in error messages (a file name). */
edgellm_status ellm_pii_policy_parse(const char *json, size_t len, const char *origin,
                                     pii_policy **out);
edgellm_status ellm_pii_policy_load(const char *path, pii_policy **out);
void ellm_pii_policy_free(pii_policy *policy);

/* Every entity in text, sorted by start, never overlapping (where detections overlap the
 * longest wins). *out is malloc'd (NULL when none); the placeholders are NULL. */
edgellm_status ellm_pii_scan(const pii_policy *policy, const char *text, size_t len,
                             pii_entity **out, size_t *n_out);

/* "CARD, EMAIL": the distinct types of entities, sorted, for block mode (never the values).
 * Returns the length it needed; buf (cap > 0) is always NUL-terminated. */
size_t ellm_pii_describe_types(const pii_entity *entities, size_t n, char *buf, size_t cap);

/* A session is used by one thread at a time (the gateway: one per conversation). */
typedef struct pii_session pii_session;

edgellm_status ellm_pii_session_create(const pii_policy *policy, pii_session **out);
/* Wipes every stored value before freeing. */
void ellm_pii_session_free(pii_session *session);
/* Number of distinct values the session has mapped. */
size_t ellm_pii_session_size(const pii_session *session);

/* Redacts text: each entity becomes its placeholder. *out (malloc'd, NUL-terminated) gets the
 * redacted text; entities/n_entities (both may be NULL) the entities with their placeholders.
 * Placeholder-shaped strings already present in the text are never handed out, and one equal to
 * a placeholder handed out earlier is redacted itself (type "PLACEHOLDER"), so restoring the
 * redacted text gives back exactly the input. Fails, sending nothing, when a policy pattern
 * exceeds its match limit. */
edgellm_status ellm_pii_redact(pii_session *session, const char *text, size_t len, char **out,
                               size_t *out_len, pii_entity **entities, size_t *n_entities);

/* Replaces every placeholder this session handed out by its value; anything else, including
 * placeholders it never handed out and mangled ones, is copied unchanged. */
edgellm_status ellm_pii_restore(const pii_session *session, const char *text, size_t len,
                                char **out, size_t *out_len);

/* A growable byte buffer the streaming restorer appends to. */
typedef struct pii_buffer {
    char *data;
    size_t len, cap;
} pii_buffer;
void ellm_pii_buffer_free(pii_buffer *buf);

/* Restores a stream of chunks: text is emitted as soon as it cannot be part of a placeholder;
 * only a tail that is the beginning of one of the session's placeholders is held back until
 * the next chunk resolves it. */
typedef struct pii_restorer pii_restorer;
edgellm_status ellm_pii_restorer_create(const pii_session *session, pii_restorer **out);
/* Appends what can be emitted after this chunk to out. */
edgellm_status ellm_pii_restorer_feed(pii_restorer *r, const char *chunk, size_t len,
                                      pii_buffer *out);
/* End of stream: appends the held-back tail unchanged. */
edgellm_status ellm_pii_restorer_finish(pii_restorer *r, pii_buffer *out);
void ellm_pii_restorer_free(pii_restorer *r);

#endif
