/* The on-device model store: content-addressed blobs, per-name manifests of versions with an
 * active pointer, signed installs, and the memory planner.
 *
 * Layout under the root ($EDGELLM_HOME, default ~/.local/share/edgellm):
 *   blobs/sha256/<hex>           model files, named by their SHA-256, read-only
 *   models/<name>/manifest.json  versions of <name>, the active and previous version, pin flag
 *   tmp/                         downloads and copies in progress (never referenced)
 *   lock                         flock()ed by every process that changes the store
 *   trusted-keys                 one Ed25519 public key per line: "ed25519 <hex> [comment]"
 *
 * Crash safety: every file becomes visible only through rename() of a fully written, fsynced
 * temporary in the same directory, so a manifest is always either the old or the new one, and a
 * blob is referenced only after it is complete. Orphans left by a crash are removed by gc. */
#ifndef EDGELLM_STORE_H
#define EDGELLM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgellm.h"

#define STORE_HASH_HEX 65 /* 64 hex digits + NUL */
#define STORE_NAME_MAX 128
#define STORE_VERSION_MAX 64

typedef struct store store;

typedef struct store_version {
    char version[STORE_VERSION_MAX];
    char sha256[STORE_HASH_HEX];
    uint64_t size;
    char architecture[32];
    char quantization[16];
    uint64_t n_params;
    uint32_t context_length;
    uint64_t min_ram_bytes; /* weights + KV cache at 512 tokens (F16) + scratch */
    char source[512];
    char signed_by[65];   /* hex public key, "" when installed with --allow-unsigned */
    char signature[129];  /* hex Ed25519 signature, "" when unsigned */
    int64_t installed_at; /* unix seconds */
} store_version;

typedef struct store_model {
    char name[STORE_NAME_MAX];
    char active[STORE_VERSION_MAX];   /* "" when nothing is active */
    char previous[STORE_VERSION_MAX]; /* what rollback returns to; "" when none */
    bool pinned;
    store_version *versions;
    size_t n_versions;
} store_model;

void ellm_store_model_clear(store_model *model);
const store_version *ellm_store_model_find(const store_model *model, const char *version);

/* The root directory: $EDGELLM_HOME, else $XDG_DATA_HOME/edgellm, else ~/.local/share/edgellm. */
edgellm_status ellm_store_default_root(char *out, size_t cap);

/* Opens (creating the directories if needed) the store at root. */
edgellm_status ellm_store_open(const char *root, store **out);
void ellm_store_close(store *s);
const char *ellm_store_root(const store *s);

/* Splits "NAME[:VERSION]"; version_out is "" when absent. Names and versions are validated
 * ([A-Za-z0-9._-], not starting with '.'). */
edgellm_status ellm_store_parse_ref(const char *ref, char *name_out, size_t name_cap,
                                    char *version_out, size_t version_cap);

typedef struct store_install_options {
    const char *sig;     /* signature file path or URL; NULL: FROM.sig */
    bool allow_unsigned; /* install without a signature when none is found */
    bool activate;       /* make it active (unless the name is pinned) */
    bool progress;       /* draw a progress bar on stderr */
    int max_retries;     /* download attempts after a dropped connection (0: 5; < 0: none) */
    /* Receives one-line notes the user should see while the install goes on (a download that
     * had to restart from byte 0); NULL drops them. */
    void (*notice)(void *user, const char *message);
    void *notice_user;
} store_install_options;

/* Installs FROM (local path or http(s) URL) as name:version (version "" = from the signature,
 * else the next integer). Nothing becomes visible unless the hash and signature check out and the
 * model loads. Copies left in tmp/ by installs that were killed are deleted first.
 * installed_version_out (may be NULL) receives the version. */
edgellm_status ellm_store_install(store *s, const char *name, const char *version, const char *from,
                                  const store_install_options *opts, char *installed_version_out,
                                  size_t cap);

/* Loads a model's manifest (EDGELLM_ERR_NOT_FOUND when the name is not installed). */
edgellm_status ellm_store_get_model(store *s, const char *name, store_model *out);
/* Names of installed models, malloc'd array of malloc'd strings, sorted. */
edgellm_status ellm_store_list_names(store *s, char ***names_out, size_t *count_out);
void ellm_store_free_names(char **names, size_t count);

edgellm_status ellm_store_activate(store *s, const char *name, const char *version);
edgellm_status ellm_store_rollback(store *s, const char *name, char *now_active_out, size_t cap);
edgellm_status ellm_store_pin(store *s, const char *name, bool pinned);
/* Removes one version (version "" removes the whole name). The active version can only be
 * removed together with the whole name or when force is set. */
edgellm_status ellm_store_remove(store *s, const char *name, const char *version, bool force);
/* Deletes blobs no manifest references and stale temporaries; counts what it freed. */
edgellm_status ellm_store_gc(store *s, uint64_t *files_removed, uint64_t *bytes_freed);

typedef void (*store_verify_report_fn)(void *user, const char *name, const char *version,
                                       const char *problem /* NULL when fine */);
/* Re-hashes every referenced blob; *n_bad counts corrupt or missing ones. */
edgellm_status ellm_store_verify(store *s, store_verify_report_fn report, void *user,
                                 size_t *n_bad);

/* Path of the blob of name[:version] (the active version when none is given). */
edgellm_status ellm_store_model_path(store *s, const char *ref, char *path_out, size_t cap);

/* For `edgellm run -m X`: an existing file path is returned as is; otherwise X is looked up as
 * NAME[:VERSION] in the default store. */
edgellm_status ellm_store_resolve_model(const char *name_or_path, char *path_out, size_t cap);

/* ---- Hashing and signatures ---------------------------------------------------------- */

edgellm_status ellm_store_sha256_file(const char *path, char hex_out[STORE_HASH_HEX],
                                      uint64_t *size);

/* Writes a new key pair: secret_path (mode 0600, hex seed) and secret_path + ".pub". */
edgellm_status ellm_store_keygen(const char *secret_path, char pub_hex_out[65]);
/* Signs file as name:version into sig_path (JSON). */
edgellm_status ellm_store_sign_file(const char *secret_path, const char *file, const char *name,
                                    const char *version, const char *sig_path);

typedef struct store_signature {
    char name[STORE_NAME_MAX];
    char version[STORE_VERSION_MAX];
    char sha256[STORE_HASH_HEX];
    uint64_t size;
    char key[65];
    char signature[129];
} store_signature;

edgellm_status ellm_store_signature_parse(const char *json_text, size_t len, store_signature *out);
/* Checks the Ed25519 signature itself (not whether the key is trusted). */
edgellm_status ellm_store_signature_check(const store_signature *sig);
/* Whether key_hex is listed in the store's trusted-keys file. A file that does not parse (a line
 * that is not blank, a '#' comment or "ed25519 <64 hex> [comment]", or longer than
 * STORE_TRUSTED_LINE_MAX) is an error, never a partial answer. */
#define STORE_TRUSTED_LINE_MAX 4096
edgellm_status ellm_store_key_trusted(store *s, const char *key_hex, bool *trusted);
/* Adds key_hex to trusted-keys (atomically, under the store lock); comment is written with its
 * control characters escaped and cut to fit the line limit. */
edgellm_status ellm_store_trust_key(store *s, const char *key_hex, const char *comment);

/* ---- Memory planner ------------------------------------------------------------------ */

typedef struct store_model_shape {
    char architecture[32];
    char quantization[16];
    uint64_t n_params;
    uint64_t weights_bytes;
    uint64_t file_bytes;
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
} store_model_shape;

edgellm_status ellm_store_read_shape(const char *gguf_path, store_model_shape *out);

typedef struct store_plan {
    uint64_t weights_bytes;
    uint64_t kv_bytes;
    uint64_t scratch_bytes;
    uint64_t overhead_bytes; /* runtime, vocabulary tables, allocator slack */
    uint64_t total_bytes;
} store_plan;

/* The plan for one context of a loaded model (params NULL: the defaults). Weights, KV cache and
 * scratch are the engine's own figures (edgellm_context_estimate_memory: what
 * edgellm_context_create allocates with these parameters, by the same layout, pruned layers and
 * every cache type included); the overhead is the process's around it. Fails as context creation
 * would (a context longer than the model's, a cache type the model cannot hold). */
edgellm_status ellm_store_plan_model(const edgellm_model *model,
                                     const edgellm_context_params *params, store_plan *out);
/* The plan for a model that is not at hand (recommend's size classes): the shape's
 * hyper-parameters with every matrix of its quantization, through the same engine layout. A shape
 * without a training context needs params->n_ctx. */
edgellm_status ellm_store_plan_shape(const store_model_shape *shape,
                                     const edgellm_context_params *params, store_plan *out);
/* Largest context (<= limit) whose plan with params fits in budget; 0 when not even 1 token
 * fits. */
int32_t ellm_store_plan_max_context(const edgellm_model *model,
                                    const edgellm_context_params *params, uint64_t budget,
                                    int32_t limit);
/* Bytes of usable RAM on this machine (MemAvailable, else total physical). */
uint64_t ellm_store_machine_ram(void);

#endif
