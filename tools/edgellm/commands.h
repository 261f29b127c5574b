/* Subcommands of the `edgellm` command. Each returns the process exit code (0 ok, 1 runtime failure,
 * 2 usage error) and prints its own one-line errors to stderr. */
#ifndef EDGELLM_CLI_COMMANDS_H
#define EDGELLM_CLI_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_recommend(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_redact(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_gateway(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_distill(int argc, char **argv);

#endif
