/* json_text — JSON written straight into a buffer, for the hot paths that would otherwise
 * build a jansson tree only to serialise it (see json_text.h). */
#include "common/json_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at `p` (1–4), or 0 when it is not valid. */
static size_t utf8_sequence(const unsigned char *p)
{
    size_t n = p[0] < 0x80             ? 1
               : (p[0] & 0xE0) == 0xC0 ? 2
               : (p[0] & 0xF0) == 0xE0 ? 3
               : (p[0] & 0xF8) == 0xF0 ? 4
                                       : 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    }
    if ((n == 2 && p[0] < 0xC2) || (n == 3 && p[0] == 0xE0 && p[1] < 0xA0) ||
        (n == 3 && p[0] == 0xED && p[1] >= 0xA0) || (n == 4 && p[0] == 0xF0 && p[1] < 0x90) ||
        (n == 4 && p[0] > 0xF4) || (n == 4 && p[0] == 0xF4 && p[1] >= 0x90))
        return 0; /* overlong forms, surrogates, beyond U+10FFFF */
    return n;
}

/* Writes the JSON escape of a quote, backslash or control character `c` ("\n",
 * "\u001f", ...) at `o`; returns its length (at most 6). */
static size_t json_escape(unsigned char c, char *o)
{
    static const char hex[] = "0123456789abcdef";
    char letter = c == '"'    ? '"'
                  : c == '\\' ? '\\'
                  : c == '\b' ? 'b'
                  : c == '\t' ? 't'
                  : c == '\n' ? 'n'
                  : c == '\f' ? 'f'
                  : c == '\r' ? 'r'
                              : 0;
    o[0] = '\\';
    if (letter) {
        o[1] = letter;
        return 2;
    }
    memcpy(o + 1, "u00", 3);
    o[4] = hex[c >> 4];
    o[5] = hex[c & 15];
    return 6;
}

/* Copies the character at `*p` to `o`, valid UTF-8 as is and a stray byte as U+FFFD,
 * advances `*p` past it, and returns the bytes written (at most 4). */
static size_t copy_utf8_char(const unsigned char **p, char *o)
{
    size_t n = utf8_sequence(*p);
    if (n == 0) {
        memcpy(o, "\xEF\xBF\xBD", 3); /* U+FFFD for the stray byte */
        *p += 1;
        return 3;
    }
    memcpy(o, *p, n);
    *p += n;
    return n;
}

/* Appends `s` as a JSON string; see the header. Room for the worst case (six bytes per
 * input byte) is reserved once, then filled. */
void json_text_string(buffer *b, const char *s)
{
    char *o = buffer_reserve(b, 6 * strlen(s) + 2), *start = o;
    if (o == NULL)
        return; /* the buffer keeps the error */
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            *o++ = (char)*p++;
        else if (*p < 0x80)
            o += json_escape(*p++, o);
        else
            o += copy_utf8_char(&p, o);
    }
    *o++ = '"';
    buffer_commit(b, (size_t)(o - start));
}

/* Appends `"name":` (a comma first unless `*first`, which it clears). */
void json_text_key(buffer *b, int *first, const char *name)
{
    if (!*first)
        buffer_add(b, ",", 1);
    *first = 0;
    json_text_string(b, name);
    buffer_add(b, ":", 1);
}

/* A repaired copy of `s`; see the header. */
char *json_text_utf8_copy(const char *s)
{
    char *copy = malloc(3 * strlen(s) + 1), *o = copy;
    if (copy == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;)
        o += copy_utf8_char(&p, o);
    *o = '\0';
    return copy;
}
