/* Publisher signatures: Ed25519 over a canonical statement binding name, version, size and the
 * SHA-256 of the file, so a signed file cannot be installed under another name or version. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapped_file.h"
#include "core/status.h"
#include "store/store_internal.h"

static edgellm_status statement(const char *name, const char *version, const char *sha256,
                                uint64_t size, char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "edgellm-model-signature-v1\nname=%s\nversion=%s\nsha256=%s\nsize=%llu\n",
                     name, version, sha256, (unsigned long long)size);
    if (n < 0 || (size_t)n >= cap)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "signature statement too long");
    return EDGELLM_OK;
}

static char *read_small(const char *path, size_t limit, size_t *len_out)
{
    FILE *f = ellm_fopen_regular(path);
    if (!f)
        return NULL;
    char *buf = malloc(limit + 1);
    size_t n = buf ? fread(buf, 1, limit, f) : 0;
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    if (len_out)
        *len_out = n;
    return buf;
}

edgellm_status ellm_store_keygen(const char *secret_path, char pub_hex_out[65])
{
    if (sodium_init() < 0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "libsodium failed to initialize");
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    unsigned char seed[crypto_sign_SEEDBYTES];
    randombytes_buf(seed, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    char seed_hex[2 * crypto_sign_SEEDBYTES + 1], pub_hex[2 * crypto_sign_PUBLICKEYBYTES + 1];
    sodium_bin2hex(seed_hex, sizeof seed_hex, seed, sizeof seed);
    sodium_bin2hex(pub_hex, sizeof pub_hex, pk, sizeof pk);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(seed, sizeof seed);

    char pub_path[1100];
    edgellm_status st = ellm_st_path(pub_path, sizeof pub_path, "%s.pub", secret_path);
    if (st != EDGELLM_OK)
        return st;
    int fd = open(secret_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return ellm_fail(EDGELLM_ERR_IO,
                         "cannot create %s: %s (an existing key is never overwritten)", secret_path,
                         strerror(errno));
    char line[100];
    int n = snprintf(line, sizeof line, "ed25519-secret %s\n", seed_hex);
    sodium_memzero(seed_hex, sizeof seed_hex);
    ssize_t w = write(fd, line, (size_t)n);
    sodium_memzero(line, sizeof line);
    if (w != n || fsync(fd) != 0) {
        int err = errno;
        close(fd);
        unlink(secret_path);
        return ellm_fail(EDGELLM_ERR_IO, "cannot write %s: %s", secret_path, strerror(err));
    }
    close(fd);

    char pub_line[100];
    n = snprintf(pub_line, sizeof pub_line, "ed25519 %s\n", pub_hex);
    st = ellm_st_replace_file(pub_path, pub_line, (size_t)n);
    if (st != EDGELLM_OK) {
        /* A secret whose public half was never written cannot be trusted by anyone, and it
         * would make the rerun refuse to overwrite it. */
        unlink(secret_path);
        return ellm_fail_wrap(st, "no key was made (%s removed again)", secret_path);
    }
    memcpy(pub_hex_out, pub_hex, sizeof pub_hex);
    return EDGELLM_OK;
}

static edgellm_status load_secret(const char *secret_path,
                                  unsigned char sk[crypto_sign_SECRETKEYBYTES],
                                  unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
    size_t len = 0;
    char *text = read_small(secret_path, 4096, &len);
    if (!text)
        return ellm_fail_wrap(EDGELLM_ERR_IO, "cannot read the key");
    char seed_hex[2 * crypto_sign_SEEDBYTES + 1] = {0};
    unsigned char seed[crypto_sign_SEEDBYTES];
    bool ok = sscanf(text, "ed25519-secret %64s", seed_hex) == 1 &&
              ellm_st_unhex(seed_hex, seed, sizeof seed);
    sodium_memzero(text, len);
    free(text);
    if (!ok)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s is not an edgellm secret key (make one with 'edgellm models keygen')",
                         secret_path);
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(seed_hex, sizeof seed_hex);
    return EDGELLM_OK;
}

edgellm_status ellm_store_sign_file(const char *secret_path, const char *file, const char *name,
                                    const char *version, const char *sig_path)
{
    if (sodium_init() < 0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "libsodium failed to initialize");
    char check_name[STORE_NAME_MAX], check_version[STORE_VERSION_MAX], ref[256];
    snprintf(ref, sizeof ref, "%s:%s", name, version);
    edgellm_status st = ellm_store_parse_ref(ref, check_name, sizeof check_name, check_version,
                                             sizeof check_version);
    if (st != EDGELLM_OK)
        return st;
    if (version[0] == '\0')
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "a signature needs a version (NAME:VERSION)");
    unsigned char sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
    st = load_secret(secret_path, sk, pk);
    if (st != EDGELLM_OK)
        return st;
    char sha[STORE_HASH_HEX];
    uint64_t size = 0;
    st = ellm_store_sha256_file(file, sha, &size);
    char text[1024];
    if (st == EDGELLM_OK)
        st = statement(name, version, sha, size, text, sizeof text);
    if (st != EDGELLM_OK) {
        sodium_memzero(sk, sizeof sk);
        return st;
    }
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const unsigned char *)text, strlen(text), sk);
    sodium_memzero(sk, sizeof sk);
    char sig_hex[2 * crypto_sign_BYTES + 1], pk_hex[2 * crypto_sign_PUBLICKEYBYTES + 1];
    sodium_bin2hex(sig_hex, sizeof sig_hex, sig, sizeof sig);
    sodium_bin2hex(pk_hex, sizeof pk_hex, pk, sizeof pk);

    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s}", "format", "edgellm-signature-v1",
                            "name", name, "version", version, "sha256", sha, "size",
                            (json_int_t)size, "key", pk_hex, "signature", sig_hex);
    char *json = obj ? json_dumps(obj, JSON_INDENT(2)) : NULL;
    json_decref(obj);
    if (!json)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory writing a signature");
    FILE *f = fopen(sig_path, "w");
    if (!f) {
        free(json);
        return ellm_fail(EDGELLM_ERR_IO, "cannot create %s: %s", sig_path, strerror(errno));
    }
    fputs(json, f);
    fputc('\n', f);
    free(json);
    if (fclose(f) != 0)
        return ellm_fail(EDGELLM_ERR_IO, "cannot write %s: %s", sig_path, strerror(errno));
    return EDGELLM_OK;
}

static bool copy_field(json_t *obj, const char *key, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(obj, key));
    if (!v || strlen(v) >= cap)
        return false;
    memcpy(out, v, strlen(v) + 1);
    return true;
}

edgellm_status ellm_store_signature_parse(const char *json_text, size_t len, store_signature *out)
{
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *obj = json_loadb(json_text, len, 0, &err);
    if (!obj || !json_is_object(obj)) {
        json_decref(obj);
        return ellm_fail(EDGELLM_ERR_FORMAT, "signature is not valid JSON (line %d: %s)", err.line,
                         err.text);
    }
    json_t *size = json_object_get(obj, "size");
    bool ok = copy_field(obj, "name", out->name, sizeof out->name) &&
              copy_field(obj, "version", out->version, sizeof out->version) &&
              copy_field(obj, "sha256", out->sha256, sizeof out->sha256) &&
              copy_field(obj, "key", out->key, sizeof out->key) &&
              copy_field(obj, "signature", out->signature, sizeof out->signature) &&
              json_is_integer(size) && json_integer_value(size) >= 0;
    if (ok)
        out->size = (uint64_t)json_integer_value(size);
    json_decref(obj);
    if (!ok)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "signature lacks one of name, version, sha256, size, key, signature");
    /* Its fields reach messages, the manifest and (the hash) a blob path: the forms the store
     * writes, nothing else. */
    if (!ellm_st_valid_token(out->name, strlen(out->name)) ||
        !ellm_st_valid_token(out->version, strlen(out->version)))
        return ellm_fail(EDGELLM_ERR_FORMAT, "signature name or version is not a model name or "
                                             "version (letters, digits, '.', '_', '-')");
    if (!ellm_st_valid_sha256(out->sha256) ||
        !ellm_st_valid_hex(out->key, crypto_sign_PUBLICKEYBYTES) ||
        !ellm_st_valid_hex(out->signature, crypto_sign_BYTES))
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "signature sha256, key or signature is not lowercase hex of the right "
                         "length (64, 64 and 128 digits)");
    return EDGELLM_OK;
}

edgellm_status ellm_store_signature_check(const store_signature *sig)
{
    if (sodium_init() < 0)
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED, "libsodium failed to initialize");
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sigb[crypto_sign_BYTES], digest[32];
    if (!ellm_st_unhex(sig->key, pk, sizeof pk))
        return ellm_fail(EDGELLM_ERR_FORMAT, "signature key is not 64 hex digits");
    if (!ellm_st_unhex(sig->signature, sigb, sizeof sigb))
        return ellm_fail(EDGELLM_ERR_FORMAT, "signature is not 128 hex digits");
    if (!ellm_st_unhex(sig->sha256, digest, sizeof digest))
        return ellm_fail(EDGELLM_ERR_FORMAT, "signature sha256 is not 64 hex digits");
    char text[1024];
    edgellm_status st = statement(sig->name, sig->version, sig->sha256, sig->size, text,
                                  sizeof text);
    if (st != EDGELLM_OK)
        return st;
    if (crypto_sign_verify_detached(sigb, (const unsigned char *)text, strlen(text), pk) != 0)
        return ellm_fail(
            EDGELLM_ERR_FORMAT,
            "bad signature: the Ed25519 signature does not match %s:%s (sha256 %.12s...) "
            "under key %.16s...; the file or its signature was altered",
            sig->name, sig->version, sig->sha256, sig->key);
    return EDGELLM_OK;
}

/* trusted-keys is small (one line per publisher); a bigger file is not one the store wrote. */
enum { TRUSTED_FILE_MAX = 1 << 20, TRUST_COMMENT_MAX = 1024 };

/* Reads the whole trusted-keys file into a malloc'd NUL-terminated buffer ("" when absent). */
static edgellm_status read_trusted_file(const char *path, char **text_out, size_t *len_out)
{
    *text_out = NULL;
    FILE *f = ellm_fopen_regular(path);
    if (!f && errno == ENOENT) {
        ellm_clear_error();
        *text_out = calloc(1, 1);
        *len_out = 0;
        return *text_out ? EDGELLM_OK : ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (!f)
        return EDGELLM_ERR_IO;
    char *text = malloc(TRUSTED_FILE_MAX + 1);
    size_t len = text ? fread(text, 1, TRUSTED_FILE_MAX + 1, f) : 0;
    bool failed = text && ferror(f);
    fclose(f);
    if (!text)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
    if (failed || len > TRUSTED_FILE_MAX) {
        free(text);
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         failed ? "cannot read %s"
                                : "%s is larger than 1 MiB: "
                                  "not a trusted-keys file the store wrote; check it",
                         path);
    }
    text[len] = '\0';
    *text_out = text;
    *len_out = len;
    return EDGELLM_OK;
}

/* Whether line (len bytes, no newline) lists pk. Each line is taken whole: a key can only come
 * from the second field of a line of its own. */
static edgellm_status parse_trusted_line(const char *path, size_t line_no, const char *line,
                                         size_t len,
                                         const unsigned char pk[crypto_sign_PUBLICKEYBYTES],
                                         bool *match)
{
    *match = false;
    if (len + 1 > STORE_TRUSTED_LINE_MAX)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s line %zu is longer than %d bytes: not a line the store wrote; "
                         "correct or delete it",
                         path, line_no, STORE_TRUSTED_LINE_MAX);
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f)
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "%s line %zu holds a control character (byte %zu): correct or "
                             "delete that line",
                             path, line_no, i + 1);
    size_t at = 0;
    while (at < len && (line[at] == ' ' || line[at] == '\t'))
        at++;
    if (at == len || line[at] == '#')
        return EDGELLM_OK;
    const size_t hex_len = 2 * crypto_sign_PUBLICKEYBYTES;
    char hex[2 * crypto_sign_PUBLICKEYBYTES + 1];
    unsigned char key[crypto_sign_PUBLICKEYBYTES];
    bool ok = len - at > 8 && memcmp(line + at, "ed25519", 7) == 0 &&
              (line[at + 7] == ' ' || line[at + 7] == '\t');
    if (ok) {
        at += 8;
        while (at < len && (line[at] == ' ' || line[at] == '\t'))
            at++;
        ok = len - at >= hex_len &&
             (len - at == hex_len || line[at + hex_len] == ' ' || line[at + hex_len] == '\t');
    }
    if (ok) {
        memcpy(hex, line + at, hex_len);
        hex[hex_len] = '\0';
        ok = ellm_st_unhex(hex, key, sizeof key);
    }
    if (!ok)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "%s line %zu is not \"ed25519 <64 hex digits> [comment]\": correct or "
                         "delete that line",
                         path, line_no);
    *match = memcmp(key, pk, sizeof key) == 0;
    return EDGELLM_OK;
}

/* Parses all of text (every line is checked, so a bad file is reported whatever it holds). */
static edgellm_status trusted_text_has(const char *path, const char *text, size_t len,
                                       const unsigned char pk[crypto_sign_PUBLICKEYBYTES],
                                       bool *found)
{
    *found = false;
    size_t line_no = 0;
    for (size_t start = 0; start < len;) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (memchr(text + start, '\0', end - start))
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "%s line %zu holds a NUL byte: correct or delete "
                             "that line",
                             path, line_no + 1);
        bool match = false;
        edgellm_status st = parse_trusted_line(path, ++line_no, text + start, end - start, pk,
                                               &match);
        if (st != EDGELLM_OK)
            return st;
        *found = *found || match;
        start = end + 1;
    }
    return EDGELLM_OK;
}

static edgellm_status parse_public_key(const char *key_hex,
                                       unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
    if (!ellm_st_unhex(key_hex, pk, crypto_sign_PUBLICKEYBYTES))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "not an Ed25519 public key (64 hex digits): give the key or the "
                         "KEYFILE.pub that 'edgellm models keygen' wrote");
    return EDGELLM_OK;
}

edgellm_status ellm_store_key_trusted(store *s, const char *key_hex, bool *trusted)
{
    *trusted = false;
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char path[1100];
    edgellm_status st = parse_public_key(key_hex, pk);
    if (st == EDGELLM_OK)
        st = ellm_st_path(path, sizeof path, "%s/trusted-keys", s->root);
    char *text = NULL;
    size_t len = 0;
    if (st == EDGELLM_OK)
        st = read_trusted_file(path, &text, &len);
    if (st == EDGELLM_OK)
        st = trusted_text_has(path, text, len, pk, trusted);
    free(text);
    return st;
}

edgellm_status ellm_store_trust_key(store *s, const char *key_hex, const char *comment)
{
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char path[1100];
    edgellm_status st = parse_public_key(key_hex, pk);
    if (st == EDGELLM_OK)
        st = ellm_st_path(path, sizeof path, "%s/trusted-keys", s->root);
    if (st != EDGELLM_OK)
        return st;
    /* The comment is the user's, often a path: escaped so no byte of it can end the line, and
     * cut so the line stays within what the reader accepts. */
    char escaped[TRUST_COMMENT_MAX + 1];
    ellm_st_escape_controls(comment ? comment : "", escaped, sizeof escaped);
    char hex[2 * crypto_sign_PUBLICKEYBYTES + 1];
    sodium_bin2hex(hex, sizeof hex, pk, sizeof pk);
    char line[16 + sizeof hex + sizeof escaped];
    snprintf(line, sizeof line, "ed25519 %s%s%s\n", hex, escaped[0] ? " " : "", escaped);

    st = ellm_st_lock_store(s);
    if (st != EDGELLM_OK)
        return st;
    char *text = NULL, *grown = NULL;
    size_t len = 0;
    bool found = false;
    st = read_trusted_file(path, &text, &len);
    if (st == EDGELLM_OK)
        st = trusted_text_has(path, text, len, pk, &found);
    if (st == EDGELLM_OK && !found) {
        bool needs_newline = len > 0 && text[len - 1] != '\n';
        size_t line_len = strlen(line);
        grown = malloc(len + 1 + line_len + 1);
        if (!grown)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "out of memory");
        else {
            memcpy(grown, text, len);
            size_t at = len;
            if (needs_newline)
                grown[at++] = '\n';
            memcpy(grown + at, line, line_len);
            st = ellm_st_write_atomic(s->root, "trusted-keys", grown, at + line_len);
        }
    }
    ellm_st_unlock_store(s);
    free(text);
    free(grown);
    return st;
}
