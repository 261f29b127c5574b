/* `edgellm gateway`: the OpenAI API of `edgellm serve` with a routing front (src/server/http.h)
 * that decides per request whether the edge model answers or a cloud model does, redacts
 * personal data before anything leaves the device and restores it in the answer, and falls back
 * to the edge model when the cloud cannot be reached. docs/gateway.md describes the request
 * path. */
#ifndef EDGELLM_GATEWAY_H
#define EDGELLM_GATEWAY_H

#include <stdbool.h>

#include "server/server.h"

typedef enum gw_route_mode { GW_ROUTE_AUTO, GW_ROUTE_EDGE, GW_ROUTE_CLOUD } gw_route_mode;
typedef enum gw_pii_mode { GW_PII_REDACT, GW_PII_BLOCK, GW_PII_OFF } gw_pii_mode;

typedef struct gw_config {
    ellm_server_config server; /* the edge model and the local endpoint */
    const char *cloud_url;     /* base URL of an OpenAI-compatible server, with or without /v1 */
    const char *cloud_model;   /* "model" sent upstream; NULL = the client's */
    const char *cloud_key;     /* sent as Bearer to the upstream only; NULL = none */
    bool cloud_insecure;       /* skip TLS verification (named on purpose, never implied) */
    gw_route_mode route;
    gw_pii_mode pii;
    const char *policy_path;  /* JSON: complexity_threshold, weights, fallback, "pii" */
    double connect_timeout_s; /* <= 0: 0.5 */
    double deadline_s;        /* a whole upstream call; <= 0: 60 */
    int retries;              /* extra attempts after 429/5xx; < 0: 1 */
    double probe_interval_s;  /* health probes of an open circuit; <= 0: 0.5 */
    int speculative_k;        /* > 0: cloud requests are drafted on the edge, K tokens per
                                  verification call (docs/gateway.md); 0 = off */
    double cloud_latency_ms;  /* test knob: a simulated network delay before every cloud call */
} gw_config;

/* Loads the policy, serves until SIGINT/SIGTERM and returns a process exit code; errors are
 * one line on stderr. */
int ellm_gw_run(gw_config *cfg);

/* The routing score of a request (docs/gateway.md, "Tiered routing"): each part in [0,1]. */
typedef struct gw_complexity {
    double length;     /* prompt tokens / 512, capped */
    double max_tokens; /* requested max_tokens / 1024, capped (absent: 0.25) */
    double code_math;  /* 1 when the text holds code or mathematics */
    double steps;      /* multi-step instruction words, 2 or more = 1 */
    double turns;      /* (messages - 1) / 8, capped */
    double surprisal;  /* the edge model's mean surprisal per prompt token / ln(vocabulary) */
    double score;      /* the weighted sum, in [0,1] */
} gw_complexity;

/* Scores text with n_tokens prompt tokens, max_tokens requested (< 0: absent), n_messages and
 * the surprisal part already measured. */
void ellm_gw_complexity_score(const char *text, size_t len, int n_tokens, long max_tokens,
                              int n_messages, double surprisal, gw_complexity *out);

#endif
