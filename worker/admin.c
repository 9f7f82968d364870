/* calllog-admin — placeholder until the worker issue lands (admin): parses settings and --help. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("calllog-admin %s\n", CALLLOG_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: calllog-admin [--env-file FILE]\n");
            return 0;
        }
    }
    fprintf(stderr, "calllog-admin: not built yet\n");
    return 1;
}
