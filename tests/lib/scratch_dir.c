/* scratch_dir — throwaway test directories (see scratch_dir.h). */
#include "tests/lib/scratch_dir.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Makes the directory; see the header. */
int scratch_dir_make(char *out, size_t outlen, const char *name)
{
    int n = snprintf(out, outlen, "/tmp/calllog-test-%s-XXXXXX", name);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return mkdtemp(out) ? 0 : -1;
}

/* Removes the directory and its files; see the header. */
void scratch_dir_remove(const char *dir)
{
    if (dir == NULL || dir[0] == '\0')
        return;
    DIR *d = opendir(dir);
    if (d != NULL) {
        char path[4096];
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < sizeof path)
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}
