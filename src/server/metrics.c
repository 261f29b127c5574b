#define _POSIX_C_SOURCE 200809L
/* Counters and histograms exposed at /metrics in the Prometheus text format. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

#define MAX_SERIES 64

static const double latency_bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
static const double ttft_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_BOUNDS 11

typedef struct histogram {
    const double *bounds;
    uint64_t buckets[N_BOUNDS]; /* cumulative counts are computed when rendering */
    uint64_t count;
    double sum;
} histogram;

typedef struct request_series {
    char endpoint[48];
    int status;
    uint64_t count;
} request_series;

struct srv_metrics {
    pthread_mutex_t mu;
    request_series series[MAX_SERIES];
    int n_series;
    histogram latency, ttft;
    uint64_t prompt_tokens, cached_tokens, generated_tokens, rejected;
    uint64_t draft_proposed, draft_accepted, target_passes;
};

srv_metrics *ellm_srv_metrics_new(void)
{
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->latency.bounds = latency_bounds;
    m->ttft.bounds = ttft_bounds;
    return m;
}

void ellm_srv_metrics_free(srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void observe(histogram *h, double v)
{
    for (int i = 0; i < N_BOUNDS; i++)
        if (v <= h->bounds[i]) {
            h->buckets[i]++;
            break;
        }
    h->count++;
    h->sum += v;
}

void ellm_srv_metrics_request(srv_metrics *m, const char *endpoint, int status, double seconds)
{
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_series &&
           (m->series[i].status != status || strcmp(m->series[i].endpoint, endpoint) != 0))
        i++;
    if (i == m->n_series && m->n_series < MAX_SERIES) {
        snprintf(m->series[i].endpoint, sizeof m->series[i].endpoint, "%s", endpoint);
        m->series[i].status = status;
        m->n_series++;
    }
    if (i < m->n_series)
        m->series[i].count++;
    observe(&m->latency, seconds);
    pthread_mutex_unlock(&m->mu);
}

void ellm_srv_metrics_tokens(srv_metrics *m, int64_t prompt, int64_t cached, int64_t generated)
{
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)prompt;
    m->cached_tokens += (uint64_t)cached;
    m->generated_tokens += (uint64_t)generated;
    pthread_mutex_unlock(&m->mu);
}

void ellm_srv_metrics_speculative(srv_metrics *m, int64_t proposed, int64_t accepted)
{
    pthread_mutex_lock(&m->mu);
    m->draft_proposed += (uint64_t)proposed;
    m->draft_accepted += (uint64_t)accepted;
    m->target_passes++;
    pthread_mutex_unlock(&m->mu);
}

void ellm_srv_metrics_ttft(srv_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    observe(&m->ttft, seconds);
    pthread_mutex_unlock(&m->mu);
}

void ellm_srv_metrics_rejected(srv_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->rejected++;
    pthread_mutex_unlock(&m->mu);
}

typedef struct text {
    char *buf;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = true;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void put_histogram(text *t, const char *name, const char *help, const histogram *h)
{
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int i = 0; i < N_BOUNDS; i++) {
        cumulative += h->buckets[i];
        put(t, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cumulative);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
        (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

char *ellm_srv_metrics_render(srv_metrics *m, int queue_depth, int active_slots, int parallel)
{
    text t = {malloc(4096), 0, 4096, false};
    if (!t.buf)
        return NULL;
    t.buf[0] = '\0';
    pthread_mutex_lock(&m->mu);
    put(&t, "# HELP edgellm_requests_total HTTP requests by endpoint and status.\n"
            "# TYPE edgellm_requests_total counter\n");
    for (int i = 0; i < m->n_series; i++)
        put(&t, "edgellm_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
            m->series[i].endpoint, m->series[i].status, (unsigned long long)m->series[i].count);
    put(&t,
        "# HELP edgellm_rejected_total Requests refused with 429 because the queue was full.\n"
        "# TYPE edgellm_rejected_total counter\nedgellm_rejected_total %llu\n",
        (unsigned long long)m->rejected);
    put(&t,
        "# HELP edgellm_prompt_tokens_total Prompt tokens of finished requests.\n"
        "# TYPE edgellm_prompt_tokens_total counter\nedgellm_prompt_tokens_total %llu\n",
        (unsigned long long)m->prompt_tokens);
    put(&t,
        "# HELP edgellm_prompt_tokens_cached_total Prompt tokens reused from a slot's cache.\n"
        "# TYPE edgellm_prompt_tokens_cached_total counter\n"
        "edgellm_prompt_tokens_cached_total %llu\n",
        (unsigned long long)m->cached_tokens);
    put(&t,
        "# HELP edgellm_generated_tokens_total Generated tokens.\n"
        "# TYPE edgellm_generated_tokens_total counter\nedgellm_generated_tokens_total %llu\n",
        (unsigned long long)m->generated_tokens);
    put(&t,
        "# HELP edgellm_draft_tokens_total Tokens proposed by speculative decoding and checked.\n"
        "# TYPE edgellm_draft_tokens_total counter\nedgellm_draft_tokens_total %llu\n",
        (unsigned long long)m->draft_proposed);
    put(&t,
        "# HELP edgellm_draft_accepted_tokens_total Proposed tokens the model accepted.\n"
        "# TYPE edgellm_draft_accepted_tokens_total counter\n"
        "edgellm_draft_accepted_tokens_total %llu\n",
        (unsigned long long)m->draft_accepted);
    put(&t,
        "# HELP edgellm_target_passes_total Passes of the model over one sequence's pending "
        "token and its proposals.\n"
        "# TYPE edgellm_target_passes_total counter\nedgellm_target_passes_total %llu\n",
        (unsigned long long)m->target_passes);
    put(&t,
        "# HELP edgellm_draft_acceptance_rate Accepted over proposed tokens (0 before any).\n"
        "# TYPE edgellm_draft_acceptance_rate gauge\nedgellm_draft_acceptance_rate %.4f\n",
        m->draft_proposed ? (double)m->draft_accepted / (double)m->draft_proposed : 0.0);
    put(&t,
        "# HELP edgellm_queue_depth Requests waiting for a slot.\n"
        "# TYPE edgellm_queue_depth gauge\nedgellm_queue_depth %d\n",
        queue_depth);
    put(&t,
        "# HELP edgellm_slots_active Slots generating.\n"
        "# TYPE edgellm_slots_active gauge\nedgellm_slots_active %d\n",
        active_slots);
    put(&t,
        "# HELP edgellm_slots_total Slots decoded together.\n"
        "# TYPE edgellm_slots_total gauge\nedgellm_slots_total %d\n",
        parallel);
    put_histogram(&t, "edgellm_request_duration_seconds", "Time from request to response end.",
                  &m->latency);
    put_histogram(&t, "edgellm_time_to_first_token_seconds",
                  "Time from submission to the first generated token.", &m->ttft);
    pthread_mutex_unlock(&m->mu);
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
