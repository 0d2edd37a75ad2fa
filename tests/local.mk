# tests/: shell integration tests against real qemu-nbd, QEMU and libvirtd.
EXTRA_DIST += tests/functions.sh tests/run-one
