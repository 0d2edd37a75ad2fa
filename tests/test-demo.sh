#!/bin/bash
# test-demo.sh - the README's demo (tests/demo.sh, also run by setup.sh)
# works: it exits 0, reports identical digests for the source, the point
# and both restored images, and leaves no server running.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd python3 tar

step "run tests/demo.sh"
bash "$abs_top_srcdir/tests/demo.sh" 2>&1 | tee "$T/demo.out"
grep -q '^DEMO OK' "$T/demo.out" || fail "demo did not report DEMO OK"
[ "$(grep -c 'digest of restored' "$T/demo.out")" = 2 ] || fail "demo did not compare both restored images"
[ "$(grep -c 'identical$' "$T/demo.out")" = 2 ] || fail "demo did not run qemu-img compare on both images"
grep -q 'MB/s' "$T/demo.out" || fail "demo printed no throughput"
[ ! -e "$abs_top_builddir/tests/demo.tmp" ] || fail "demo left its work directory behind"
if pgrep -f "qemu-nbd.*$abs_top_builddir/tests/demo.tmp" >/dev/null; then fail "demo left a qemu-nbd running"; fi
echo PASS
