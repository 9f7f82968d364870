/* cli — common option handling and start-up for the three programs (see cli.h). */
#include "common/cli.h"

#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"

void cli_fail(const char *program, const char *message)
{
    fprintf(stderr, "%s: %s\n", program, message);
}

/* Loads the env file named by an --env-file option, if any. */
static int load_env_file_option(const char *program, const char *path)
{
    calllog_error err;
    if (config_load_env_file(path, &err) != 0) {
        cli_fail(program, err.message);
        return -1;
    }
    return 0;
}

/* Configures logging from LOG_LEVEL and LOG_FORMAT. */
static int configure_logging(const char *program)
{
    const char *level = config_str("LOG_LEVEL", "info");
    const char *format = config_str("LOG_FORMAT", "json");
    if (log_configure(program, level, format) != 0) {
        cli_fail(program, "setting LOG_LEVEL or LOG_FORMAT is malformed: expected "
                          "LOG_LEVEL=debug|info|warn|error and LOG_FORMAT=json|text");
        return -1;
    }
    return 0;
}

int cli_start(int argc, char **argv, const char *program, const char *usage, int *rest_argc,
              char **rest_argv)
{
    const char *env_file = NULL;
    if (rest_argc)
        *rest_argc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s\n", usage);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", program, CALLLOG_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--env-file") == 0 && i + 1 < argc) {
            env_file = argv[++i];
        } else if (strncmp(argv[i], "--env-file=", 11) == 0) {
            env_file = argv[i] + 11;
        } else if (rest_argc) {
            rest_argv[(*rest_argc)++] = argv[i];
        } else {
            fprintf(stderr, "%s: unknown option %s (try --help)\n", program, argv[i]);
            return 2;
        }
    }
    if (env_file && load_env_file_option(program, env_file) != 0)
        return 2;
    return configure_logging(program) == 0 ? CLI_RUN : 2;
}
