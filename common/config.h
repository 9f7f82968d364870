/* config — settings read from the environment, optionally completed by an env file.
 *
 * Every setting is an environment variable (design §2). `config_load_env_file` adds the
 * variables of a KEY=VALUE file that the environment does not already set, so an explicit
 * environment always wins. The typed getters validate and, on a bad value, fill a
 * calllog_error (error.h, CALLLOG_INVALID) with one line naming the setting; programs print it and
 * exit.
 *
 * Every setting NAME may instead come from a file named by NAME_FILE (Docker and
 * Kubernetes secrets): when NAME is unset or empty and NAME_FILE is set, the file is read
 * once and its contents, one trailing newline removed, are NAME's value. Setting both,
 * or naming a file that cannot be read or is empty (or over 64 KiB), is an error naming
 * NAME_FILE: the getters below report it for NAME, config_str then gives the default, and
 * config_check reports it for every setting read so far. */
#ifndef CALLLOG_CONFIG_H
#define CALLLOG_CONFIG_H

#include <stddef.h>

#include "common/error.h"

/* Adds the settings of `path` (KEY=VALUE lines, `#` comments, optional quotes and
 * `export `) to the environment without overriding variables already set.
 * Returns 0, or -1 with `err` filled. */
int config_load_env_file(const char *path, calllog_error *err);

/* The setting's value (from NAME, or from the file NAME_FILE names), or `def` when it is
 * unset or empty, or when NAME_FILE cannot be used (config_check says why). Never NULL
 * unless def is. The pointer stays valid for the process lifetime. */
const char *config_str(const char *name, const char *def);

/* Returns -1 with `err` filled ("setting RDSTATION_TOKEN_FILE: cannot read /run/...: No
 * such file or directory", "settings X and X_FILE are both set: ...") when a NAME_FILE of
 * any setting read so far could not be used; 0 when none. Call it after reading every
 * setting, so that a broken file behind a setting with a default is not silently
 * replaced by the default. */
int config_check(calllog_error *err);

/* As config_str, but an unset or empty setting is an error. */
int config_require(const char *name, const char **out, calllog_error *err);

/* Checks that every setting of the NULL-terminated `names` is set, so that a first start
 * names everything missing at once ("settings A, B are required but not set"). Returns
 * 0, or -1 with `err` filled. */
int config_require_all(const char *const *names, calllog_error *err);

/* Integer in [min, max]; `def` when unset. Returns 0, or -1 with `err` filled. */
int config_long(const char *name, long def, long min, long max, long *out, calllog_error *err);

/* Boolean: 1/0, true/false, yes/no, on/off; `def` when unset. */
int config_bool(const char *name, int def, int *out, calllog_error *err);

/* "host:port" (host may be empty or "*" for all addresses, or [v6]); `def` when unset.
 * Writes the host (possibly "") and port. */
int config_listen(const char *name, const char *def, char *host, size_t hostlen, int *port,
                  calllog_error *err);

/* One of the NULL-terminated `choices`; `def` when unset. Writes the index. */
int config_choice(const char *name, const char *def, const char *const *choices, int *out,
                  calllog_error *err);

/* A public base URL, required: http(s)://host[:port][/prefix] without query, fragment
 * or blanks, written into `out` without trailing slashes (so base + "/path" is a URL).
 * Returns 0, or -1 with `err` filled (missing, malformed, or longer than `outlen` - 1). */
int config_base_url(const char *name, char *out, size_t outlen, calllog_error *err);

/* Fills `err` with "setting NAME is malformed: <detail>". Returns -1 for tail calls. */
int config_fail(calllog_error *err, const char *name, const char *detail);

#endif
