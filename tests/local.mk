# tests/: shell integration tests against real qemu-nbd, nbdkit, QEMU and
# libvirtd.  Each runs through tests/run-one (LOG_COMPILER) and sources
# tests/functions.sh; see README.md for what each one proves.
TESTS += \
	tests/test-offline-chain.sh \
	tests/test-live-qemu.sh \
	tests/test-libvirt.sh \
	tests/test-dedup.sh \
	tests/test-resize.sh \
	tests/test-bad-input.sh \
	tests/test-faults.sh \
	tests/test-inflight.sh \
	tests/test-multiconn.sh \
	tests/test-corruption.sh \
	tests/test-no-allocation.sh \
	tests/test-demo.sh \
	tests/test-blockdev.sh \
	tests/test-multidisk.sh \
	tests/test-forget.sh \
	tests/test-concurrent.sh \
	tests/test-space-bad-input.sh \
	tests/test-upgrade.sh \
	tests/test-encrypt.sh \
	tests/test-tls.sh \
	tests/test-rebuild.sh \
	tests/test-crash.sh

EXTRA_DIST += \
	tests/functions.sh tests/run-one tests/qmp.py tests/demo.sh \
	tests/test-offline-chain.sh \
	tests/test-live-qemu.sh \
	tests/test-libvirt.sh \
	tests/test-dedup.sh \
	tests/test-resize.sh \
	tests/test-bad-input.sh \
	tests/test-faults.sh \
	tests/test-inflight.sh \
	tests/test-multiconn.sh \
	tests/test-corruption.sh \
	tests/test-no-allocation.sh \
	tests/test-demo.sh \
	tests/test-blockdev.sh \
	tests/test-multidisk.sh \
	tests/test-forget.sh \
	tests/test-concurrent.sh \
	tests/test-space-bad-input.sh \
	tests/test-upgrade.sh tests/test-encrypt.sh tests/test-tls.sh tests/test-rebuild.sh tests/test-crash.sh tests/data/v1-repo.tar.gz tests/data/make-v1-repo.sh \
	setup.sh .ci/run README.md

# Scratch directories of failed tests (kept for inspection).
clean-local: clean-tests-tmp
clean-tests-tmp:
	-rm -rf $(builddir)/tests/*.tmp
.PHONY: clean-tests-tmp
