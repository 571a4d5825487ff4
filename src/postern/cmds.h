/*
 * cmds.h - subcommands of the `postern` administration tool.
 * Each takes the arguments after its own name (argv[0] is the subcommand)
 * and returns the process exit status: 0 success, 1 usage or validation
 * error, 100 permanent failure, 111 temporary failure.
 */
#ifndef POSTERN_CMDS_H
#define POSTERN_CMDS_H

#include <stddef.h>

int cmd_version(int argc, char **argv);  /* main.c */
int cmd_check(int argc, char **argv);    /* cmd_check.c: validate the configuration */
int cmd_user(int argc, char **argv);     /* cmd_user.c: add|del|passwd|list */
int cmd_fetch(int argc, char **argv);    /* cmd_fetch.c: run fetchd --once */
int cmd_queue(int argc, char **argv);    /* cmd_queue.c: the outbound queue */
int cmd_config(int argc, char **argv);   /* cmd_config.c: get|set|unset one setting */
int cmd_firewall(int argc, char **argv); /* cmd_firewall.c: show|check|apply|blocked|env */
int cmd_secret(int argc, char **argv);   /* cmd_secret.c: set|list|fix secrets */
int cmd_alerts(int argc, char **argv);   /* cmd_alerts.c: show|check the alerts, mail admins */

/* The configuration file: arg when given, else $POSTERN_CONF, else
 * /data/etc/postern.conf (cmd_check.c). */
const char *postern_conf_path(const char *arg);

/* One line from stdin into buf without its line ending, with prompt and echo
 * off on a terminal (cmd_user.c). Returns 0, -1 at end of input, -2 when the
 * line is longer than the buffer. */
int read_hidden_line(const char *prompt, char *buf, size_t cap);

#endif
