/* Scores the PII detectors on a labelled set written by bench/pii_eval_gen.py: recall and
 * precision per type (an entity counts only with the exact type and byte span), optionally
 * asserting minimums, and the redaction speed on a text file.
 *   pii_eval SET.jsonl [--min-recall R] [--min-precision P] [--errors N]
 *            [--speed TEXT [--seconds S]] */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/pii.h"
#include "test_util.h"

typedef struct type_score {
    char name[40];
    size_t gold, found, correct;
} type_score;

static type_score scores[64];
static size_t n_scores;

static type_score *score_for(const char *name)
{
    for (size_t k = 0; k < n_scores; k++)
        if (strcmp(scores[k].name, name) == 0)
            return &scores[k];
    if (n_scores == sizeof scores / sizeof scores[0])
        return &scores[n_scores - 1];
    snprintf(scores[n_scores].name, sizeof scores[n_scores].name, "%s", name);
    return &scores[n_scores++];
}

static double seconds_of(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int evaluate(const pii_policy *policy, const char *path, int show_errors)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "pii_eval: cannot open '%s'\n", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int line_no = 0, shown = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        line_no++;
        json_error_t err;
        json_t *rec = json_loadb(line, (size_t)got, 0, &err);
        json_t *jtext = json_object_get(rec, "text"), *jents = json_object_get(rec, "entities");
        if (!json_is_string(jtext) || !json_is_array(jents)) {
            fprintf(stderr, "pii_eval: %s line %d is not {\"text\", \"entities\"}\n", path,
                    line_no);
            json_decref(rec);
            free(line);
            fclose(f);
            return -1;
        }
        const char *text = json_string_value(jtext);
        size_t len = json_string_length(jtext);
        pii_entity *found;
        size_t n_found;
        if (ellm_pii_scan(policy, text, len, &found, &n_found) != EDGELLM_OK) {
            fprintf(stderr, "pii_eval: line %d: %s\n", line_no, edgellm_last_error());
            json_decref(rec);
            free(line);
            fclose(f);
            return -1;
        }
        bool *matched = calloc(n_found + 1, 1);
        size_t n_gold = json_array_size(jents);
        for (size_t g = 0; g < n_gold; g++) {
            json_t *e = json_array_get(jents, g);
            const char *type = json_string_value(json_object_get(e, "type"));
            size_t s = (size_t)json_integer_value(json_object_get(e, "start"));
            size_t t = (size_t)json_integer_value(json_object_get(e, "end"));
            type_score *sc = score_for(type ? type : "?");
            sc->gold++;
            bool hit = false;
            for (size_t k = 0; k < n_found && !hit; k++)
                if (!matched[k] && found[k].start == s && found[k].end == t &&
                    strcmp(found[k].type, sc->name) == 0)
                    hit = matched[k] = true;
            if (hit)
                sc->correct++;
            else if (shown < show_errors) {
                shown++;
                fprintf(stderr, "missed %s [%zu,%zu) in: %s", sc->name, s, t, line);
            }
        }
        for (size_t k = 0; k < n_found; k++) {
            score_for(found[k].type)->found++;
            if (!matched[k] && shown < show_errors) {
                shown++;
                fprintf(stderr, "false %s '%.*s' in: %s", found[k].type,
                        (int)(found[k].end - found[k].start), text + found[k].start, line);
            }
        }
        free(matched);
        free(found);
        json_decref(rec);
    }
    free(line);
    fclose(f);
    return line_no;
}

static int speed(const pii_policy *policy, const char *path, double min_seconds)
{
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) {
        fprintf(stderr, "pii_eval: cannot read '%s'\n", path);
        return 1;
    }
    /* The machine is shared: the thread's CPU time is what one core spent, the wall clock
     * also counts the time other processes had the core. */
    size_t runs = 0, entities = 0;
    double t0 = seconds_of(CLOCK_MONOTONIC), c0 = seconds_of(CLOCK_THREAD_CPUTIME_ID), elapsed;
    do {
        pii_session *session;
        char *out;
        size_t out_len, n;
        pii_entity *e;
        if (ellm_pii_session_create(policy, &session) != EDGELLM_OK ||
            ellm_pii_redact(session, text, len, &out, &out_len, &e, &n) != EDGELLM_OK) {
            fprintf(stderr, "pii_eval: %s\n", edgellm_last_error());
            free(text);
            return 1;
        }
        entities = n;
        free(out);
        free(e);
        ellm_pii_session_free(session);
        runs++;
        elapsed = seconds_of(CLOCK_THREAD_CPUTIME_ID) - c0;
    } while (elapsed < min_seconds);
    double wall = seconds_of(CLOCK_MONOTONIC) - t0;
    printf("redaction speed: %.1f MB/s of CPU time on one core (%.1f MB/s by the wall clock; "
           "%.2f MB of mixed text, %zu entities, %zu runs)\n",
           (double)len * (double)runs / elapsed / 1e6, (double)len * (double)runs / wall / 1e6,
           (double)len / 1e6, entities, runs);
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    const char *set = NULL, *speed_path = NULL;
    double min_recall = 0, min_precision = 0, seconds = 1.0;
    int show_errors = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--min-recall") == 0 && i + 1 < argc)
            min_recall = atof(argv[++i]);
        else if (strcmp(argv[i], "--min-precision") == 0 && i + 1 < argc)
            min_precision = atof(argv[++i]);
        else if (strcmp(argv[i], "--errors") == 0 && i + 1 < argc)
            show_errors = atoi(argv[++i]);
        else if (strcmp(argv[i], "--speed") == 0 && i + 1 < argc)
            speed_path = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (argv[i][0] != '-' && !set)
            set = argv[i];
        else {
            fprintf(stderr, "usage: pii_eval SET.jsonl [--min-recall R] [--min-precision P] "
                            "[--errors N] [--speed TEXT [--seconds S]]\n");
            return 2;
        }
    }
    if (!set && !speed_path) {
        fprintf(stderr, "pii_eval: give a labelled set, --speed TEXT, or both\n");
        return 2;
    }
    pii_policy *policy;
    if (ellm_pii_policy_default(&policy) != EDGELLM_OK)
        return 1;
    int rc = 0;
    if (set) {
        int lines = evaluate(policy, set, show_errors);
        if (lines < 0) {
            ellm_pii_policy_free(policy);
            return 1;
        }
        printf("%d texts\n| type | labelled | found | correct | recall | precision |\n"
               "|---|---|---|---|---|---|\n",
               lines);
        for (size_t k = 0; k < n_scores; k++) {
            const type_score *s = &scores[k];
            double recall = s->gold ? (double)s->correct / (double)s->gold : 1.0;
            double precision = s->found ? (double)s->correct / (double)s->found : 1.0;
            printf("| %s | %zu | %zu | %zu | %.2f %% | %.2f %% |\n", s->name, s->gold, s->found,
                   s->correct, 100 * recall, 100 * precision);
            if (s->gold == 0 && min_recall > 0) {
                fprintf(stderr, "pii_eval: %s was found but never labelled\n", s->name);
                rc = 1;
            }
            if (recall < min_recall || precision < min_precision) {
                fprintf(stderr,
                        "pii_eval: %s below target (recall %.2f %% >= %.2f %%, precision "
                        "%.2f %% >= %.2f %% wanted)\n",
                        s->name, 100 * recall, 100 * min_recall, 100 * precision,
                        100 * min_precision);
                rc = 1;
            }
        }
    }
    if (speed_path && speed(policy, speed_path, seconds) != 0)
        rc = 1;
    ellm_pii_policy_free(policy);
    return rc;
}
