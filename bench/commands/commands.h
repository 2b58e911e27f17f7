/* commands.h: the subcommands of build/attnbench, each `int cmd_x(argc, argv)` returning the
 * process exit status (0 success, 1 a detected regression or failure, 2 a usage error). */
#ifndef BENCH_COMMANDS_H
#define BENCH_COMMANDS_H

int cmd_list(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_backward(int argc, char **argv);
int cmd_train_step(int argc, char **argv);
int cmd_capacity(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_sgemm(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_docs(int argc, char **argv);
int cmd_table(int argc, char **argv);

#endif
