/* PII detectors (positives and near-misses per type), placeholder stability, redact -> restore
 * round trips, the streaming restorer at every chunk boundary, user terms and patterns, and
 * hostile policies. */
#define _POSIX_C_SOURCE 200809L /* strdup, strndup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/pii.h"
#include "gateway/pii_internal.h" /* ellm_pii_iban_valid */
#include "test_util.h"

static pii_policy *default_policy;

/* "TYPE=value|TYPE=value" for the entities found in text. */
static char *describe(const pii_policy *policy, const char *text)
{
    pii_entity *e;
    size_t n;
    if (ellm_pii_scan(policy, text, strlen(text), &e, &n) != EDGELLM_OK)
        return strdup("(error)");
    size_t cap = 64 + 2 * strlen(text) + 48 * n;
    char *out = calloc(1, cap);
    for (size_t k = 0; k < n; k++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s=%.*s", k ? "|" : "", e[k].type,
                 (int)(e[k].end - e[k].start), text + e[k].start);
    free(e);
    return out;
}

static void expect_with(int line, const pii_policy *policy, const char *text, const char *want)
{
    char *got = describe(policy, text);
    test_checks++;
    if (strcmp(got, want) != 0) {
        test_failures++;
        fprintf(stderr, "%s:%d: in \"%s\"\n  found    \"%s\"\n  expected \"%s\"\n", __FILE__, line,
                text, got, want);
    }
    free(got);
}
#define EXPECT(text, want) expect_with(__LINE__, default_policy, text, want)
#define NOTHING(text) expect_with(__LINE__, default_policy, text, "")

static void test_email(void)
{
    EXPECT("write to alice.smith+news@mail.example.co.uk.",
           "EMAIL=alice.smith+news@mail.example.co.uk");
    EXPECT("<Bob_Jones99@example.org> wrote:", "EMAIL=Bob_Jones99@example.org");
    EXPECT("a@b.io, c-d@e-f.com", "EMAIL=a@b.io|EMAIL=c-d@e-f.com");
    NOTHING("mail user@localhost about it");
    NOTHING("use logo@2x.png on retina screens");
    NOTHING("follow @alice and @bob");
    NOTHING("npm install left-pad@1.3.0");
    NOTHING("clone ssh://git@example.com/team/repo.git");
    NOTHING("a..b@example.com is not an address");
}

static void test_phone(void)
{
    EXPECT("call +1 (202) 555-0143 now", "PHONE=+1 (202) 555-0143");
    EXPECT("call 202-555-0143.", "PHONE=202-555-0143");
    EXPECT("(202) 555-0143", "PHONE=(202) 555-0143");
    EXPECT("202.555.0143 or 202 555 0143", "PHONE=202.555.0143|PHONE=202 555 0143");
    EXPECT("1-800-555-0199", "PHONE=1-800-555-0199");
    EXPECT("London +44 20 7946 0958, or 020 7946 0958",
           "PHONE=+44 20 7946 0958|PHONE=020 7946 0958");
    EXPECT("Paris 01 23 45 67 89 and 06.12.34.56.78", "PHONE=01 23 45 67 89|PHONE=06.12.34.56.78");
    EXPECT("Berlin +49 (0)30 1234567 or +4930123456", "PHONE=+49 (0)30 1234567|PHONE=+4930123456");
    EXPECT("from abroad 0044 20 7946 0958", "PHONE=0044 20 7946 0958");
    EXPECT("phone: 2025550143", "PHONE=2025550143");
    EXPECT("Room 12 +1 202 555 0143", "PHONE=+1 202 555 0143");
    NOTHING("invoice 2025550143 is due");
    NOTHING("on 2024-01-15 at 10:30:45");
    NOTHING("dial 555-0143 internally");
    NOTHING("ISBN 0-306-40615-2");
    NOTHING("123-456-7890 has no valid area code");
    NOTHING("id-202-555-0143 is a key");
    NOTHING("#202-555-0143 is a ticket");
    NOTHING("OID 1.3.6.1.4.1.343");
}

static void test_card(void)
{
    EXPECT("card 4111 1111 1111 1111 expires", "CARD=4111 1111 1111 1111");
    EXPECT("4111-1111-1111-1111", "CARD=4111-1111-1111-1111");
    EXPECT("amex 378282246310005 or 3782 822463 10005",
           "CARD=378282246310005|CARD=3782 822463 10005");
    EXPECT("mc 5555555555554444, 2221000000000009", "CARD=5555555555554444|CARD=2221000000000009");
    EXPECT("Qty 2 4111 1111 1111 1111", "CARD=4111 1111 1111 1111");
    NOTHING("card 4111 1111 1111 1112 was declined");
    NOTHING("order #4111111111111111 shipped");
    NOTHING("serial 1234567890123452"); /* Luhn-valid, but no issuer starts with 1 */
    NOTHING("ISBN 978-0-306-40615-7");
    /* Mixed separators are what people type (session 27); a column of numbers is no card. */
    EXPECT("4111 1111-1111 1111 mixes separators", "CARD=4111 1111-1111 1111");
    NOTHING("totals:\n4111\n1111\n1111\n1111");
}

static void test_iban(void)
{
    EXPECT("IBAN DE89 3704 0044 0532 0130 00.", "IBAN=DE89 3704 0044 0532 0130 00");
    EXPECT("to GB82WEST12345698765432 please", "IBAN=GB82WEST12345698765432");
    EXPECT("NL91ABNA0417164300", "IBAN=NL91ABNA0417164300");
    EXPECT("NO9386011117947", "IBAN=NO9386011117947");
    NOTHING("bad DE89 3704 0044 0532 0130 01 checksum");
    NOTHING("short DE89370400440532013");
    NOTHING("ZZ89370400440532013000 has no country");
    CHECK(ellm_pii_iban_valid("DE89370400440532013000", 22));
    CHECK(!ellm_pii_iban_valid("DE89370400440532013001", 22));
}

static void test_ssn(void)
{
    EXPECT("SSN 123-45-6789 on file", "SSN=123-45-6789");
    EXPECT("ssn: 123456789", "SSN=123456789");
    EXPECT("number 078 05 1121", "SSN=078 05 1121");
    NOTHING("000-12-3456");
    NOTHING("666-12-3456");
    NOTHING("900-12-3456");
    NOTHING("123-00-4567");
    NOTHING("123-45-0000");
    NOTHING("batch 123456789 without a label");
}

static void test_ip(void)
{
    EXPECT("from 192.168.1.20.", "IP_ADDRESS=192.168.1.20");
    EXPECT("http://10.0.0.1:8080/x", "IP_ADDRESS=10.0.0.1");
    EXPECT("v6 2001:db8::1 and fe80::1ff:fe23:4567:890a",
           "IP_ADDRESS=2001:db8::1|IP_ADDRESS=fe80::1ff:fe23:4567:890a");
    EXPECT("mapped ::ffff:192.0.2.1", "IP_ADDRESS=::ffff:192.0.2.1");
    EXPECT("[2001:db8::2]:443", "IP_ADDRESS=2001:db8::2");
    EXPECT("2001:0db8:85a3:0000:0000:8a2e:0370:7334",
           "IP_ADDRESS=2001:0db8:85a3:0000:0000:8a2e:0370:7334");
    EXPECT("loopback ::1", "IP_ADDRESS=::1");
    NOTHING("version 1.2.3.4 is out");
    NOTHING("256.1.1.1 and 01.2.3.4");
    NOTHING("at 10:30:45 sharp");
    NOTHING("std::vector<int> v;");
    NOTHING("MAC 00:1a:2b:3c:4d:5e");
    NOTHING("1.2.3.4.5");
    NOTHING("v1.2.3.4");
    NOTHING("a:b:c");
}

static void test_url_credentials(void)
{
    EXPECT("db postgres://admin:s3cret@db.example.com:5432/app.",
           "URL_CREDENTIALS=postgres://admin:s3cret@db.example.com:5432/app");
    EXPECT("(https://user:pa@ss@host.example.com/x)",
           "URL_CREDENTIALS=https://user:pa@ss@host.example.com/x");
    EXPECT("https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r",
           "URL_CREDENTIALS=https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r");
    NOTHING("see https://example.com/a?b=c");
    NOTHING("https://user@example.com/ has no password");
    NOTHING("ftp://:@host.example.com");
}

static void test_secret(void)
{
    EXPECT("key sk-proj-abcdefghijklmnopqrstuvwxyz0123",
           "SECRET=sk-proj-abcdefghijklmnopqrstuvwxyz0123");
    EXPECT("AKIAIOSFODNN7EXAMPLE", "SECRET=AKIAIOSFODNN7EXAMPLE");
    EXPECT("xoxb-123456789012-abcdefghij", "SECRET=xoxb-123456789012-abcdefghij");
    EXPECT("AIzaSyA-1234567890abcdefghijklmnopqrstu",
           "SECRET=AIzaSyA-1234567890abcdefghijklmnopqrstu");
    EXPECT("password: hunter22", "SECRET=hunter22");
    EXPECT("DB_PASSWORD=\"Tr0ub4dor&3\"", "SECRET=Tr0ub4dor&3");
    EXPECT("my password is c0rrect-horse.", "SECRET=c0rrect-horse");
    EXPECT("token aK3jT9xQ2mLp8ZrV5nB7cW1yH4dF6gS0 here",
           "SECRET=aK3jT9xQ2mLp8ZrV5nB7cW1yH4dF6gS0");
    EXPECT(
        "x -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY----- y",
        "SECRET=-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----");
    EXPECT("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n(truncated",
           "SECRET=-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n(truncated");
    NOTHING("sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    NOTHING("request 550e8400-e29b-41d4-a716-446655440000 failed");
    NOTHING("the password reset link, the password is required");
    NOTHING("password: ******** and password: ${DB_PASS}");
    NOTHING("the next token is sampled");
    NOTHING("parseHttpRequestHeaderValueForTheServerModule");
    NOTHING("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC "
            "KEY-----");
    /* An unclosed certificate hides nothing after it. */
    EXPECT("-----BEGIN CERTIFICATE-----\nMIIB -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END "
           "EC PRIVATE KEY-----",
           "SECRET=-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----");
}

static void test_dob(void)
{
    EXPECT("DOB: 1985-03-12", "DOB=1985-03-12");
    EXPECT("born on 12 March 1985.", "DOB=12 March 1985");
    EXPECT("Date of birth: 03/12/1985", "DOB=03/12/1985");
    EXPECT("Geburtsdatum: 12.03.1985", "DOB=12.03.1985");
    EXPECT("birthday: March 12, 1985", "DOB=March 12, 1985");
    EXPECT("D.O.B. 12th of March 1985", "DOB=12th of March 1985");
    NOTHING("on 1985-03-12 we met");
    NOTHING("DOB: 1985-13-45");
    NOTHING("born in Paris in 1985");
}

/* Overlapping detections: the longest wins. */
static void test_overlaps(void)
{
    EXPECT("mysql://bob:x1y2z3@10.0.0.5/db", "URL_CREDENTIALS=mysql://bob:x1y2z3@10.0.0.5/db");
    EXPECT("IBAN DE89 3704 0044 0532 0130 00 4111 1111 1111 1111",
           "IBAN=DE89 3704 0044 0532 0130 00|CARD=4111 1111 1111 1111");
    char buf[64];
    pii_entity e[3] = {{0, 1, "EMAIL", NULL}, {2, 3, "CARD", NULL}, {4, 5, "EMAIL", NULL}};
    CHECK(ellm_pii_describe_types(e, 3, buf, sizeof buf) == strlen("CARD, EMAIL"));
    CHECK(strcmp(buf, "CARD, EMAIL") == 0);
    CHECK(ellm_pii_describe_types(e, 3, buf, 5) == strlen("CARD, EMAIL") &&
          strcmp(buf, "CARD") == 0);
}

static char *redact(pii_session *s, const char *text)
{
    char *out = NULL;
    size_t n;
    CHECK(ellm_pii_redact(s, text, strlen(text), &out, &n, NULL, NULL) == EDGELLM_OK);
    CHECK(out && strlen(out) == n);
    return out;
}

static char *restore(const pii_session *s, const char *text, size_t len)
{
    char *out = NULL;
    size_t n;
    CHECK(ellm_pii_restore(s, text, len, &out, &n) == EDGELLM_OK);
    return out;
}

static void test_stability(void)
{
    pii_session *s;
    CHECK(ellm_pii_session_create(default_policy, &s) == EDGELLM_OK);
    char *a = redact(s, "a@x.com, b@x.com, a@x.com, call 202-555-0143");
    CHECK(strcmp(a, "[EMAIL_1], [EMAIL_2], [EMAIL_1], call [PHONE_1]") == 0);
    char *b = redact(s, "b@x.com then c@x.com and 202-555-0143");
    CHECK(strcmp(b, "[EMAIL_2] then [EMAIL_3] and [PHONE_1]") == 0);
    CHECK(ellm_pii_session_size(s) == 4);
    /* A placeholder-shaped string in the input is never handed out. */
    char *c = redact(s, "[EMAIL_4] is literal, d@x.com is not");
    CHECK(strcmp(c, "[EMAIL_4] is literal, [EMAIL_5] is not") == 0);
    char *back = restore(s, c, strlen(c));
    CHECK(strcmp(back, "[EMAIL_4] is literal, d@x.com is not") == 0);
    /* Invented and mangled placeholders stay as they are. */
    const char *cloud = "[EMAIL_9] [email_1] [EMAIL 1] EMAIL_1 [EMAIL_1 [EMAIL_01] [PHONE_1]]";
    char *r = restore(s, cloud, strlen(cloud));
    CHECK(strcmp(r, "[EMAIL_9] [email_1] [EMAIL 1] EMAIL_1 [EMAIL_1 [EMAIL_01] 202-555-0143]") ==
          0);
    free(a);
    free(b);
    free(c);
    free(back);
    free(r);
    ellm_pii_session_free(s);
}

static const char *const samples[] = {
    "Hi, I'm reachable at anna.meyer@example.com or +49 30 12345678.",
    "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789.",
    "Server 192.168.1.20 / 2001:db8::1 via postgres://u:pw1234@db.example.com/x",
    "key=sk-proj-abcdefghijklmnopqrstuvwxyz0123 DOB: 1985-03-12 [SECRET_1] [EMAIL_2",
    "Same again: anna.meyer@example.com and 4111 1111 1111 1111 and [PHONE_1]",
};

static unsigned rng_state = 12345;
static unsigned next_random(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

/* Random texts from bytes that stress the placeholder syntax, with real values spliced in. */
static void test_round_trip(void)
{
    pii_session *s;
    CHECK(ellm_pii_session_create(default_policy, &s) == EDGELLM_OK);
    for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++) {
        char *r = redact(s, samples[k]);
        char *back = restore(s, r, strlen(r));
        CHECK_MSG(strcmp(back, samples[k]) == 0, "sample %zu", k);
        free(r);
        free(back);
    }
    static const char alphabet[] = "[]_EMAIL_PHONE0123456789 @.:-ab";
    int failures = 0;
    for (int round = 0; round < 2000; round++) {
        char text[400];
        size_t n = 0, want = next_random() % 120;
        while (n < want) {
            if (next_random() % 16 == 0) {
                const char *v = samples[next_random() % 5];
                size_t m = strlen(v) < sizeof text - 1 - n ? strlen(v) : sizeof text - 1 - n;
                memcpy(text + n, v, m);
                n += m;
                if (n + 1 >= sizeof text)
                    break;
            } else {
                text[n++] = alphabet[next_random() % (sizeof alphabet - 1)];
            }
        }
        text[n] = '\0';
        char *r, *back;
        size_t rn, bn;
        if (ellm_pii_redact(s, text, n, &r, &rn, NULL, NULL) != EDGELLM_OK) {
            failures++;
            continue;
        }
        CHECK(ellm_pii_restore(s, r, rn, &back, &bn) == EDGELLM_OK);
        if (bn != n || memcmp(back, text, n) != 0)
            if (failures++ < 3)
                fprintf(stderr, "round trip failed for \"%s\"\n", text);
        free(r);
        free(back);
    }
    CHECK(failures == 0);
    ellm_pii_session_free(s);
}

/* What users paste (session 27): the separators, digits and invisible characters of real
 * keyboards, locales and web pages. Spans are of the original bytes, invisible ones inside a
 * value included. */
static void test_pasted_text(void)
{
    EXPECT("Contact: anna.berg\u200B@example.se", "EMAIL=anna.berg\u200B@example.se");
    EXPECT("reply to j.doe@exam\u200Cple\u200D.com", "EMAIL=j.doe@exam\u200Cple\u200D.com");
    EXPECT("franz.huber@uni\u00ADversitaet.at.", "EMAIL=franz.huber@uni\u00ADversitaet.at");
    EXPECT("li\uFEFFwei@example.cn", "EMAIL=li\uFEFFwei@example.cn");
    EXPECT("\u30E1\u30FC\u30EB\uFF1Ataro\uFF20example.jp\u307E\u3067",
           "EMAIL=taro\uFF20example.jp");
    EXPECT("\uFF54\uFF41\uFF52\uFF4F\uFF20\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45\uFF0E\uFF4A"
           "\uFF50",
           "EMAIL=\uFF54\uFF41\uFF52\uFF4F\uFF20\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45\uFF0E"
           "\uFF4A\uFF50");
    EXPECT("\u8BF7\u53D1\u5230zhang.wei@example.com.cn\uFF0C", "EMAIL=zhang.wei@example.com.cn");
    EXPECT("call +44\u00A020\u00A07946\u00A00958", "PHONE=+44\u00A020\u00A07946\u00A00958");
    EXPECT("06\u202F12\u202F34\u202F56\u202F78", "PHONE=06\u202F12\u202F34\u202F56\u202F78");
    EXPECT("office 202\u2011555\u20110143", "PHONE=202\u2011555\u20110143");
    EXPECT("fax (202)\u00A0555\u20130199", "PHONE=(202)\u00A0555\u20130199");
    EXPECT("\u643A\u5E2F\u306F090-1234-5678\u3067\u3059", "PHONE=090-1234-5678");
    EXPECT("\uFF10\uFF13\uFF0D\uFF11\uFF12\uFF13\uFF14\uFF0D\uFF15\uFF16\uFF17\uFF18",
           "PHONE=\uFF10\uFF13\uFF0D\uFF11\uFF12\uFF13\uFF14\uFF0D\uFF15\uFF16\uFF17\uFF18");
    EXPECT("\uFF10\uFF19\uFF10\u30FC\uFF11\uFF12\uFF13\uFF14\u30FC\uFF15\uFF16\uFF17\uFF18",
           "PHONE=\uFF10\uFF19\uFF10\u30FC\uFF11\uFF12\uFF13\uFF14\u30FC\uFF15\uFF16\uFF17\uFF18");
    EXPECT("\u0661\u0660 \u0660\u0661\u0660 \u0661\u0662\u0663\u0664 \u0665\u0666\u0667\u0668",
           "PHONE=\u0660\u0661\u0660 \u0661\u0662\u0663\u0664 \u0665\u0666\u0667\u0668");
    EXPECT("+\u06F9\u06F8 \u06F9\u06F1\u06F2 \u06F3\u06F4\u06F5 \u06F6\u06F7\u06F8\u06F9",
           "PHONE=+\u06F9\u06F8 \u06F9\u06F1\u06F2 \u06F3\u06F4\u06F5 \u06F6\u06F7\u06F8\u06F9");
    EXPECT("\uC81C \uBC88\uD638\uB294 010-9876-5432\uC785\uB2C8\uB2E4", "PHONE=010-9876-5432");
    EXPECT("visa 4111\u200B1111\u200B1111\u200B1111 ok", "CARD=4111\u200B1111\u200B1111\u200B1111");
    EXPECT("4111\u00A01111\u00A01111\u00A01111", "CARD=4111\u00A01111\u00A01111\u00A01111");
    EXPECT("4111\u20131111\u20131111\u20131111", "CARD=4111\u20131111\u20131111\u20131111");
    EXPECT("\uFF14\uFF11\uFF11\uFF11\u3000\uFF11\uFF11\uFF11\uFF11\u3000\uFF11\uFF11\uFF11\uFF11"
           "\u3000\uFF11\uFF11\uFF11\uFF11",
           "CARD=\uFF14\uFF11\uFF11\uFF11\u3000\uFF11\uFF11\uFF11\uFF11\u3000\uFF11\uFF11\uFF11"
           "\uFF11\u3000\uFF11\uFF11\uFF11\uFF11");
    EXPECT("SSN 123\u201345\u20136789", "SSN=123\u201345\u20136789");
    EXPECT("ssn 078\u200B-05-1120", "SSN=078\u200B-05-1120");
    EXPECT("\uFF11\uFF19\uFF12\uFF0E\uFF11\uFF16\uFF18\uFF0E\uFF11\uFF0E\uFF12\uFF10",
           "IP_ADDRESS=\uFF11\uFF19\uFF12\uFF0E\uFF11\uFF16\uFF18\uFF0E\uFF11\uFF0E\uFF12\uFF10");
    EXPECT("DOB: 1985\u201103\u201112", "DOB=1985\u201103\u201112");
    EXPECT("key sk-\u200Bproj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
           "SECRET=sk-\u200Bproj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z");
    /* Near-misses keep their meaning. */
    NOTHING("version\u00A01.2.3.4 built 2024\u201101\u201115");
    NOTHING("Total 1\u202F234\u202F567,89\u00A0\u20AC, 12\u202F500\u00A0\u20AC");
    NOTHING("ISBN 978\u20113\u201116\u2011148410\u20110");
    NOTHING("\u6CE8\u6587\u756A\u53F7\uFF1A\uFF11\uFF12\uFF13\uFF14\uFF15\uFF16\uFF17\uFF18\uFF19"
            "\uFF10");
    NOTHING("\u0641\u064A \u0639\u0627\u0645 \u0662\u0660\u0662\u0664");
    NOTHING("card 4111\u00A01111\u00A01111\u00A01112 was declined");
    /* An overlong encoding of U+00A0 is invalid UTF-8, not a space. */
    NOTHING("call +44\xe0\x82\xa0"
            "20\xe0\x82\xa0"
            "7946\xe0\x82\xa0"
            "0958");
}

/* Formats the table lacked (session 27). */
static void test_more_formats(void)
{
    EXPECT("paid with 4111 1111\n1111 1111 yesterday", "CARD=4111 1111\n1111 1111");
    EXPECT("card 4111 1111 1111\r\n1111", "CARD=4111 1111 1111\r\n1111");
    EXPECT("CC 4111.1111.1111.1111", "CARD=4111.1111.1111.1111");
    NOTHING("2021\n2022\n2023\n2024");
    EXPECT("iban: de89 3704 0044 0532 0130 00", "IBAN=de89 3704 0044 0532 0130 00");
    EXPECT("to gb82west12345698765432 please", "IBAN=gb82west12345698765432");
    EXPECT("ES91-2100-0418-4502-0005-1332", "IBAN=ES91-2100-0418-4502-0005-1332");
    EXPECT("Konto AT61 1904 3002\n3457 3201 ok", "IBAN=AT61 1904 3002\n3457 3201");
    NOTHING("iban de89 3704 0044 0532 0130 01 is wrong");
    EXPECT("\u624B\u673A\uFF1A138 0013 8000", "PHONE=138 0013 8000");
    EXPECT("cell 139-1234-5678", "PHONE=139-1234-5678");
    EXPECT("celular (11) 91234-5678, fixo (21) 2345-6789",
           "PHONE=(11) 91234-5678|PHONE=(21) 2345-6789");
    EXPECT("8 (912) 345-67-89", "PHONE=8 (912) 345-67-89");
    EXPECT("Handy: 0151 23456789", "PHONE=0151 23456789");
    EXPECT("Mobile: 98765 43210", "PHONE=98765 43210");
    EXPECT("Tel\u00E9fono: 612 34 56 78", "PHONE=612 34 56 78");
    EXPECT("tel. 512 345 678", "PHONE=512 345 678");
    NOTHING("order 98765 43210 shipped");
    NOTHING("call about invoice 123 456 789 today");
    /* Labels in other scripts: the CJK and Hangul ones are folded away and looked for in the
     * original text. */
    EXPECT("\u624B\u673A\uFF1A13800138000", "PHONE=13800138000");
    EXPECT("\u96FB\u8A71\uFF1A09012345678", "PHONE=09012345678");
    EXPECT("\uC804\uD654: 010 1234 5678", "PHONE=010 1234 5678");
    EXPECT("\u0442\u0435\u043B. 912 345 67 89", "PHONE=912 345 67 89");
    EXPECT("\u062C\u0648\u0627\u0644: 0501234567", "PHONE=0501234567");
    NOTHING("\u6CE8\u6587\u756A\u53F7 13800138000");
    NOTHING("call me in 10 minutes, my phone has 2 SIMs");
    NOTHING("population 1 412 000 000 in 2021");
    EXPECT("curl -H \"Authorization: Bearer ya29.a0AfH6SMBx3kQp-7Lm2Zr9QwErTy\" https://x.io",
           "SECRET=ya29.a0AfH6SMBx3kQp-7Lm2Zr9QwErTy");
    EXPECT("Authorization: Basic YWxpY2U6c3VwZXJzZWNyZXQ=", "SECRET=YWxpY2U6c3VwZXJzZWNyZXQ=");
    NOTHING("The bearer of this letter may collect it; Basic authentication is off.");
    NOTHING("curl -H \"Authorization: Bearer $TOKEN\" https://x.io");
    EXPECT("{\"api_key\": \"a8d7f6e5d4c3b2a1\"}", "SECRET=a8d7f6e5d4c3b2a1");
    EXPECT("apikey=k3yV4lue99", "SECRET=k3yV4lue99");
    EXPECT(
        "tail:\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ+/\nQyNTUxOQAAACDb==\n-----END RSA PRIVATE KEY-----",
        "SECRET=AAAAB3NzaC1yc2EAAAADAQABAAABAQ+/\nQyNTUxOQAAACDb==\n-----END RSA PRIVATE "
        "KEY-----");
    NOTHING("AAAA\n-----END CERTIFICATE-----");
}

/* Redaction replaces the original bytes, invisible ones included, and restores them exactly;
 * random mixes of the folded characters, cut sequences and values never break that. */
static void test_pasted_round_trip(void)
{
    static const char text[] = "card 4111\u200B1111\u00AD1111\u200B1111, mail "
                               "a\uFEFFb@example.com, \uFF10\uFF13-1234-5678";
    pii_session *s;
    CHECK(ellm_pii_session_create(default_policy, &s) == EDGELLM_OK);
    char *r = redact(s, text);
    CHECK(strcmp(r, "card [CARD_1], mail [EMAIL_1], [PHONE_1]") == 0);
    char *back = restore(s, r, strlen(r));
    CHECK(strcmp(back, text) == 0);
    free(r);
    free(back);
    static const char *const pieces[] = {
        "\u200B", "\u00A0",   "\u202F", "\u2011", "\uFF10", "\uFF20", "\u0663", "\u3000",
        "\u643A", "\xe2\x80", "\xef",   "\xc2",   "4111",   " ",      "-",      "@",
        "x.io",   "a",        "1",      "\n",     "\u30FC", "+",      "(",      ")"};
    int failures = 0;
    for (int round = 0; round < 3000; round++) {
        char buf[300];
        size_t n = 0, want = next_random() % 40;
        for (size_t k = 0; k < want; k++) {
            const char *p = pieces[next_random() % (sizeof pieces / sizeof pieces[0])];
            size_t m = strlen(p);
            if (n + m >= sizeof buf)
                break;
            memcpy(buf + n, p, m);
            n += m;
        }
        char *red, *again;
        size_t rn, bn, n_e;
        pii_entity *e;
        if (ellm_pii_redact(s, buf, n, &red, &rn, &e, &n_e) != EDGELLM_OK) {
            failures++;
            continue;
        }
        for (size_t k = 0; k < n_e; k++)
            if (e[k].start >= e[k].end || e[k].end > n)
                failures++;
        CHECK(ellm_pii_restore(s, red, rn, &again, &bn) == EDGELLM_OK);
        if (bn != n || memcmp(again, buf, n) != 0)
            failures++;
        free(red);
        free(again);
        free(e);
    }
    CHECK(failures == 0);
    ellm_pii_session_free(s);
}

static char *stream(const pii_session *s, const char *const *chunks, const size_t *lens, size_t n)
{
    pii_restorer *r;
    pii_buffer out = {0};
    CHECK(ellm_pii_restorer_create(s, &r) == EDGELLM_OK);
    for (size_t k = 0; k < n; k++)
        CHECK(ellm_pii_restorer_feed(r, chunks[k], lens[k], &out) == EDGELLM_OK);
    CHECK(ellm_pii_restorer_finish(r, &out) == EDGELLM_OK);
    ellm_pii_restorer_free(r);
    char *text = strndup(out.data ? out.data : "", out.len);
    ellm_pii_buffer_free(&out);
    return text;
}

static void test_streaming(void)
{
    pii_session *s;
    CHECK(ellm_pii_session_create(default_policy, &s) == EDGELLM_OK);
    for (int k = 0; k < 12; k++) { /* [EMAIL_1] .. [EMAIL_12] */
        char v[32];
        snprintf(v, sizeof v, "user%d@example.com", k + 1);
        free(redact(s, v));
    }
    free(redact(s, "call 202-555-0143"));
    const char *cloud = "Write to [EMAIL_1] and [EMAIL_12], not [EMAIL_13] or [EMAIL_1x]; "
                        "phone [PHONE_1].[EMAIL_2][";
    size_t len = strlen(cloud);
    char *whole = restore(s, cloud, len);
    CHECK(strcmp(whole, "Write to user1@example.com and user12@example.com, not [EMAIL_13] or "
                        "[EMAIL_1x]; phone 202-555-0143.user2@example.com[") == 0);
    /* Every split into two chunks, and every split into three. */
    int bad = 0;
    for (size_t i = 0; i <= len; i++) {
        for (size_t j = i; j <= len; j++) {
            const char *chunks[3] = {cloud, cloud + i, cloud + j};
            size_t lens[3] = {i, j - i, len - j};
            char *got = stream(s, chunks, lens, 3);
            if (strcmp(got, whole) != 0 && bad++ < 3)
                fprintf(stderr, "split at %zu/%zu gave \"%s\"\n", i, j, got);
            free(got);
        }
    }
    CHECK(bad == 0);
    /* One byte at a time. */
    const char *bytes[256];
    size_t ones[256];
    for (size_t k = 0; k < len; k++) {
        bytes[k] = cloud + k;
        ones[k] = 1;
    }
    char *got = stream(s, bytes, ones, len);
    CHECK(strcmp(got, whole) == 0);
    free(got);

    /* Only a possible placeholder is held back; everything else goes out at once. */
    pii_restorer *r;
    pii_buffer out = {0};
    CHECK(ellm_pii_restorer_create(s, &r) == EDGELLM_OK);
    CHECK(ellm_pii_restorer_feed(r, "Hello [EM", 9, &out) == EDGELLM_OK);
    CHECK(out.len == 6 && memcmp(out.data, "Hello ", 6) == 0);
    CHECK(ellm_pii_restorer_feed(r, "AIL_1", 5, &out) == EDGELLM_OK);
    CHECK(out.len == 6);
    CHECK(ellm_pii_restorer_feed(r, "] [X", 4, &out) == EDGELLM_OK);
    CHECK(strcmp(out.data, "Hello user1@example.com [X") == 0);
    CHECK(ellm_pii_restorer_feed(r, " [EMAIL_99", 10, &out) == EDGELLM_OK); /* never handed out */
    CHECK(strcmp(out.data, "Hello user1@example.com [X [EMAIL_99") == 0);
    CHECK(ellm_pii_restorer_feed(r, " [PHONE_", 8, &out) == EDGELLM_OK);
    CHECK(ellm_pii_restorer_finish(r, &out) == EDGELLM_OK);
    CHECK(strcmp(out.data, "Hello user1@example.com [X [EMAIL_99 [PHONE_") == 0);
    ellm_pii_restorer_free(r);
    ellm_pii_buffer_free(&out);
    free(whole);
    ellm_pii_session_free(s);
}

static pii_policy *policy_from(const char *json)
{
    pii_policy *p = NULL;
    CHECK_MSG(ellm_pii_policy_parse(json, strlen(json), "test-policy.json", &p) == EDGELLM_OK, "%s",
              edgellm_last_error());
    return p;
}

static void test_user_terms_and_patterns(void)
{
    pii_policy *p = policy_from(
        "{\"complexity_threshold\": 0.6, \"pii\": {"
        "\"terms\": {\"CONTACT\": [\"Alice Smith\", \"Bob\", \"José Núñez\"]},"
        "\"patterns\": {\"EMPLOYEE_ID\": \"EMP-[0-9]{6}\", \"TICKET\": "
        "[\"JIRA-\\\\d+\", \"T#\\\\d{4}\"]},"
        "\"disable\": [\"IP_ADDRESS\"], \"allow\": [\"support@example.com\"]}}");
    if (!p)
        return;
    expect_with(__LINE__, p, "Ask alice smith and Bobby about EMP-123456; Bob agrees.",
                "CONTACT=alice smith|EMPLOYEE_ID=EMP-123456|CONTACT=Bob");
    expect_with(__LINE__, p, "JOSÉ NÚÑEZ filed JIRA-42 and T#1234",
                "CONTACT=JOSÉ NÚÑEZ|TICKET=JIRA-42|TICKET=T#1234");
    expect_with(__LINE__, p, "host 10.0.0.1, mail support@example.com or eve@example.com",
                "EMAIL=eve@example.com");
    pii_session *s;
    CHECK(ellm_pii_session_create(p, &s) == EDGELLM_OK);
    char *r = redact(s, "Bob, bob and Bob: EMP-000001");
    CHECK(strcmp(r, "[CONTACT_1], [CONTACT_2] and [CONTACT_1]: [EMPLOYEE_ID_1]") == 0);
    char *back = restore(s, r, strlen(r));
    CHECK(strcmp(back, "Bob, bob and Bob: EMP-000001") == 0);
    free(r);
    free(back);
    ellm_pii_session_free(s);
    ellm_pii_policy_free(p);
    /* A policy file without "pii" keeps the built-in detectors. */
    p = policy_from("{\"complexity_threshold\": 0.5}");
    if (p)
        expect_with(__LINE__, p, "a@example.com", "EMAIL=a@example.com");
    ellm_pii_policy_free(p);
}

static void expect_policy_error(int line, const char *json, const char *needle)
{
    pii_policy *p = NULL;
    edgellm_status st = ellm_pii_policy_parse(json, strlen(json), "bad.json", &p);
    const char *msg = edgellm_last_error();
    test_checks++;
    if (st == EDGELLM_OK || p || !strstr(msg, needle) || !strstr(msg, "bad.json")) {
        test_failures++;
        fprintf(stderr, "%s:%d: policy %s: status %d, message \"%s\" (wanted \"%s\")\n", __FILE__,
                line, json, (int)st, msg, needle);
    }
    ellm_pii_policy_free(p);
}
#define POLICY_ERROR(json, needle) expect_policy_error(__LINE__, json, needle)

static void test_hostile_policies(void)
{
    POLICY_ERROR("not json", "not valid JSON");
    POLICY_ERROR("{\"pii\": {\"terms\": {\"A\": [\"x\"]}", "not valid JSON");
    POLICY_ERROR("[1, 2]", "must be a JSON object");
    POLICY_ERROR("{\"pii\": 3}", "\"pii\" must be an object");
    POLICY_ERROR("{\"pii\": {\"patterns\": {\"EMP\": \"EMP-(\"}}}",
                 "pattern for EMP: missing closing parenthesis");
    POLICY_ERROR("{\"pii\": {\"patterns\": {\"EMP\": \"a{2,1}\"}}}", "pattern for EMP");
    POLICY_ERROR("{\"pii\": {\"patterns\": {\"EMP\": 5}}}", "pii.patterns.EMP must be");
    POLICY_ERROR("{\"pii\": {\"patterns\": {\"EMP\": []}}}", "empty array");
    POLICY_ERROR("{\"pii\": {\"patterns\": {\"lower\": \"x\"}}}", "type name 'lower'");
    POLICY_ERROR("{\"pii\": {\"terms\": {\"bad name\": [\"x\"]}}}", "type name 'bad name'");
    POLICY_ERROR("{\"pii\": {\"terms\": {\"CONTACT\": []}}}", "pii.terms.CONTACT must be");
    POLICY_ERROR("{\"pii\": {\"terms\": {\"CONTACT\": [\"\"]}}}", "pii.terms.CONTACT[0]");
    POLICY_ERROR("{\"pii\": {\"terms\": {\"CONTACT\": [\"ok\", 7]}}}", "pii.terms.CONTACT[1]");
    POLICY_ERROR("{\"pii\": {\"disable\": [\"NOPE\"]}}", "pii.disable[0] is not a built-in type");
    POLICY_ERROR("{\"pii\": {\"allow\": \"x\"}}", "pii.allow must be");
    POLICY_ERROR("{\"pii\": {\"unknown\": 1}}", "unknown key pii.unknown");
    POLICY_ERROR("{\"pii\": {}, \"pii\": {}}", "not valid JSON");
    /* The parser's message quotes the bad token: it must not reach the error (terms are names). */
    pii_policy *quoted = NULL;
    const char *leaky = "{\"pii\": {\"terms\": {\"CONTACT\": [\"Alice Smith\" \"Bob Jones\"]}}}";
    CHECK(ellm_pii_policy_parse(leaky, strlen(leaky), "bad.json", &quoted) == EDGELLM_ERR_FORMAT);
    CHECK(strstr(edgellm_last_error(), "Bob") == NULL &&
          strstr(edgellm_last_error(), "Alice") == NULL);
    CHECK(strstr(edgellm_last_error(), "line 1") != NULL);

    pii_policy *p = NULL;
    CHECK(ellm_pii_policy_load(EDGELLM_TEST_TMP "/no-such-policy.json", &p) == EDGELLM_ERR_IO);
    CHECK(strstr(edgellm_last_error(), "no-such-policy.json") != NULL);

    /* A pattern that backtracks without end fails the scan, naming the pattern and not the text. */
    p = policy_from("{\"pii\": {\"patterns\": {\"SLOW\": \"(a+)+$\"}}}");
    if (p) {
        char text[64];
        memset(text, 'a', 48);
        strcpy(text + 48, "!zz@example.com");
        pii_entity *e = NULL;
        size_t n = 0;
        CHECK(ellm_pii_scan(p, text, strlen(text), &e, &n) != EDGELLM_OK);
        CHECK(strstr(edgellm_last_error(), "SLOW") != NULL);
        CHECK(strstr(edgellm_last_error(), "aaaa") == NULL);
        CHECK(strstr(edgellm_last_error(), "example") == NULL);
        CHECK(e == NULL && n == 0);
        ellm_pii_policy_free(p);
    }
    /* A pattern that can match the empty string neither loops nor yields empty entities. */
    p = policy_from("{\"pii\": {\"patterns\": {\"MAYBE\": \"x*\"}}}");
    if (p) {
        expect_with(__LINE__, p, "a xx b é x", "MAYBE=xx|MAYBE=x");
        ellm_pii_policy_free(p);
    }
}

/* Invalid UTF-8, NUL bytes and empty text are ordinary input. */
static void test_odd_bytes(void)
{
    static const char text[] = "\xff\xfe a@example.com \0 \xc3 4111 1111 1111 1111 \xe2\x82";
    size_t len = sizeof text - 1;
    pii_policy *p = policy_from(
        "{\"pii\": {\"terms\": {\"N\": [\"é\"]}, \"patterns\": {\"X\": \"\\\\w+\"}}}");
    pii_session *s;
    if (!p || ellm_pii_session_create(p, &s) != EDGELLM_OK)
        return;
    char *r, *back;
    size_t rn, bn;
    CHECK(ellm_pii_redact(s, text, len, &r, &rn, NULL, NULL) == EDGELLM_OK);
    CHECK(ellm_pii_restore(s, r, rn, &back, &bn) == EDGELLM_OK);
    CHECK(bn == len && memcmp(back, text, len) == 0);
    free(r);
    free(back);
    CHECK(ellm_pii_redact(s, "", 0, &r, &rn, NULL, NULL) == EDGELLM_OK && rn == 0 && r &&
          r[0] == '\0');
    free(r);
    ellm_pii_session_free(s);
    ellm_pii_policy_free(p);
}

int main(void)
{
    if (ellm_pii_policy_default(&default_policy) != EDGELLM_OK)
        return 1;
    test_email();
    test_phone();
    test_card();
    test_iban();
    test_ssn();
    test_ip();
    test_url_credentials();
    test_secret();
    test_dob();
    test_overlaps();
    test_stability();
    test_round_trip();
    test_pasted_text();
    test_more_formats();
    test_pasted_round_trip();
    test_streaming();
    test_user_terms_and_patterns();
    test_hostile_policies();
    test_odd_bytes();
    ellm_pii_policy_free(default_policy);
    return test_finish("test_pii");
}
