/* Store unit tests: reference parsing, SHA-256 against a known vector, signatures (round trip and
 * every field tampered), the planner against hand-computed figures, and the library-level
 * lifecycle on the shared GGUF model. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_internal.h"
#include "test_util.h"

static void test_parse_ref(void)
{
    char name[STORE_NAME_MAX], version[STORE_VERSION_MAX];
    CHECK(ellm_store_parse_ref("llama-3.2_1b:q4-v2", name, sizeof name, version, sizeof version) ==
          EDGELLM_OK);
    CHECK(strcmp(name, "llama-3.2_1b") == 0 && strcmp(version, "q4-v2") == 0);
    CHECK(ellm_store_parse_ref("plain", name, sizeof name, version, sizeof version) == EDGELLM_OK);
    CHECK(strcmp(name, "plain") == 0 && version[0] == '\0');
    const char *bad[] = {
        "", ":1", "../etc", "a/b", "a:", "a:../x", ".hidden", "a b", "a:1:2", "-x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(ellm_store_parse_ref(bad[i], name, sizeof name, version, sizeof version) !=
                      EDGELLM_OK,
                  "accepted '%s'", bad[i]);
}

static void test_sha256(void)
{
    const char *path = test_tmp_path("store_abc.txt");
    FILE *f = fopen(path, "w");
    fputs("abc", f);
    fclose(f);
    char hex[STORE_HASH_HEX];
    uint64_t size = 0;
    CHECK(ellm_store_sha256_file(path, hex, &size) == EDGELLM_OK);
    /* FIPS 180-2 test vector for "abc". */
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    CHECK(size == 3);
}

static void test_signatures(void)
{
    const char *key = test_tmp_path("store_unit.key");
    char pub_path[1024];
    snprintf(pub_path, sizeof pub_path, "%s.pub", key);
    unlink(key);
    unlink(pub_path);
    char pub[65];
    CHECK(ellm_store_keygen(key, pub) == EDGELLM_OK);
    struct stat sb;
    CHECK(stat(key, &sb) == 0 && (sb.st_mode & 077) == 0);
    CHECK(ellm_store_keygen(key, pub) != EDGELLM_OK); /* never overwrites */

    const char *model = test_shared_path("models/aidreams260K-f32.gguf");
    const char *sig_path = test_tmp_path("store_unit.sig");
    CHECK(ellm_store_sign_file(key, model, "dreams", "7", sig_path) == EDGELLM_OK);
    size_t len = 0;
    char *text = test_read_file(sig_path, &len);
    CHECK(text != NULL);
    store_signature sig;
    CHECK(text && ellm_store_signature_parse(text, len, &sig) == EDGELLM_OK);
    free(text);
    CHECK(strcmp(sig.name, "dreams") == 0 && strcmp(sig.version, "7") == 0);
    CHECK(strcmp(sig.key, pub) == 0);
    CHECK(sig.size == 1068672);
    char hex[STORE_HASH_HEX];
    CHECK(ellm_store_sha256_file(model, hex, NULL) == EDGELLM_OK && strcmp(hex, sig.sha256) == 0);
    CHECK(ellm_store_signature_check(&sig) == EDGELLM_OK);

    /* Changing any signed field invalidates it. */
    store_signature t = sig;
    snprintf(t.name, sizeof t.name, "dreamz");
    CHECK(ellm_store_signature_check(&t) != EDGELLM_OK);
    t = sig;
    snprintf(t.version, sizeof t.version, "8");
    CHECK(ellm_store_signature_check(&t) != EDGELLM_OK);
    t = sig;
    t.size++;
    CHECK(ellm_store_signature_check(&t) != EDGELLM_OK);
    t = sig;
    t.sha256[0] = t.sha256[0] == 'a' ? 'b' : 'a';
    CHECK(ellm_store_signature_check(&t) != EDGELLM_OK);
    t = sig;
    t.signature[10] = t.signature[10] == '0' ? '1' : '0';
    CHECK(ellm_store_signature_check(&t) != EDGELLM_OK);
    t = sig;
    t.key[5] = t.key[5] == '0' ? '1' : '0';
    CHECK(ellm_store_signature_check(&t) != EDGELLM_OK);
    CHECK(ellm_store_signature_parse("{\"name\": \"x\"}", 13, &t) != EDGELLM_OK);
    CHECK(ellm_store_signature_parse("not json", 8, &t) != EDGELLM_OK);
}

static void test_planner(void)
{
    store_model_shape shape;
    CHECK(ellm_store_read_shape(test_shared_path("models/aidreams260K-f32.gguf"), &shape) ==
          EDGELLM_OK);
    /* The README's figures: dim 64, hidden 172, 4 layers, 4 heads, 4 KV heads, vocab 512. */
    CHECK(shape.n_embd == 64 && shape.n_ff == 172 && shape.n_layer == 4 && shape.n_head == 4);
    CHECK(shape.n_head_kv == 4 && shape.head_dim == 16 && shape.n_vocab == 512);
    CHECK(shape.n_ctx_train == 128);
    CHECK(strcmp(shape.architecture, "llama") == 0 && strcmp(shape.quantization, "F32") == 0);
    /* F32 weights: 4 bytes per parameter. */
    CHECK(shape.weights_bytes == shape.n_params * 4);

    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL, &m) ==
          EDGELLM_OK);
    if (!m)
        return;
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 100;
    cp.n_batch = 8;
    cp.n_threads = 1;
    store_plan p16, p32;
    CHECK(ellm_store_plan_model(m, &cp, &p16) == EDGELLM_OK);
    cp.kv_type = EDGELLM_KV_F32;
    CHECK(ellm_store_plan_model(m, &cp, &p32) == EDGELLM_OK);
    cp.kv_type = EDGELLM_KV_F16;
    /* K and V, 4 layers, 100 positions, 4 heads x 16 dims. */
    CHECK(p16.kv_bytes == 2ull * 4 * 100 * 64 * 2);
    CHECK(p32.kv_bytes == 2 * p16.kv_bytes);
    CHECK(p16.weights_bytes == shape.weights_bytes);
    CHECK(p16.total_bytes ==
          p16.weights_bytes + p16.kv_bytes + p16.scratch_bytes + p16.overhead_bytes);
    /* Past the model's context the engine refuses, and so does the plan. */
    cp.n_ctx = 129;
    CHECK(ellm_store_plan_model(m, &cp, &p32) == EDGELLM_ERR_INVALID_ARGUMENT);
    cp.n_ctx = 100;

    /* The largest context that fits is the boundary: it fits, one more does not. */
    uint64_t budget = p16.total_bytes + 10;
    int32_t max_ctx = ellm_store_plan_max_context(m, &cp, budget, 128);
    store_plan fit, over;
    cp.n_ctx = max_ctx;
    CHECK(ellm_store_plan_model(m, &cp, &fit) == EDGELLM_OK);
    cp.n_ctx = max_ctx + 1;
    CHECK(ellm_store_plan_model(m, &cp, &over) == EDGELLM_OK);
    CHECK(max_ctx >= 100 && fit.total_bytes <= budget && over.total_bytes > budget);
    CHECK(ellm_store_plan_max_context(m, &cp, shape.weights_bytes / 2, 128) == 0);
    CHECK(ellm_store_plan_max_context(m, &cp, 1ull << 40, 128) == 128);

    /* The same shape without the file (recommend's size classes) goes through the same layout. */
    store_plan as_shape;
    cp.n_ctx = 100;
    CHECK(ellm_store_plan_shape(&shape, &cp, &as_shape) == EDGELLM_OK);
    CHECK(as_shape.kv_bytes == p16.kv_bytes && as_shape.scratch_bytes == p16.scratch_bytes &&
          as_shape.total_bytes == p16.total_bytes);
    edgellm_model_free(m);
    CHECK(ellm_store_machine_ram() > 0);
}

/* A store opened on root after removing whatever an earlier run left there (NULL on failure). */
static store *open_empty_store(const char *root)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    store *s = NULL;
    CHECK(ellm_store_open(root, &s) == EDGELLM_OK);
    return s;
}

static void test_library_lifecycle(void)
{
    const char *root = test_tmp_path("store_unit_home");
    store *s = open_empty_store(root);
    if (!s)
        return;
    const char *model = test_shared_path("models/aidreams260K-f32.gguf");
    store_install_options opts = {.allow_unsigned = true, .activate = true};
    char version[STORE_VERSION_MAX];
    CHECK(ellm_store_install(s, "m", "", model, &opts, version, sizeof version) == EDGELLM_OK);
    CHECK(strcmp(version, "1") == 0);
    /* Same bytes under a new version share one blob. */
    CHECK(ellm_store_install(s, "m", "b", model, &opts, version, sizeof version) == EDGELLM_OK);
    store_model m;
    CHECK(ellm_store_get_model(s, "m", &m) == EDGELLM_OK);
    CHECK(m.n_versions == 2 && strcmp(m.active, "b") == 0 && strcmp(m.previous, "1") == 0);
    CHECK(strcmp(m.versions[0].sha256, m.versions[1].sha256) == 0);
    ellm_store_model_clear(&m);
    char now[STORE_VERSION_MAX];
    CHECK(ellm_store_rollback(s, "m", now, sizeof now) == EDGELLM_OK && strcmp(now, "1") == 0);
    CHECK(ellm_store_activate(s, "m", "nope") == EDGELLM_ERR_NOT_FOUND);
    CHECK(ellm_store_remove(s, "m", "1", false) != EDGELLM_OK); /* active */
    CHECK(ellm_store_remove(s, "m", "b", false) == EDGELLM_OK);
    uint64_t files = 0, bytes = 0;
    CHECK(ellm_store_gc(s, &files, &bytes) == EDGELLM_OK);
    CHECK(files == 0); /* the blob is still referenced by version 1 */
    char path[2048];
    CHECK(ellm_store_model_path(s, "m", path, sizeof path) == EDGELLM_OK);
    char hex[STORE_HASH_HEX], want[STORE_HASH_HEX];
    CHECK(ellm_store_sha256_file(path, hex, NULL) == EDGELLM_OK);
    CHECK(ellm_store_sha256_file(model, want, NULL) == EDGELLM_OK && strcmp(hex, want) == 0);
    CHECK(ellm_store_remove(s, "m", "", false) == EDGELLM_OK);
    CHECK(ellm_store_gc(s, &files, &bytes) == EDGELLM_OK && files == 1 && bytes == 1068672);
    CHECK(ellm_store_get_model(s, "m", &m) == EDGELLM_ERR_NOT_FOUND);
    ellm_store_close(s);

    /* Resolution: an existing path is used as is; a name goes through $EDGELLM_HOME. */
    setenv("EDGELLM_HOME", root, 1);
    CHECK(ellm_store_resolve_model(model, path, sizeof path) == EDGELLM_OK &&
          strcmp(path, model) == 0);
    CHECK(ellm_store_resolve_model("m", path, sizeof path) == EDGELLM_ERR_NOT_FOUND);
    CHECK(ellm_store_open(root, &s) == EDGELLM_OK);
    CHECK(ellm_store_install(s, "m", "3", model, &opts, version, sizeof version) == EDGELLM_OK);
    ellm_store_close(s);
    CHECK(ellm_store_resolve_model("m", path, sizeof path) == EDGELLM_OK &&
          strstr(path, want) != NULL);
    CHECK(ellm_store_resolve_model("m:3", path, sizeof path) == EDGELLM_OK &&
          strstr(path, want) != NULL);
    CHECK(ellm_store_resolve_model("m:4", path, sizeof path) == EDGELLM_ERR_NOT_FOUND);
}

/* Text from files and users that reaches paths, trusted-keys and terminals (issue 11). */
static void test_hostile_text(void)
{
    const char *sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    CHECK(ellm_st_valid_sha256(sha));
    CHECK(
        !ellm_st_valid_sha256("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
    CHECK(!ellm_st_valid_sha256("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"));
    CHECK(
        !ellm_st_valid_sha256("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015add"));
    CHECK(
        !ellm_st_valid_sha256("../../../../../../../../../../../.././././././././././etc/passwd"));

    char out[16];
    ellm_st_escape_controls("a\nb\\c\x1b", out, sizeof out);
    CHECK_MSG(strcmp(out, "a\\x0ab\\x5cc\\x1b") == 0, "escaped to '%s'", out);
    ellm_st_escape_controls("abcdefgh\n", out,
                            11); /* no room for the whole escape: cut before it */
    CHECK_MSG(strcmp(out, "abcdefgh") == 0, "cut to '%s'", out);

    store_signature sig;
    char json[512];
    int n = snprintf(json, sizeof json,
                     "{\"name\": \"m\", \"version\": \"1\", \"sha256\": \"%s\", "
                     "\"size\": 1, \"key\": \"%064d\", \"signature\": \"%0128d\"}",
                     sha, 0, 0);
    CHECK(ellm_store_signature_parse(json, (size_t)n, &sig) == EDGELLM_OK);
    n = snprintf(json, sizeof json,
                 "{\"name\": \"m\", \"version\": \"1\", \"sha256\": \"%s\", "
                 "\"size\": 1, \"key\": \"%064d\", \"signature\": \"%0128d\"}",
                 "../../../../../../../../../../../.././././././././././etc/passwd", 0, 0);
    CHECK(ellm_store_signature_parse(json, (size_t)n, &sig) != EDGELLM_OK);
    n = snprintf(json, sizeof json,
                 "{\"name\": \"m\\u001b[2J\", \"version\": \"1\", \"sha256\": "
                 "\"%s\", \"size\": 1, \"key\": \"%064d\", \"signature\": \"%0128d\"}",
                 sha, 0, 0);
    CHECK(ellm_store_signature_parse(json, (size_t)n, &sig) != EDGELLM_OK);
    CHECK(strchr(edgellm_last_error(), 0x1b) == NULL);

    /* A comment holding a newline and a key line stays a comment. */
    const char *root = test_tmp_path("store_unit_trust");
    store *s = open_empty_store(root);
    if (!s)
        return;
    const char *key1 = "1111111111111111111111111111111111111111111111111111111111111111";
    const char *key2 = "2222222222222222222222222222222222222222222222222222222222222222";
    char comment[200];
    snprintf(comment, sizeof comment, "/tmp/x\ned25519 %s y/k.pub", key2);
    CHECK(ellm_store_trust_key(s, key1, comment) == EDGELLM_OK);
    bool trusted = false;
    CHECK(ellm_store_key_trusted(s, key1, &trusted) == EDGELLM_OK && trusted);
    CHECK(ellm_store_key_trusted(s, key2, &trusted) == EDGELLM_OK && !trusted);
    CHECK(ellm_store_trust_key(s, key1, "again") == EDGELLM_OK); /* already there: no second line */
    char path[1100];
    snprintf(path, sizeof path, "%s/trusted-keys", root);
    size_t len = 0;
    char *text = test_read_file(path, &len);
    CHECK(text && memchr(text, '\n', len) == text + len - 1); /* exactly one line */
    free(text);
    CHECK(ellm_store_key_trusted(s, "not hex", &trusted) != EDGELLM_OK);
    ellm_store_close(s);
}

/* A manifest that parses but lost the entry of its active version was damaged: gc must keep the
 * blob that entry referenced, as it does for a manifest it cannot parse. */
static void test_gc_damaged_manifest(void)
{
    const char *root = test_tmp_path("store_unit_gc_damaged");
    store *s = open_empty_store(root);
    if (!s)
        return;
    const char *model = test_shared_path("models/aidreams260K-f32.gguf");
    store_install_options opts = {.allow_unsigned = true, .activate = true};
    char version[STORE_VERSION_MAX], blob[2048];
    CHECK(ellm_store_install(s, "m", "1", model, &opts, version, sizeof version) == EDGELLM_OK);
    CHECK(ellm_store_model_path(s, "m", blob, sizeof blob) == EDGELLM_OK);
    char manifest[1100];
    snprintf(manifest, sizeof manifest, "%s/models/m/manifest.json", root);
    FILE *f = fopen(manifest, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"name\": \"m\", \"active\": \"1\", \"previous\": \"\", \"pinned\": false, "
              "\"versions\": []}",
              f);
        fclose(f);
    }
    uint64_t files = 0, bytes = 0;
    CHECK(ellm_store_gc(s, &files, &bytes) != EDGELLM_OK && files == 0);
    CHECK_MSG(strstr(edgellm_last_error(), "does not list") != NULL, "error: %s",
              edgellm_last_error());
    CHECK(access(blob, F_OK) == 0);
    ellm_store_close(s);
}

int main(void)
{
    test_parse_ref();
    test_sha256();
    test_signatures();
    test_hostile_text();
    test_planner();
    test_library_lifecycle();
    test_gc_damaged_manifest();
    return test_finish("test_store");
}
