/* scratch_dir — throwaway directories for the suites that need files (spools, sockets).
 *
 * A suite makes one under /tmp with a name saying whose it is, and removes it with
 * whatever the code under test left inside (the spool's data, offset and lock files),
 * so no test leaves files behind or needs to know another module's file names. */
#ifndef CALLLOG_TEST_SCRATCH_DIR_H
#define CALLLOG_TEST_SCRATCH_DIR_H

#include <stddef.h>

/* Creates /tmp/calllog-test-<name>-XXXXXX and writes its path into `out`. Returns 0, or
 * -1 when it cannot (the path does not fit, or mkdtemp failed). */
int scratch_dir_make(char *out, size_t outlen, const char *name);

/* Removes the regular files directly inside `dir`, then `dir` itself. Harmless when
 * `dir` is empty ("") or already gone. */
void scratch_dir_remove(const char *dir);

#endif
