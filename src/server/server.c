#define _POSIX_C_SOURCE 200809L
/* The server process: listen at once (health says "loading"), load the model in the
 * background, serve, and on SIGINT/SIGTERM refuse new requests (503), let in-flight ones finish
 * within the grace period, cut the rest, stop listening and exit 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/file_replace.h"
#include "server/http.h"

static const char *srv_log_name(const ellm_server_config *cfg)
{
    return cfg->log_name ? cfg->log_name : "edgellm serve";
}

/* False when the alias does not fit: clients naming it in full would get model_not_found. */
static bool derive_model_id(srv_server *srv)
{
    if (srv->cfg->model_id) {
        if (strlen(srv->cfg->model_id) >= sizeof srv->model_id || !*srv->cfg->model_id)
            return false;
        snprintf(srv->model_id, sizeof srv->model_id, "%s", srv->cfg->model_id);
        return true;
    }
    if (!srv->cfg->model_path)
        return true; /* no model, no id */
    const char *base = strrchr(srv->cfg->model_path, '/');
    base = base ? base + 1 : srv->cfg->model_path;
    snprintf(srv->model_id, sizeof srv->model_id, "%s", base);
    size_t n = strlen(srv->model_id);
    if (n > 5 && !strcmp(srv->model_id + n - 5, ".gguf"))
        srv->model_id[n - 5] = '\0';
    return true;
}

typedef struct load_job {
    srv_server *srv;
    char error[512];
    bool refused; /* the front's start-up check failed: a usage problem, not a load failure */
} load_job;

static void *load_model(void *arg)
{
    load_job *job = arg;
    srv_server *srv = job->srv;
    const ellm_server_config *cfg = srv->cfg;
    edgellm_model_params mp = edgellm_model_default_params();
    mp.pages = cfg->pages;
    edgellm_status st = edgellm_model_load(cfg->model_path, &mp, &srv->model);
    if (st == EDGELLM_OK)
        st = ellm_srv_scheduler_create(srv->model, cfg, srv->metrics, &srv->sched);
    if (st == EDGELLM_OK) {
        edgellm_context_params cp = edgellm_context_default_params();
        cp.n_ctx = ellm_srv_scheduler_n_ctx(srv->sched);
        cp.n_threads = cfg->n_threads;
        cp.n_batch = cfg->n_batch > 0 ? cfg->n_batch : 256;
        st = edgellm_context_create(srv->model, &cp, &srv->embed_ctx);
    }
    if (st != EDGELLM_OK) {
        snprintf(job->error, sizeof job->error, "%s", edgellm_last_error());
        atomic_store(&srv->state, SRV_STATE_FAILED);
        return NULL;
    }
    if (srv->front && srv->front->ready &&
        !srv->front->ready(srv->front->ctx, srv, job->error, sizeof job->error)) {
        job->refused = true;
        atomic_store(&srv->state, SRV_STATE_FAILED);
        return NULL;
    }
    atomic_store(&srv->state, SRV_STATE_READY);
    return NULL;
}

/* A script waiting for this file would wait forever if it silently never appeared: failing to
 * write it is fatal. Two servers given the same file, or one killed while writing it, leave no
 * half-written file and no temporary in the other's way. */
static bool write_ready_file(const char *path, const char *host, int port, char *err, size_t cap)
{
    ellm_replaced_file f;
    char why[400];
    bool ok = ellm_file_replace_open(&f, path, why, sizeof why);
    if (ok && fprintf(f.out, "%s:%d\n", host, port) < 0) {
        snprintf(why, sizeof why, "writing '%.300s' failed: %s", path, strerror(errno));
        ellm_file_replace_abandon(&f);
        ok = false;
    }
    if (ok)
        ok = ellm_file_replace_commit(&f, why, sizeof why);
    if (!ok)
        snprintf(err, cap, "cannot write the --ready-file: %s; give a path in a writable directory",
                 why);
    return ok;
}

int ellm_server_run(const ellm_server_config *cfg)
{
    srv_server srv;
    memset(&srv, 0, sizeof srv);
    srv.cfg = cfg;
    atomic_init(&srv.state, SRV_STATE_LOADING);
    atomic_init(&srv.next_id, 1);
    srv.max_body = cfg->max_body_bytes ? cfg->max_body_bytes : 1 << 20;
    srv.request_timeout_s = cfg->request_timeout_s > 0 ? cfg->request_timeout_s : 600;
    srv.body_timeout_s = cfg->body_timeout_s > 0 ? (unsigned)cfg->body_timeout_s : 30;
    srv.created = (long long)time(NULL);
    srv.front = cfg->front;
    if (!derive_model_id(&srv)) {
        fprintf(stderr, "%s: --alias must be 1 to %zu bytes\n", srv_log_name(cfg),
                sizeof srv.model_id - 1);
        return 2;
    }
    pthread_mutex_init(&srv.embed_mu, NULL);
    srv.metrics = ellm_srv_metrics_new();
    if (!srv.metrics || !ellm_srv_list_split(cfg->cors_origins, &srv.cors, &srv.n_cors) ||
        sodium_init() < 0) {
        fprintf(stderr, "%s: out of memory\n", srv_log_name(cfg));
        return 1;
    }
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    char err[512];
    if (!ellm_srv_guard_init(&srv.guard, host, cfg->allowed_hosts, cfg->api_key, srv.max_body, err,
                             sizeof err)) {
        fprintf(stderr, "%s: %s\n", srv_log_name(cfg), err);
        ellm_srv_list_free(srv.cors, srv.n_cors);
        ellm_srv_metrics_free(srv.metrics);
        return 2;
    }

    /* Every thread inherits this mask, so the signals reach only the sigwait below. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!ellm_srv_http_start(&srv, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", srv_log_name(cfg), err);
        ellm_srv_guard_free(&srv.guard);
        ellm_srv_list_free(srv.cors, srv.n_cors);
        ellm_srv_metrics_free(srv.metrics);
        return 1;
    }
    if (cfg->model_path)
        fprintf(stderr, "%s: listening on http://%s:%d (model '%s' loading)\n", srv_log_name(cfg),
                host, srv.port, srv.model_id);
    else
        fprintf(stderr,
                "%s: listening on http://%s:%d (no model: the page at / runs one in the "
                "browser)\n",
                srv_log_name(cfg), host, srv.port);
    int exit_code = 0;
    if (cfg->ready_file && !write_ready_file(cfg->ready_file, host, srv.port, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", srv_log_name(cfg), err);
        exit_code = 1;
    }

    load_job job = {&srv, "", false};
    pthread_t loader;
    bool loader_started = false;
    if (exit_code)
        atomic_store(&srv.state, SRV_STATE_FAILED);
    else if (!cfg->model_path)
        atomic_store(&srv.state, SRV_STATE_NO_MODEL);
    else if (!(loader_started = pthread_create(&loader, NULL, load_model, &job) == 0)) {
        snprintf(job.error, sizeof job.error, "cannot start the model loader thread");
        atomic_store(&srv.state, SRV_STATE_FAILED);
    }
    bool announced = false;
    while (exit_code == 0) {
        struct timespec ts = {0, 200 * 1000000L};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        int state = atomic_load(&srv.state);
        if (state == SRV_STATE_FAILED && job.refused) {
            fprintf(stderr, "%s: %s\n", srv_log_name(cfg), job.error);
            exit_code = 2;
            break;
        }
        if (state == SRV_STATE_FAILED) {
            fprintf(stderr, "%s: cannot load the model: %s\n", srv_log_name(cfg), job.error);
            exit_code = 1;
            break;
        }
        if (state == SRV_STATE_READY && !announced) {
            edgellm_model_info info;
            edgellm_model_get_info(srv.model, &info);
            fprintf(stderr, "%s: ready: %s (%s, %s), %d slots x %d tokens, kernels %s\n",
                    srv_log_name(cfg), srv.model_id, info.architecture, info.quantization,
                    cfg->parallel > 0 ? cfg->parallel : 1, ellm_srv_scheduler_n_ctx(srv.sched),
                    edgellm_kernel_set());
            announced = true;
        }
        if (sig == SIGINT || sig == SIGTERM) {
            fprintf(stderr, "%s: %s received, finishing in-flight requests (up to %.0f s)\n",
                    srv_log_name(cfg), sig == SIGINT ? "SIGINT" : "SIGTERM", cfg->shutdown_grace_s);
            break;
        }
    }
    if (loader_started)
        pthread_join(loader, NULL);
    /* From here every new request is answered 503 (http.c), so connections keep being accepted
     * while the drain runs: a client that connects now gets an answer, not a reset. Requests
     * finish (or are cut at the deadline) before the connections close, and the connections
     * close before the scheduler they wait on is freed. */
    atomic_store(&srv.state, SRV_STATE_STOPPING);
    ellm_srv_scheduler_drain(srv.sched, ellm_srv_now() + cfg->shutdown_grace_s);
    /* Streams are finished now; give their last events a moment to reach the clients. */
    for (int i = 0; i < 200 && atomic_load(&srv.responses_in_flight) > 0; i++)
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    ellm_srv_http_stop(&srv);
    ellm_srv_scheduler_free(srv.sched);
    srv.sched = NULL;
    edgellm_context_free(srv.embed_ctx);
    edgellm_model_free(srv.model);
    ellm_srv_metrics_free(srv.metrics);
    ellm_srv_list_free(srv.cors, srv.n_cors);
    ellm_srv_guard_free(&srv.guard);
    pthread_mutex_destroy(&srv.embed_mu);
    if (exit_code == 0)
        fprintf(stderr, "%s: stopped\n", srv_log_name(cfg));
    return exit_code;
}
