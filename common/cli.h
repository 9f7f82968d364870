/* cli — the start-up every program shares: --help, --version, --env-file, logging.
 *
 * Each program calls cli_start first. It handles the common options, loads the env file,
 * configures logging from LOG_LEVEL/LOG_FORMAT, and prints the one-line refusal that
 * design §2 asks for when something is wrong. */
#ifndef CALLLOG_CLI_H
#define CALLLOG_CLI_H

#define CLI_RUN (-1) /* go on: the settings are in the environment */

/* `usage` is the text printed for --help (after "usage: "). Options other than the common
 * ones are left for the program in `*rest_argc` / `rest_argv` (which must hold argc
 * entries); pass NULL to refuse any other option. Returns CLI_RUN to go on, or the status
 * to exit with: 0 after --help/--version, 2 after a reported bad option or env file. */
int cli_start(int argc, char **argv, const char *program, const char *usage, int *rest_argc,
              char **rest_argv);

/* Prints "<program>: <message>" on stderr; for refusals before logging is configured. */
void cli_fail(const char *program, const char *message);

#endif
