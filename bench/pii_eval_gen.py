#!/usr/bin/env python3
"""Labelled evaluation set for the PII detectors (src/gateway), written as JSON lines:
{"text": ..., "entities": [{"type": "EMAIL", "start": B, "end": E}]} with byte offsets into the
UTF-8 text. Every detector's formats appear inside realistic sentences, and near-misses that must
NOT be flagged (Luhn-invalid numbers, mod-97-invalid IBANs, version strings, timestamps, order
numbers, ISBNs, hashes, UUIDs, ...) are mixed in, alone and beside real entities.

  bench/pii_eval_gen.py [--seed N] [--per-type N] [--out FILE]
  bench/pii_eval_gen.py --mixed MB [--seed N] [--out FILE]   typical mixed text for speed runs

The same seed always gives the same file."""
import argparse
import json
import random
import string
import sys

FIRST = ["anna", "ben", "carla", "dmitri", "elif", "farid", "grace", "hiro", "ines", "jonas",
         "kemal", "lucia", "mads", "nadia", "oscar", "priya", "quentin", "rosa", "sven", "tomas"]
LAST = ["meyer", "okafor", "rossi", "svensson", "tanaka", "nguyen", "garcia", "kowalski",
        "dubois", "schmidt", "oconnor", "haddad", "silva", "novak", "ivanova"]
DOMAINS = ["example.com", "mail.example.org", "uni-bonn.de", "corp.example.co.uk", "acme.io",
           "post.example.net", "students.example.edu", "example.fr"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

# Sentences around one value; {} is where it goes. None of them contains PII of its own.
CONTEXT = {
    "EMAIL": ["Please send the signed contract to {} before Friday.",
              "You can reach me at {} if anything changes.",
              "Contact: {}", "Forwarding this thread to {} for review.",
              "His new address is {}, the old one bounces.",
              "cc: {}; bcc: nobody", "<{}> wrote on Monday:"],
    "PHONE": ["Call me on {} after six.", "My number is {} if the line drops.",
              "Phone: {}", "You can text {} any time.",
              "The front desk ({}) opens at nine.", "Reach the hotline at {}.",
              "Tel. {} ext. none"],
    "CARD": ["Charge it to my card {} please.", "Card number: {}",
             "I paid with {} yesterday and got charged twice.",
             "The card ending differently is not mine, mine is {}."],
    "IBAN": ["Please transfer the deposit to {} by the end of the month.", "IBAN: {}",
             "My account is {} at the local bank.", "Refunds go to {}."],
    "SSN": ["My SSN is {} for the tax form.", "Social security number: {}",
            "The applicant's SSN {} was verified."],
    "IP_ADDRESS": ["The requests come from {} every night.", "Blocked host {} after the scan.",
                   "ssh into {} and restart the service.", "Server address: {}",
                   "Ping {} to check the link."],
    "URL_CREDENTIALS": ["The connection string is {} in production.", "Clone it with {}",
                        "DATABASE_URL={}", "Use {} for the staging broker."],
    "SECRET": ["Here is the key: {}", "export API_KEY={}",
               "I accidentally committed {} to the repo.", "Authorization uses {} now."],
    "DOB": ["{}"],
}

NEAR_MISSES = [
    "Upgrade to version {ver} before the release.",
    "Running build {ver4}; see the changelog.",
    "The job started at {ts} and finished at {ts2}.",
    "Log line: {iso} INFO worker ready",
    "Your order #{order} has shipped.",
    "Order number {order} is on its way, invoice {invoice} attached.",
    "Reference ORD-{year}-{order6} was cancelled.",
    "The book has ISBN {isbn13}.",
    "Old edition: ISBN {isbn10}.",
    "Fixed in commit {sha1}.",
    "The artifact checksum is {sha256}.",
    "Request id {uuid} failed.",
    "The card number {badcard} was rejected as invalid.",
    "That IBAN {badiban} has a wrong checksum.",
    "The form showed {badssn} which is not a valid SSN.",
    "It costs {price} and weighs 3.5 kg.",
    "Population grew to {pop} in {year}.",
    "We met on {date} at the station.",
    "The meeting moved to {date2}.",
    "Ping the localhost alias user@localhost, not a real mailbox.",
    "Use icon@2x.png for retina screens.",
    "Follow @{handle} for updates.",
    "Install left-pad@1.3.0 and rebuild.",
    "std::vector<int> and std::map need the header.",
    "MAC address {mac} is on the label.",
    "See https://www.example.com/docs/{path} for details.",
    "Clone ssh://git@example.com/team/{path}.git instead.",
    "Pi is about 3.14159 and e is 2.71828.",
    "Between 10:30 and 11:45 the service was degraded.",
    "The password reset link expires in 24 hours.",
    "The next token is sampled from the distribution.",
    "Tracking code {tracking} shows it in transit.",
    "The parts list: resistor 4.7k, capacitor 100nF, 12 pieces.",
    "Room 204, building 7, floor 3.",
    "Use the function parseHttpRequestHeaderValue2 in module net.",
    "Coordinates 52.5200, 13.4050 mark the centre.",
    "Call extension 4711 internally.",
    "Flight LH400 departs at 13:05 from gate B22.",
    "Serial number SN-{order6}-{year} on the back plate.",
]


def luhn_complete(body):
    digits = [int(c) for c in body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def luhn_ok(number):
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


IBAN_FORMATS = {  # country: (length, BBAN alphabet pattern: 'n' digit, 'a' upper letter, 'c' either)
    "DE": (22, "n" * 18), "GB": (22, "aaaa" + "n" * 14), "FR": (27, "n" * 10 + "c" * 11 + "nn"),
    "NL": (18, "aaaa" + "n" * 10), "ES": (24, "n" * 20), "IT": (27, "a" + "n" * 10 + "c" * 12),
    "CH": (21, "n" * 5 + "c" * 12), "BE": (16, "n" * 12), "AT": (20, "n" * 16),
    "PL": (28, "n" * 24), "SE": (24, "n" * 20), "NO": (15, "n" * 11), "IE": (22, "aaaa" + "n" * 14),
    "PT": (25, "n" * 21), "DK": (18, "n" * 14),
}


def iban_check(cc, bban):
    rearranged = bban + cc + "00"
    num = int("".join(str(int(ch, 36)) for ch in rearranged))
    return "%02d" % (98 - num % 97)


def iban_mod_ok(iban):
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


class Gen:
    def __init__(self, rng):
        self.r = rng

    def digits(self, n, first=None):
        s = "".join(self.r.choice(string.digits) for _ in range(n))
        return (first + s[1:]) if first else s

    def email(self):
        r = self.r
        f, l = r.choice(FIRST), r.choice(LAST)
        local = r.choice([f + "." + l, f + "_" + l, f[0] + l + str(r.randint(1, 99)),
                          f + "+" + r.choice(["news", "work", "shop"]), l.capitalize() + "." + f.capitalize()])
        return local + "@" + r.choice(DOMAINS)

    def nanp(self):
        r = self.r
        return str(r.randint(2, 9)) + self.digits(2), str(r.randint(2, 9)) + self.digits(2), self.digits(4)

    def phone(self):
        r = self.r
        a, b, c = self.nanp()
        k = r.randrange(16)
        if k == 0:
            return "+1" + a + b + c
        if k == 1:
            return "+1 %s-%s-%s" % (a, b, c)
        if k == 2:
            return "+1 (%s) %s-%s" % (a, b, c)
        if k == 3:
            return "(%s) %s-%s" % (a, b, c)
        if k == 4:
            return "%s-%s-%s" % (a, b, c)
        if k == 5:
            return "%s.%s.%s" % (a, b, c)
        if k == 6:
            return "%s %s %s" % (a, b, c)
        if k == 7:
            return "1-800-%s-%s" % (b, c)
        if k == 8:
            return "+44 20 %s %s" % (self.digits(4, str(r.randint(3, 8))), self.digits(4))
        if k == 9:
            return "020 %s %s" % (self.digits(4, str(r.randint(3, 8))), self.digits(4))
        if k == 10:
            return "07%s %s" % (self.digits(3), self.digits(6))
        if k == 11:
            return "0%d %s %s %s %s" % (r.randint(1, 7), self.digits(2), self.digits(2),
                                        self.digits(2), self.digits(2))
        if k == 12:
            return "+33 %d %s %s %s %s" % (r.randint(1, 7), self.digits(2), self.digits(2),
                                           self.digits(2), self.digits(2))
        if k == 13:
            return "+49 30 %s" % self.digits(8, str(r.randint(1, 9)))
        if k == 14:
            return "+49 (0)30 %s" % self.digits(7, str(r.randint(1, 9)))
        return "0044 20 %s %s" % (self.digits(4, str(r.randint(3, 8))), self.digits(4))

    def card_digits(self):
        r = self.r
        kind = r.randrange(7)
        if kind == 0:
            return luhn_complete("4" + self.digits(14))
        if kind == 1:
            return luhn_complete(str(r.randint(51, 55)) + self.digits(13))
        if kind == 2:
            return luhn_complete(str(r.randint(2221, 2720)) + self.digits(11))
        if kind == 3:
            return luhn_complete(r.choice(["34", "37"]) + self.digits(12))
        if kind == 4:
            return luhn_complete("6011" + self.digits(11))
        if kind == 5:
            return luhn_complete("35" + self.digits(13))
        return luhn_complete("4" + self.digits(11))  # 13-digit Visa

    def card(self):
        d = self.card_digits()
        style = self.r.randrange(3)
        if style == 0 or len(d) == 13:
            return d
        sep = " " if style == 1 else "-"
        if len(d) == 15:
            return sep.join([d[:4], d[4:10], d[10:]])
        return sep.join(d[i:i + 4] for i in range(0, len(d), 4))

    def bban(self, pattern):
        r = self.r
        out = []
        for p in pattern:
            if p == "n":
                out.append(r.choice(string.digits))
            elif p == "a":
                out.append(r.choice(string.ascii_uppercase))
            else:
                out.append(r.choice(string.digits + string.ascii_uppercase))
        return "".join(out)

    def iban_compact(self, valid=True):
        cc = self.r.choice(sorted(IBAN_FORMATS))
        length, pattern = IBAN_FORMATS[cc]
        bban = self.bban(pattern)
        check = iban_check(cc, bban)
        iban = cc + check + bban
        assert len(iban) == length and iban_mod_ok(iban)
        if not valid:  # exactly one pair of check digits in 02..98 is right
            wrong = check
            while wrong == check:
                wrong = "%02d" % self.r.randint(2, 98)
            iban = cc + wrong + bban
            assert not iban_mod_ok(iban)
        return iban

    def iban(self, valid=True):
        iban = self.iban_compact(valid)
        if self.r.random() < 0.5:
            return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban

    def ssn_parts(self):
        r = self.r
        area = r.choice([a for a in range(1, 900) if a != 666])
        return "%03d" % area, "%02d" % r.randint(1, 99), "%04d" % r.randint(1, 9999)

    def ipv4(self):
        r = self.r
        return ".".join(str(r.choice([r.randint(0, 255), r.randint(1, 99), r.randint(100, 255)]))
                        for _ in range(4))

    def ipv6(self):
        r = self.r
        groups = ["%x" % r.randint(0, 0xFFFF) for _ in range(8)]
        k = r.randrange(5)
        if k == 0:
            return ":".join(groups)
        if k == 1:
            return "2001:db8::" + groups[0]
        if k == 2:
            return "fe80::" + ":".join(groups[:4])
        if k == 3:
            return "::1"
        return "::ffff:" + self.ipv4()

    def ip(self):
        return self.ipv4() if self.r.random() < 0.55 else self.ipv6()

    def password(self):
        r = self.r
        alphabet = string.ascii_letters + string.digits + "!#%&*-_"
        return "".join(r.choice(alphabet) for _ in range(r.randint(8, 16)))

    def url_credentials(self):
        r = self.r
        scheme = r.choice(["postgres", "mysql", "https", "ftp", "redis", "mongodb+srv", "amqp"])
        user = r.choice(FIRST + ["admin", "deploy", "svc_backup"])
        host = r.choice(["db.internal.example.com", "10.0.3.17", "cache.example.net",
                         "broker.example.org", "files.example.com"])
        port = r.choice(["", ":5432", ":6379", ":8443"])
        path = r.choice(["", "/prod", "/app?sslmode=require", "/team/repo.git"])
        pw = "".join(r.choice(string.ascii_letters + string.digits) for _ in range(r.randint(6, 14)))
        return "%s://%s:%s@%s%s%s" % (scheme, user, pw, host, port, path)

    def token(self, n, alphabet=string.ascii_letters + string.digits):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def secret(self):
        r = self.r
        k = r.randrange(10)
        if k == 0:
            return "sk-proj-" + self.token(40)
        if k == 1:
            return "ghp_" + self.token(36)
        if k == 2:
            return "AKIA" + self.token(16, string.ascii_uppercase + string.digits)
        if k == 3:
            return "xoxb-" + self.digits(11) + "-" + self.digits(12) + "-" + self.token(24)
        if k == 4:
            return "AIza" + self.token(35, string.ascii_letters + string.digits + "_-")
        if k == 5:
            return "glpat-" + self.token(20)
        if k == 6:
            return "sk_live_" + self.token(24)
        if k == 7:
            body = "\n".join(self.token(64, string.ascii_letters + string.digits + "+/")
                             for _ in range(r.randint(2, 5)))
            kind = r.choice(["RSA ", "OPENSSH ", "EC ", ""])
            return "-----BEGIN %sPRIVATE KEY-----\n%s\n-----END %sPRIVATE KEY-----" % (kind, body, kind)
        if k == 8:
            while True:
                t = self.token(40)
                if any(c.isdigit() for c in t) and any(c.isupper() for c in t) and any(c.islower() for c in t):
                    return t
        return "eyJ" + self.token(30) + "." + "eyJ" + self.token(40) + "." + self.token(43, string.ascii_letters + string.digits + "_-")

    def date(self):
        r = self.r
        y, m, d = r.randint(1935, 2010), r.randint(1, 12), r.randint(1, 28)
        k = r.randrange(7)
        if k == 0:
            return "%04d-%02d-%02d" % (y, m, d)
        if k == 1:
            return "%02d/%02d/%04d" % (d, m, y)
        if k == 2:
            return "%02d/%02d/%04d" % (m, d, y)
        if k == 3:
            return "%02d.%02d.%04d" % (d, m, y)
        if k == 4:
            return "%d %s %d" % (d, MONTHS[m - 1], y)
        if k == 5:
            return "%s %d, %d" % (MONTHS[m - 1], d, y)
        return "%d %s %d" % (d, MONTHS[m - 1][:3], y)


class Writer:
    def __init__(self):
        self.parts = []
        self.entities = []
        self.pos = 0

    def text(self, s):
        self.parts.append(s)
        self.pos += len(s.encode())

    def entity(self, typ, value):
        b = len(value.encode())
        self.entities.append({"type": typ, "start": self.pos, "end": self.pos + b})
        self.text(value)

    def record(self):
        return {"text": "".join(self.parts), "entities": self.entities}


def fill(w, template, typ, value):
    before, after = template.split("{}", 1)
    w.text(before)
    w.entity(typ, value)
    w.text(after)


def positive(g, typ):
    r = g.r
    w = Writer()
    if typ == "SSN":
        a, b, c = g.ssn_parts()
        k = r.randrange(4)
        if k == 3:
            w.text(r.choice(["SSN: ", "My SSN is "]))
            w.entity("SSN", a + b + c)
            w.text(r.choice([".", " on file.", ""]))
            return w.record()
        value = (a + "-" + b + "-" + c) if k < 2 else (a + " " + b + " " + c)
    elif typ == "DOB":
        label = r.choice(["DOB: ", "Date of birth: ", "D.O.B. ", "born on ", "Born ", "Birthday: ",
                          "birth date ", "date of birth is ", "Geburtsdatum: "])
        w.text(r.choice(["Patient ", "Applicant ", "", "Name on file, "]) + label)
        w.entity("DOB", g.date())
        w.text(r.choice([".", ", please verify.", " in the records.", ""]))
        return w.record()
    elif typ == "SECRET" and r.random() < 0.2:
        w.text(r.choice(["password: ", "db_password=", "My password is ", "PASSWORD = ",
                         "client_secret: "]))
        w.entity("SECRET", g.password())
        w.text(r.choice(["", " (do not share)", "\n"]))
        return w.record()
    elif typ == "PHONE" and r.random() < 0.08:
        a, b, c = g.nanp()
        w.text(r.choice(["phone: ", "Call ", "mobile "]))
        w.entity("PHONE", a + b + c)
        w.text(" after 5pm.")
        return w.record()
    else:
        value = {"EMAIL": g.email, "PHONE": g.phone, "CARD": g.card, "IBAN": g.iban,
                 "IP_ADDRESS": g.ip, "URL_CREDENTIALS": g.url_credentials,
                 "SECRET": g.secret}[typ]()
    fill(w, r.choice(CONTEXT[typ]), typ, value)
    return w.record()


def near_miss_text(g):
    r = g.r
    t = r.choice(NEAR_MISSES)
    while True:
        badcard = g.card_digits()
        badcard = badcard[:-1] + str((int(badcard[-1]) + r.randint(1, 9)) % 10)
        if not luhn_ok(badcard):
            break
    bad_area = r.choice(["000", "666", str(r.randint(900, 999))])
    isbn12 = "978" + g.digits(9)
    s = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(isbn12))
    isbn13 = "%s-%s-%s-%s-%d" % (isbn12[:3], isbn12[3], isbn12[4:6], isbn12[6:], (10 - s % 10) % 10)
    values = {
        "ver": "%d.%d.%d" % (r.randint(0, 20), r.randint(0, 30), r.randint(0, 99)),
        "ver4": "%d.%d.%d.%d" % (r.randint(1, 20), r.randint(0, 9), r.randint(1000, 30000), r.randint(0, 999)),
        "ts": "%02d:%02d:%02d" % (r.randint(0, 23), r.randint(0, 59), r.randint(0, 59)),
        "ts2": "%02d:%02d" % (r.randint(0, 23), r.randint(0, 59)),
        "iso": "2024-%02d-%02dT%02d:%02d:%02d.%03dZ" % (r.randint(1, 12), r.randint(1, 28), r.randint(0, 23),
                                                     r.randint(0, 59), r.randint(0, 59), r.randint(0, 999)),
        "order": g.digits(r.randint(6, 10), str(r.randint(1, 9))),
        "invoice": "INV-" + g.digits(6),
        "order6": g.digits(6),
        "year": str(r.randint(1990, 2030)),
        "isbn13": isbn13,
        "isbn10": "0-306-40615-2",
        "sha1": g.token(40, "0123456789abcdef"),
        "sha256": g.token(64, "0123456789abcdef"),
        "uuid": "%s-%s-%s-%s-%s" % (g.token(8, "0123456789abcdef"), g.token(4, "0123456789abcdef"),
                                    g.token(4, "0123456789abcdef"), g.token(4, "0123456789abcdef"),
                                    g.token(12, "0123456789abcdef")),
        "badcard": " ".join(badcard[i:i + 4] for i in range(0, len(badcard), 4)) if r.random() < 0.5 else badcard,
        "badiban": g.iban(valid=False),
        "badssn": "%s-%02d-%04d" % (bad_area, r.randint(1, 99), r.randint(1, 9999)),
        "price": "$%d,%03d.%02d" % (r.randint(1, 999), r.randint(0, 999), r.randint(0, 99)),
        "pop": "%d,%03d,%03d" % (r.randint(1, 99), r.randint(0, 999), r.randint(0, 999)),
        "date": "%04d-%02d-%02d" % (r.randint(2000, 2030), r.randint(1, 12), r.randint(1, 28)),
        "date2": "%02d/%02d/%04d" % (r.randint(1, 12), r.randint(1, 28), r.randint(2000, 2030)),
        "handle": r.choice(FIRST) + str(r.randint(1, 999)),
        "mac": ":".join("%02x" % r.randint(0, 255) for _ in range(6)),
        "path": r.choice(["guide/intro", "api/v2/users", "install", "faq#billing"]),
        "tracking": "1Z" + g.token(16, string.ascii_uppercase + string.digits),
    }
    return t.format(**values)


def eval_set(seed, per_type):
    g = Gen(random.Random(seed))
    records = []
    types = ["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP_ADDRESS", "URL_CREDENTIALS", "SECRET", "DOB"]
    for typ in types:
        for _ in range(per_type):
            records.append(positive(g, typ))
    for _ in range(per_type * 3):
        w = Writer()
        w.text(near_miss_text(g))
        records.append(w.record())
    # Real entities next to near-misses, several per text.
    for _ in range(per_type * 2):
        w = Writer()
        for part in range(g.r.randint(2, 4)):
            if part:
                w.text(" ")
            if g.r.random() < 0.5:
                w.text(near_miss_text(g))
            else:
                rec = positive(g, g.r.choice(types))
                base = w.pos
                w.text(rec["text"])
                for e in rec["entities"]:
                    w.entities.append({"type": e["type"], "start": base + e["start"], "end": base + e["end"]})
        records.append(w.record())
    g.r.shuffle(records)
    return records


PROSE = ("The quarterly review covered the migration plan, the budget for the next release and "
         "the hiring pipeline. Most teams reported steady progress; two projects slipped by a "
         "week because the vendor delivered late. ")
CODE = ("    for (size_t i = 0; i < n; i++) {\n        sum += weights[i] * inputs[i];\n    }\n"
        "    if (status != 0) return report_error(ctx, \"decode failed\", status);\n")
LOG = ("2024-05-14T09:12:44.512Z INFO  http  GET /api/v2/items?page=3 200 12.4ms\n"
       "2024-05-14T09:12:44.530Z WARN  pool  connection reuse after 30000 ms idle\n")


def mixed(seed, megabytes):
    """Mostly prose, code and logs with an entity every ~2 KB: what a gateway typically sees."""
    g = Gen(random.Random(seed))
    types = ["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP_ADDRESS", "URL_CREDENTIALS", "SECRET", "DOB"]
    out, size = [], 0
    while size < megabytes * 1_000_000:
        block = g.r.choice([PROSE * 3, CODE * 4, LOG * 5, PROSE + CODE])
        if g.r.random() < 0.8:
            block += positive(g, g.r.choice(types))["text"] + "\n"
        else:
            block += near_miss_text(g) + "\n"
        out.append(block)
        size += len(block)
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--per-type", type=int, default=400)
    ap.add_argument("--mixed", type=float, help="write MB of typical mixed text instead")
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    out = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8")
    if a.mixed:
        out.write(mixed(a.seed, a.mixed))
    else:
        for rec in eval_set(a.seed, a.per_type):
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
