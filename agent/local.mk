# agent/: the pullback program, a thin command layer over libpullback.
bin_PROGRAMS += pullback
pullback_SOURCES = \
	agent/main.c agent/agent.h \
	agent/options.c agent/output.c agent/progress.c \
	agent/cmd-init.c agent/cmd-backup.c agent/cmd-list.c \
	agent/cmd-restore.c agent/cmd-verify.c agent/cmd-digest.c \
	agent/cmd-forget.c agent/cmd-gc.c agent/cmd-key.c agent/key.c \
	agent/cmd-catalog.c
pullback_LDADD = libpullback.la
