/* config_file.c — the INI file of --config (see config.h): read through
 * libinih, each key set by tf_config_set as its flag would be. */
#include "proxy/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The INI file goes through libinih line by line from this reader, which
 * numbers the lines and strips their leading whitespace: libinih would take
 * an indented line for the continuation of the value above (its multiline
 * option), where uWSGI and Python's configparser read a key. A comment is a
 * whole line, as there: libinih's builds cut a value at " ;" (an inline
 * comment), so the reader hands it every `;` of a key line as PROTECTED_SEMI
 * and on_ini_line turns them back. libinih cuts lines at INI_MAX_LINE - 1
 * characters, so a longer one stops the reading with an error rather than
 * being split into two wrong lines; so do a NUL byte (libinih would read
 * the line's end there) and a read error (a folder given as the file). */
#define PROTECTED_SEMI '\x1f'

struct ini_state {
    struct tf_config *cfg;
    FILE *file;
    int line;                   /* the line being read, from 1 */
    int too_long;               /* the first line past the limit; 0 = none */
    int bad_byte;               /* the first line with a NUL (or PROTECTED_SEMI); 0 = none */
    int read_errno;             /* reading failed: why */
    int bad_line;               /* the line err is about; 0 = none */
    char err[512];
    struct {                    /* the one-value keys set so far, and where */
        const char *name;
        int line;
    } set[128];
    size_t n_set;
};

/* A one-value key given twice is an error, as in configparser: the file
 * means one of them, and which one a reader takes is a guess. */
static bool given_twice(struct ini_state *st, const char *name, char *why, size_t cap)
{
    bool repeatable = true;
    const char *own = tf_config_key_name(name, &repeatable);
    if (!own || repeatable)
        return false;
    for (size_t i = 0; i < st->n_set; i++)
        if (st->set[i].name == own) {
            snprintf(why, cap, "%s: given twice (first on line %d): keep one", own,
                     st->set[i].line);
            return true;
        }
    if (st->n_set < sizeof(st->set) / sizeof(st->set[0]))
        st->set[st->n_set++].name = own, st->set[st->n_set - 1].line = st->line;
    return false;
}

static char *read_ini_line(char *str, int num, void *stream)
{
    struct ini_state *st = stream;
    size_t n = 0;
    int c = 0;
    bool bad_byte = false;
    errno = 0;
    while (n + 1 < (size_t)num && (c = getc(st->file)) != EOF) {
        bad_byte |= c == 0 || c == PROTECTED_SEMI;
        str[n++] = (char)c;
        if (c == '\n')
            break;
    }
    if (n == 0) {
        if (ferror(st->file))
            st->read_errno = errno ? errno : EIO;
        return NULL;
    }
    str[n] = 0;
    st->line++;
    if (bad_byte) {
        st->bad_byte = st->line;
        return NULL;
    }
    if (n == (size_t)num - 1 && str[n - 1] != '\n') { /* full: is the line's end next? */
        c = getc(st->file);
        if (c == '\r')
            c = getc(st->file);
        if (c != '\n' && c != EOF) {
            st->too_long = st->line;
            return NULL;
        }
    }
    size_t lead = st->line == 1 && !strncmp(str, "\xEF\xBB\xBF", 3) ? 3 : 0; /* a BOM */
    lead += strspn(str + lead, " \t");
    memmove(str, str + lead, n - lead + 1);
    if (str[0] != ';' && str[0] != '#')
        for (char *semi = strchr(str, ';'); semi; semi = strchr(semi + 1, ';'))
            *semi = PROTECTED_SEMI;
    return str;
}

/* s with its PROTECTED_SEMI bytes back to `;`, in buf (as long as a line). */
static const char *unprotect(const char *s, char *buf, size_t size)
{
    if (!strchr(s, PROTECTED_SEMI))
        return s;
    snprintf(buf, size, "%s", s);
    for (char *p = buf; (p = strchr(p, PROTECTED_SEMI)); p++)
        *p = ';';
    return buf;
}

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
    struct ini_state *st = user;
    char why[400] = "", name_buf[INI_MAX_LINE], value_buf[INI_MAX_LINE];
    char section_buf[INI_MAX_LINE];
    section = unprotect(section, section_buf, sizeof(section_buf));
    name = unprotect(name, name_buf, sizeof(name_buf));
    value = unprotect(value, value_buf, sizeof(value_buf));
    if (name != name_buf) /* keys in any case, as configparser's */
        name = strcpy(name_buf, name);
    for (char *c = name_buf; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (section[0] && strcmp(section, "tracfront") != 0)
        snprintf(why, sizeof(why), "unknown section [%s] (use [tracfront])", section);
    else if (!given_twice(st, name, why, sizeof(why)) &&
             tf_config_set(st->cfg, name, value, why, sizeof(why)) == 0)
        return 1;
    if (!st->bad_line) { /* libinih goes on after an error and reports the first */
        st->bad_line = st->line;
        snprintf(st->err, sizeof(st->err), "%s", why);
    }
    return 0;
}

int tf_config_load_file(struct tf_config *cfg, const char *path, char *err, size_t errlen)
{
    struct ini_state st = { .cfg = cfg, .file = fopen(path, "re") };
    if (!st.file) {
        snprintf(err, errlen, "--config: cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(read_ini_line, &st, on_ini_line, &st);
    fclose(st.file);
    if (st.read_errno) { /* a folder opens, and its first read fails */
        snprintf(err, errlen, "--config %s: cannot read: %s", path, strerror(st.read_errno));
        return -1;
    }
    int stop = st.too_long ? st.too_long : st.bad_byte; /* where reading stopped, if early */
    if (rc != 0 && (!stop || rc < stop)) {
        snprintf(err, errlen, "--config %s, line %d: %s", path, rc,
                 rc == st.bad_line ? st.err : "not KEY = VALUE");
        return -1;
    }
    if (st.bad_byte) {
        snprintf(err, errlen, "--config %s, line %d: holds a NUL or 0x1f byte (control "
                 "characters of a binary file, never of a setting)", path, st.bad_byte);
        return -1;
    }
    if (st.too_long) {
        snprintf(err, errlen, "--config %s, line %d: longer than %d characters, which the INI "
                 "reader (libinih) cannot take; give that value on the command line",
                 path, st.too_long, INI_MAX_LINE - 1);
        return -1;
    }
    return 0;
}
