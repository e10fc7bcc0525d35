/* The link scanner: see links_scan.h for the contract.
 *
 * HTML mode implements the part of the WHATWG tokenizer ("13.2.5 Tokenization")
 * that decides where tags are and what their attribute values are:
 *
 *   - data state, tag open, end tag open, tag name, the attribute states, self-
 *     closing start tag; a tag cut short by the end of the input is dropped;
 *   - character references in attribute values (named with the longest-match
 *     and "no ';' followed by [A-Za-z0-9=]" rules, decimal, hexadecimal, the
 *     0x80-0x9F table, 0 / surrogates / > 0x10FFFF -> U+FFFD);
 *   - comments (with <!-->, <!---> and --!>), bogus comments (<?, </ + non-letter,
 *     <! that is not <!--), doctypes;
 *   - the states the tree builder switches the tokenizer to after a start tag:
 *     RCDATA (textarea, title), RAWTEXT (style, xmp, iframe, noembed, noframes),
 *     script data with its escaped and double-escaped states, and PLAINTEXT.
 *     noscript is parsed as normal markup, as with scripting disabled.
 *   - input preprocessing: CR LF and lone CR read as LF; U+0000 in an href
 *     becomes U+FFFD.
 *
 * Foreign content is not tracked: everything is parsed as HTML content. So
 * inside <svg>/<math>, "<![CDATA[" opens a bogus comment that ends at the first
 * '>' (a browser would read a CDATA section up to "]]>"), and <style>, <title>,
 * ... there switch to RAWTEXT/RCDATA as they would in HTML (a browser parses
 * their content as markup). Both only matter when such content holds "<a".
 *
 * The tokenizer treats CR as whitespace and maps it to LF when copying an href,
 * dropping the LF of a CR LF pair: that is the preprocessing done in passing.
 */
#include "links_scan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entities.h"

/* ---- output buffers ---------------------------------------------------- */

/* Appends k bytes to out->data. Returns 0, or -1 if memory ran out. */
static int
put(parpy_links *out, const void *bytes, size_t k)
{
    if (k == 0) {
        return 0; /* data may still be NULL */
    }
    if (k > out->cap - out->len) {
        size_t cap = out->cap ? out->cap : 256;
        while (k > cap - out->len) {
            if (cap > SIZE_MAX / 2) {
                return -1;
            }
            cap *= 2;
        }
        char *data = realloc(out->data, cap);
        if (data == NULL) {
            return -1;
        }
        out->data = data;
        out->cap = cap;
    }
    memcpy(out->data + out->len, bytes, k);
    out->len += k;
    return 0;
}

/* Ends the href that starts at out->data[start]: a link, or the base. */
static int
commit(parpy_links *out, size_t start, int is_base)
{
    if (is_base) {
        size_t k = out->len - start;
        if (!out->has_base) {
            char *base = NULL;
            if (k > 0) {
                base = malloc(k);
                if (base == NULL) {
                    return -1;
                }
                memcpy(base, out->data + start, k);
            }
            out->base = base;
            out->base_len = k;
            out->has_base = 1;
        }
        out->len = start;
        return 0;
    }
    if (out->count == out->ends_cap) {
        size_t cap = out->ends_cap ? 2 * out->ends_cap : 64;
        if (cap > SIZE_MAX / sizeof(size_t)) {
            return -1;
        }
        size_t *ends = realloc(out->ends, cap * sizeof(size_t));
        if (ends == NULL) {
            return -1;
        }
        out->ends = ends;
        out->ends_cap = cap;
    }
    out->ends[out->count++] = out->len;
    return 0;
}

/* ---- characters --------------------------------------------------------- */

/* The tokenizer's whitespace, plus CR, which preprocessing turns into LF. */
static inline int
is_space(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\f' || c == '\r';
}

static inline int
is_alpha(unsigned char c)
{
    return (unsigned char)((c | 0x20) - 'a') < 26;
}

static inline int
is_digit(unsigned char c)
{
    return (unsigned char)(c - '0') < 10;
}

static inline int
is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

static inline unsigned char
lower(unsigned char c)
{
    return (unsigned char)(c - 'A') < 26 ? (unsigned char)(c | 0x20) : c;
}

/* 1 if s[0..k) equals the lowercase ASCII name, ignoring ASCII case. */
static int
equals_lower(const unsigned char *s, size_t k, const char *name, size_t name_len)
{
    if (k != name_len) {
        return 0;
    }
    for (size_t i = 0; i < k; i++) {
        if (lower(s[i]) != (unsigned char)name[i]) {
            return 0;
        }
    }
    return 1;
}

/* Writes code point cp (< 0x110000, not a surrogate) as UTF-8 into buf;
 * returns the number of bytes. */
static size_t
utf8_encode(uint32_t cp, unsigned char *buf)
{
    if (cp < 0x80) {
        buf[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (unsigned char)(0xC0 | (cp >> 6));
        buf[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (unsigned char)(0xE0 | (cp >> 12));
        buf[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (unsigned char)(0xF0 | (cp >> 18));
    buf[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- character references ---------------------------------------------- */

/* "Numeric character reference end state": 0x80-0x9F as windows-1252. */
static const uint16_t c1_replacements[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

/* The longest entity name that prefixes s[0..n): returns its length (0 if
 * none) and sets *index. Narrows the sorted table one character at a time, so
 * it reads at most PARPY_ENTITY_NAME_MAX bytes. */
static size_t
longest_entity(const unsigned char *s, size_t n, size_t *index)
{
    size_t lo = 0, hi = PARPY_ENTITY_COUNT, best = 0;
    for (size_t k = 0; k < n && k < PARPY_ENTITY_NAME_MAX; k++) {
        /* Rows lo..hi share the prefix s[0..k); a row equal to it sorts first. */
        unsigned char c = s[k];
        size_t a = lo, b = hi;
        while (a < b) { /* first row whose character k is >= c */
            size_t mid = a + (b - a) / 2;
            const struct parpy_entity *e = &parpy_entities[mid];
            if (e->name_len <= k || (unsigned char)e->name[k] < c) {
                a = mid + 1;
            }
            else {
                b = mid;
            }
        }
        lo = a;
        b = hi;
        while (a < b) { /* first row whose character k is > c */
            size_t mid = a + (b - a) / 2;
            if ((unsigned char)parpy_entities[mid].name[k] <= c) {
                a = mid + 1;
            }
            else {
                b = mid;
            }
        }
        hi = a;
        if (lo == hi) {
            break;
        }
        if (parpy_entities[lo].name_len == k + 1) {
            best = k + 1;
            *index = lo;
        }
    }
    return best;
}

/* "Character reference state" in an attribute value: s[p] is '&'. Appends the
 * decoded text and returns the position after what it consumed, or 0 if memory
 * ran out (a reference always consumes its '&', so 0 is never a position). */
static size_t
char_ref(const unsigned char *s, size_t n, size_t p, parpy_links *out)
{
    size_t q = p + 1;
    if (q < n && is_alnum(s[q])) {
        /* Named character reference state. */
        size_t index = 0, k = longest_entity(s + q, n - q, &index);
        if (k == 0) {
            /* No match: the '&' is text (ambiguous ampersand state). */
            return put(out, "&", 1) ? 0 : q;
        }
        const struct parpy_entity *e = &parpy_entities[index];
        size_t end = q + k;
        if (e->name[k - 1] != ';' && end < n && (is_alnum(s[end]) || s[end] == '=')) {
            /* Historical: "&amp=" and "&copyx" stay as written in attributes. */
            return put(out, s + p, end - p) ? 0 : end;
        }
        return put(out, e->value, e->value_len) ? 0 : end;
    }
    if (q < n && s[q] == '#') {
        /* Numeric character reference state. */
        int hex = q + 1 < n && (s[q + 1] == 'x' || s[q + 1] == 'X');
        size_t d = q + 1 + (size_t)hex, end = d;
        uint32_t code = 0;
        for (; end < n; end++) {
            unsigned char c = s[end];
            uint32_t v;
            if (is_digit(c)) {
                v = (uint32_t)(c - '0');
            }
            else if (hex && (unsigned char)((c | 0x20) - 'a') < 6) {
                v = (uint32_t)((c | 0x20) - 'a' + 10);
            }
            else {
                break;
            }
            code = code * (hex ? 16 : 10) + v;
            if (code > 0x10FFFF) {
                code = 0x110000; /* saturate: the value only matters as "too large" */
            }
        }
        if (end == d) {
            /* Absence of digits: "&#" or "&#x" is text. */
            return put(out, s + p, d - p) ? 0 : d;
        }
        if (end < n && s[end] == ';') {
            end++;
        }
        /* Numeric character reference end state. */
        if (code == 0 || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
            code = 0xFFFD;
        }
        else if (code >= 0x80 && code <= 0x9F) {
            code = c1_replacements[code - 0x80];
        }
        unsigned char buf[4];
        return put(out, buf, utf8_encode(code, buf)) ? 0 : end;
    }
    return put(out, "&", 1) ? 0 : q;
}

/* Attribute value (quoted or, for quote 0, unquoted) state: copies the value
 * that starts at s[p] and ends at the quote (unquoted: at whitespace or '>') or
 * at n, decoding character references, CR LF and CR to LF, and U+0000 to
 * U+FFFD. Returns the end position, or 0 if memory ran out (never a position:
 * a value follows at least "<a="). */
static size_t
copy_value(const unsigned char *s, size_t n, size_t p, unsigned char quote, parpy_links *out)
{
    size_t run = p;
    while (p < n) {
        unsigned char c = s[p];
        if (quote ? c == quote : (is_space(c) || c == '>')) {
            break;
        }
        if (c != '&' && c != '\r' && c != 0) {
            p++;
            continue;
        }
        if (put(out, s + run, p - run)) {
            return 0;
        }
        if (c == '&') {
            p = char_ref(s, n, p, out);
            if (p == 0) {
                return 0;
            }
        }
        else if (c == '\r') {
            /* CR LF and a lone CR read as LF (only quoted values hold a CR). */
            if (put(out, "\n", 1)) {
                return 0;
            }
            p++;
            if (p < n && s[p] == '\n') {
                p++;
            }
        }
        else {
            if (put(out, "\xEF\xBF\xBD", 3)) {
                return 0;
            }
            p++;
        }
        run = p;
    }
    if (put(out, s + run, p - run)) {
        return 0;
    }
    return p;
}

/* ---- tags ----------------------------------------------------------------- */

enum tag_kind {
    TAG_OTHER,
    TAG_A,
    TAG_BASE,
    TAG_SCRIPT,
    TAG_RAWTEXT, /* style, xmp, iframe, noembed, noframes */
    TAG_RCDATA,  /* textarea, title: same end rule as RAWTEXT here */
    TAG_PLAINTEXT,
};

static const struct {
    const char *name;
    size_t len;
    enum tag_kind kind;
} known_tags[] = {
    {"a", 1, TAG_A},
    {"base", 4, TAG_BASE},
    {"script", 6, TAG_SCRIPT},
    {"style", 5, TAG_RAWTEXT},
    {"xmp", 3, TAG_RAWTEXT},
    {"iframe", 6, TAG_RAWTEXT},
    {"noembed", 7, TAG_RAWTEXT},
    {"noframes", 8, TAG_RAWTEXT},
    {"textarea", 8, TAG_RCDATA},
    {"title", 5, TAG_RCDATA},
    {"plaintext", 9, TAG_PLAINTEXT},
};

#define SCAN_EOF   ((size_t)-1) /* the input ended inside the construct */
#define SCAN_NOMEM ((size_t)-2)

/* Tokenizes a start or end tag whose name starts at s[p] (a letter), from the
 * tag name state to the '>' that emits it. Returns the position after the '>',
 * SCAN_EOF (the tag is dropped) or SCAN_NOMEM. Sets *tag to the name's index
 * in known_tags, or -1; for a start tag, commits the first href of <a> and
 * <base>. */
static size_t
scan_tag(const unsigned char *s, size_t n, size_t p, int is_end, parpy_links *out, int *tag)
{
    /* Tag name state. ASCII letters fold; anything but whitespace, '/' and '>'
     * is part of the name (U+0000 included: it makes the name an unknown one). */
    size_t name = p;
    while (p < n && !is_space(s[p]) && s[p] != '/' && s[p] != '>') {
        p++;
    }
    enum tag_kind kind = TAG_OTHER;
    *tag = -1;
    for (size_t i = 0; i < sizeof(known_tags) / sizeof(known_tags[0]); i++) {
        if (equals_lower(s + name, p - name, known_tags[i].name, known_tags[i].len)) {
            kind = known_tags[i].kind;
            *tag = (int)i;
            break;
        }
    }
    int wanted = !is_end && (kind == TAG_A || kind == TAG_BASE);
    int seen_href = 0, captured = 0;
    size_t start = out->len;

    for (;;) {
        /* Before attribute name state. */
        while (p < n && is_space(s[p])) {
            p++;
        }
        if (p >= n) {
            break;
        }
        if (s[p] == '>') {
            goto emit;
        }
        if (s[p] == '/') {
            /* Self-closing start tag state: '>' emits, anything else is
             * reconsumed in the before attribute name state. */
            p++;
            if (p < n && s[p] == '>') {
                goto emit;
            }
            continue;
        }
        /* Attribute name state: the first character is taken even if '='. */
        size_t attr = p++;
        while (p < n && !is_space(s[p]) && s[p] != '/' && s[p] != '>' && s[p] != '=') {
            p++;
        }
        /* A duplicate attribute is dropped: only the first href counts. */
        int take = wanted && !seen_href && equals_lower(s + attr, p - attr, "href", 4);
        if (equals_lower(s + attr, p - attr, "href", 4)) {
            seen_href = 1;
        }
        /* After attribute name state. */
        while (p < n && is_space(s[p])) {
            p++;
        }
        if (p >= n) {
            break;
        }
        if (s[p] != '=') {
            captured |= take; /* a valueless href is "" */
            continue;
        }
        /* Before attribute value state. */
        p++;
        while (p < n && is_space(s[p])) {
            p++;
        }
        if (p >= n) {
            break;
        }
        captured |= take;
        unsigned char quote = s[p];
        if (quote == '>') {
            goto emit; /* missing attribute value: "" */
        }
        if (quote == '"' || quote == '\'') {
            /* Attribute value (double- or single-quoted) state. */
            p++;
            if (take) {
                p = copy_value(s, n, p, quote, out);
                if (p == 0) {
                    return SCAN_NOMEM;
                }
            }
            else {
                const unsigned char *q = memchr(s + p, quote, n - p);
                p = q ? (size_t)(q - s) : n;
            }
            if (p >= n) {
                break;
            }
            /* After attribute value (quoted) state: every branch is the
             * before attribute name state's (reconsume). */
            p++;
            continue;
        }
        /* Attribute value (unquoted) state. */
        if (take) {
            p = copy_value(s, n, p, 0, out);
            if (p == 0) {
                return SCAN_NOMEM;
            }
        }
        else {
            while (p < n && !is_space(s[p]) && s[p] != '>') {
                p++;
            }
        }
    }
    /* EOF in tag: the tag is not emitted. */
    out->len = start;
    return SCAN_EOF;

emit:
    if (captured && commit(out, start, kind == TAG_BASE)) {
        return SCAN_NOMEM;
    }
    return p + 1;
}

/* ---- text-only content ---------------------------------------------------- */

/* 1 if s[p..] is "</" name followed by whitespace, '/' or '>': an appropriate
 * end tag (ASCII case-insensitive). */
static int
is_end_tag(const unsigned char *s, size_t n, size_t p, const char *name, size_t len)
{
    return n - p > len + 2 && s[p] == '<' && s[p + 1] == '/' &&
           equals_lower(s + p + 2, len, name, len) &&
           (is_space(s[p + 2 + len]) || s[p + 2 + len] == '/' || s[p + 2 + len] == '>');
}

/* RCDATA and RAWTEXT states: returns the position of the '<' of the first
 * appropriate end tag at or after p, or n. */
static size_t
find_end_tag(const unsigned char *s, size_t n, size_t p, const char *name, size_t len)
{
    while (p < n) {
        const unsigned char *lt = memchr(s + p, '<', n - p);
        if (lt == NULL) {
            return n;
        }
        p = (size_t)(lt - s);
        if (is_end_tag(s, n, p, name, len)) {
            return p;
        }
        p++;
    }
    return n;
}

/* Reads ASCII letters from s[p]; returns the position after them and sets
 * *is_script if they spell "script" (any case). */
static size_t
read_letters(const unsigned char *s, size_t n, size_t p, int *is_script)
{
    size_t start = p;
    while (p < n && is_alpha(s[p])) {
        p++;
    }
    *is_script = equals_lower(s + start, p - start, "script", 6);
    return p;
}

/* Script data state and its escaped and double-escaped states: returns the
 * position of the '<' of the "</script" that ends the script, or n. */
static size_t
find_script_end(const unsigned char *s, size_t n, size_t p)
{
    enum {
        DATA,
        ESCAPED,
        ESCAPED_DASH,
        ESCAPED_DASH_DASH,
        DOUBLE,
        DOUBLE_DASH,
        DOUBLE_DASH_DASH,
    } state = DATA;
    int is_script;
    while (p < n) {
        unsigned char c = s[p];
        switch (state) {
        case DATA:
            if (c != '<') {
                const unsigned char *lt = memchr(s + p, '<', n - p);
                p = lt ? (size_t)(lt - s) : n;
                continue;
            }
            /* Script data less-than sign state. */
            if (is_end_tag(s, n, p, "script", 6)) {
                return p;
            }
            if (n - p >= 4 && memcmp(s + p, "<!--", 4) == 0) {
                /* Escape start and escape start dash states. */
                state = ESCAPED_DASH_DASH;
                p += 4;
                continue;
            }
            p++;
            continue;
        case ESCAPED:
        case ESCAPED_DASH:
        case ESCAPED_DASH_DASH:
            if (c == '-') {
                state = state == ESCAPED ? ESCAPED_DASH : ESCAPED_DASH_DASH;
                p++;
                continue;
            }
            if (c == '>' && state == ESCAPED_DASH_DASH) {
                state = DATA;
                p++;
                continue;
            }
            state = ESCAPED;
            if (c != '<') {
                p++;
                continue;
            }
            /* Script data escaped less-than sign state. */
            if (is_end_tag(s, n, p, "script", 6)) {
                return p;
            }
            if (p + 1 < n && s[p + 1] == '/') {
                p += 2; /* escaped end tag open: anything else is text */
                continue;
            }
            if (p + 1 < n && is_alpha(s[p + 1])) {
                /* Script data double escape start state. */
                p = read_letters(s, n, p + 1, &is_script);
                if (p < n && (is_space(s[p]) || s[p] == '/' || s[p] == '>')) {
                    state = is_script ? DOUBLE : ESCAPED;
                    p++;
                }
                continue;
            }
            p++;
            continue;
        case DOUBLE:
        case DOUBLE_DASH:
        case DOUBLE_DASH_DASH:
            if (c == '-') {
                state = state == DOUBLE ? DOUBLE_DASH : DOUBLE_DASH_DASH;
                p++;
                continue;
            }
            if (c == '>' && state == DOUBLE_DASH_DASH) {
                state = DATA;
                p++;
                continue;
            }
            state = DOUBLE;
            p++;
            if (c == '<' && p < n && s[p] == '/') {
                /* Script data double escape end state. */
                p = read_letters(s, n, p + 1, &is_script);
                if (p < n && (is_space(s[p]) || s[p] == '/' || s[p] == '>')) {
                    state = is_script ? ESCAPED : DOUBLE;
                    p++;
                }
            }
            continue;
        }
    }
    return n;
}

/* Comment start state onwards, from just after "<!--": returns the position
 * after the '>' that ends the comment, or SCAN_EOF. */
static size_t
skip_comment(const unsigned char *s, size_t n, size_t p)
{
    if (p < n && s[p] == '>') {
        return p + 1; /* <!--> */
    }
    if (n - p >= 2 && s[p] == '-' && s[p + 1] == '>') {
        return p + 2; /* <!---> */
    }
    /* Otherwise the comment end and comment end bang states end it at the
     * first "-->" or "--!>" (the less-than sign states change only the
     * comment's text). */
    while (p < n) {
        const unsigned char *dash = memchr(s + p, '-', n - p);
        if (dash == NULL) {
            break;
        }
        p = (size_t)(dash - s);
        if (n - p >= 3 && s[p + 1] == '-') {
            if (s[p + 2] == '>') {
                return p + 3;
            }
            if (n - p >= 4 && s[p + 2] == '!' && s[p + 3] == '>') {
                return p + 4;
            }
        }
        p++;
    }
    return SCAN_EOF;
}

/* Bogus comment state (and every DOCTYPE state): up to the first '>'. */
static size_t
skip_to_gt(const unsigned char *s, size_t n, size_t p)
{
    const unsigned char *gt = p < n ? memchr(s + p, '>', n - p) : NULL;
    return gt ? (size_t)(gt - s) + 1 : SCAN_EOF;
}

static int
scan_html(const unsigned char *s, size_t n, parpy_links *out)
{
    size_t p = 0;
    while (p < n) {
        /* Data state. */
        const unsigned char *lt = memchr(s + p, '<', n - p);
        if (lt == NULL) {
            break;
        }
        p = (size_t)(lt - s) + 1;
        if (p >= n) {
            break;
        }
        /* Tag open state. */
        unsigned char c = s[p];
        int tag = -1, end_tag = -1;
        if (is_alpha(c)) {
            p = scan_tag(s, n, p, 0, out, &tag);
        }
        else if (c == '/') {
            /* End tag open state. */
            if (p + 1 >= n) {
                break;
            }
            if (is_alpha(s[p + 1])) {
                p = scan_tag(s, n, p + 1, 1, out, &end_tag);
            }
            else if (s[p + 1] == '>') {
                p += 2; /* "</>" is nothing */
            }
            else {
                p = skip_to_gt(s, n, p + 1);
            }
        }
        else if (c == '!') {
            /* Markup declaration open state: "<!--" opens a comment; DOCTYPE,
             * "[CDATA[" (in HTML content) and anything else end at the first '>'. */
            if (n - p >= 3 && s[p + 1] == '-' && s[p + 2] == '-') {
                p = skip_comment(s, n, p + 3);
            }
            else {
                p = skip_to_gt(s, n, p + 1);
            }
        }
        else if (c == '?') {
            p = skip_to_gt(s, n, p); /* bogus comment */
        }
        /* Anything else: the '<' was text; reconsume c in the data state. */
        if (p == SCAN_NOMEM) {
            return -1;
        }
        if (p == SCAN_EOF || tag < 0) {
            continue; /* SCAN_EOF > n ends the loop */
        }
        /* The tree builder switches the tokenizer's state after these start
         * tags; their text ends at the appropriate end tag, which the data
         * state then tokenizes as a tag. */
        switch (known_tags[tag].kind) {
        case TAG_SCRIPT:
            p = find_script_end(s, n, p);
            break;
        case TAG_RAWTEXT:
        case TAG_RCDATA:
            p = find_end_tag(s, n, p, known_tags[tag].name, known_tags[tag].len);
            break;
        case TAG_PLAINTEXT:
            return 0;
        default:
            break;
        }
    }
    return 0;
}

/* ---- regex mode --------------------------------------------------------------
 *
 * re.findall(r'<a\s(?:.*?\s)*?href=[\'"](.*?)[\'"].*?>', text) without the
 * backtracking. A match starts at s with text[s:s+2] == "<a" and text[s+2]
 * whitespace. The lazy (?:.*?\s)*? walks from whitespace to the next
 * whitespace (a newline is taken as an iteration's \s), so "href=" is tried at
 * every p >= s+3 whose previous character is whitespace, in increasing order.
 * Candidate p succeeds iff text[p:p+5] == "href=", text[p+5] is a quote, the
 * first quote (either kind) after p+5 comes before the next newline, and a '>'
 * follows it on that line; the capture ends at that quote and the match at that
 * '>'. Success does not depend on s, so if no candidate after s succeeds, no
 * later s can match either. The positions looked up only grow, so each lookup
 * below resumes where the previous one stopped: linear time.
 */

/* Byte length of the whitespace character (Python's str.isspace) at s[p], or
 * 0. Matching whole UTF-8 sequences is exact: they start with a byte that no
 * decoder takes as part of an earlier (valid or invalid) sequence. */
static size_t
py_space(const unsigned char *s, size_t n, size_t p)
{
    unsigned char c = s[p];
    if (c < 0x80) {
        return (c >= 9 && c <= 13) || (c >= 28 && c <= 32);
    }
    if (c == 0xC2) { /* U+0085, U+00A0 */
        return n - p >= 2 && (s[p + 1] == 0x85 || s[p + 1] == 0xA0) ? 2 : 0;
    }
    if (n - p < 3) {
        return 0;
    }
    unsigned char b = s[p + 1], d = s[p + 2];
    if (c == 0xE1) { /* U+1680 */
        return b == 0x9A && d == 0x80 ? 3 : 0;
    }
    if (c == 0xE2) { /* U+2000-U+200A, U+2028, U+2029, U+202F, U+205F */
        return (b == 0x80 && ((d >= 0x80 && d <= 0x8A) || d == 0xA8 || d == 0xA9 || d == 0xAF)) ||
                       (b == 0x81 && d == 0x9F)
                   ? 3
                   : 0;
    }
    if (c == 0xE3) { /* U+3000 */
        return b == 0x80 && d == 0x80 ? 3 : 0;
    }
    return 0;
}

/* 1 if the character that ends at s[p - 1] (p >= 1) is whitespace: the same
 * byte patterns, read backwards (none of them contains an ASCII byte). */
static int
py_space_before(const unsigned char *s, size_t p)
{
    unsigned char c = s[p - 1];
    if (c < 0x80) {
        return (c >= 9 && c <= 13) || (c >= 28 && c <= 32);
    }
    if (p >= 2 && s[p - 2] == 0xC2 && (c == 0x85 || c == 0xA0)) {
        return 1;
    }
    return p >= 3 && py_space(s, p, p - 3) == 3;
}

/* The first position >= from holding byte a, byte b or '\n' (or n). Remembers
 * its last answer: queries must not go backwards. */
typedef struct {
    size_t from, at;
    unsigned char a, b;
} finder;

static size_t
find_next(finder *f, const unsigned char *s, size_t n, size_t from)
{
    if (from >= f->from && from <= f->at) {
        return f->at;
    }
    size_t p = from;
    while (p < n && s[p] != f->a && s[p] != f->b && s[p] != '\n') {
        p++;
    }
    f->from = from;
    f->at = p;
    return p;
}

static int
scan_regex(const unsigned char *s, size_t n, parpy_links *out)
{
    /* from > at: nothing remembered yet. */
    finder quote = {1, 0, '"', '\''}, gt = {1, 0, '>', '>'};
    size_t i = 0;
    while (i < n) {
        const unsigned char *lt = memchr(s + i, '<', n - i);
        if (lt == NULL) {
            return 0;
        }
        size_t start = (size_t)(lt - s), w;
        if (n - start < 3 || s[start + 1] != 'a' || (w = py_space(s, n, start + 2)) == 0) {
            i = start + 1;
            continue;
        }
        /* Candidates p after whitespace, from s+3 on. */
        size_t p = start + 2 + w;
        for (;; p++) {
            const unsigned char *h = memchr(s + p, 'h', n - p);
            if (h == NULL || n - (size_t)(h - s) < 6) {
                return 0; /* no candidate left: no later match either */
            }
            p = (size_t)(h - s);
            if (memcmp(s + p, "href=", 5) == 0 && (s[p + 5] == '"' || s[p + 5] == '\'') &&
                py_space_before(s, p)) {
                size_t e = find_next(&quote, s, n, p + 6);
                if (e < n && s[e] != '\n') {
                    size_t g = find_next(&gt, s, n, e + 1);
                    if (g < n && s[g] == '>') {
                        if (put(out, s + p + 6, e - p - 6) || commit(out, 0, 0)) {
                            return -1;
                        }
                        i = g + 1;
                        break;
                    }
                }
            }
        }
    }
    return 0;
}

/* ---- entry points --------------------------------------------------------- */

int
parpy_links_scan(const unsigned char *html, size_t len, int mode, parpy_links *out)
{
    memset(out, 0, sizeof(*out));
    int rc = -2;
    if (mode == PARPY_LINKS_HTML) {
        rc = scan_html(html, len, out);
    }
    else if (mode == PARPY_LINKS_REGEX) {
        rc = scan_regex(html, len, out);
    }
    if (rc != 0) {
        parpy_links_free(out);
    }
    return rc;
}

void
parpy_links_free(parpy_links *out)
{
    free(out->data);
    free(out->ends);
    free(out->base);
    memset(out, 0, sizeof(*out));
}
