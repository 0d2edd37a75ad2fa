#!/bin/bash
# test-libvirt.sh - the vendor flow: libvirt pull-mode backups of a running
# domain with checkpoints, backed up by pullback.  This is the README's
# worked libvirt example (keep the two the same in substance).
#
#   virsh backup-begin DOM backup.xml checkpoint-cp1.xml   (pull mode, full)
#   pullback backup --disk vda=EXPORT --checkpoint cp1
#   virsh domjobabort DOM                                  (ends the pull job)
#   ... guest writes ...
#   virsh backup-begin DOM backup-inc.xml checkpoint-cp2.xml  (<incremental>cp1</incremental>)
#   pullback backup --since cp1 --bitmap vda=backup-vda --checkpoint cp2
#   virsh domjobabort DOM
#
# Proves: pullback reads libvirt's exports (names from virsh backup-dumpxml),
# guest writes during a backup do not leak into it, the incremental reads
# only what the guest dirtied since cp1 (writes during backup 1 included),
# and both points restore to exactly the point-in-time content (pattern
# checks, and compared with a copy of each export taken while it was up).
# Needs root; starts virtlogd + libvirtd by PID if none answers; always
# destroys and undefines its domain.
source "$(dirname "$0")/functions.sh"
requires_root
requires virsh qemu-system-x86_64 qemu-img qemu-io nbdcopy python3 /usr/sbin/libvirtd /usr/sbin/virtlogd

DOM=pullback-test-$$ # unique: several checkouts may run this test at once
LV=$T/lv # images, scratch files and the NBD socket, reachable by libvirt's QEMU
mkdir -p "$LV"
chmod 1777 "$LV"
IMG=$LV/disk.qcow2 REPO=$T/repo SOCK=$LV/nbd.sock SIZE=$((1 * G))
QLOG=/var/log/libvirt/qemu/$DOM.log

backup_xml() { # [CHECKPOINT]: pull-mode backup, incremental since CHECKPOINT if given
  echo "<domainbackup mode='pull'>"
  if [ -n "${1:-}" ]; then echo "  <incremental>$1</incremental>"; fi
  cat <<EOF
  <server transport='unix' socket='$SOCK'/>
  <disks>
    <disk name='vda' backup='yes' type='file'>
      <scratch file='$LV/scratch-vda.qcow2'/>
    </disk>
  </disks>
</domainbackup>
EOF
}
checkpoint_xml() {
  printf "<domaincheckpoint>\n  <name>%s</name>\n  <disks>\n    <disk name='vda' checkpoint='bitmap'/>\n  </disks>\n</domaincheckpoint>\n" "$1"
}
dumpxml_attr() { virsh backup-dumpxml "$DOM" | sed -n "s/.* $1='\([^']*\)'.*/\1/p" | head -n 1; }

# end_job: domjobabort returns before the job has ended; wait for it.
end_job() {
  virsh domjobabort "$DOM"
  wait_for 30 "the backup job of $DOM to end" \
    bash -c "virsh domjobinfo $DOM --completed --keep-completed | grep -q 'Job type: *Completed'"
  wait_for 10 "libvirt to remove the scratch file and socket" \
    bash -c "! [ -e '$LV/scratch-vda.qcow2' ] && ! [ -e '$SOCK' ]"
}

# gwrite 'qemu-io command'...: guest writes through the virtio device; their
# output lands (asynchronously, via virtlogd) in the domain log.
wrote_more_than() { [ "$(grep -c '^wrote' "$QLOG")" -gt "$1" ]; }
gwrite() {
  local c n
  for c in "$@"; do
    n=$(grep -c '^wrote' "$QLOG" || true)
    virsh qemu-monitor-command "$DOM" --hmp "qemu-io -d virtio-disk0/virtio-backend \"$c\"" >/dev/null
    wait_for 10 "guest write '$c' in $QLOG" wrote_more_than "$n"
  done
}

step "libvirtd"
start_libvirt
virsh version | grep -E 'library|hypervisor'
drop_domain "$DOM" # left over from an interrupted run
cleanup_fn drop_domain "$DOM"

step "1 GiB qcow2 with data (0x11 at 0+8M, 0x12 at 512M+1M), domain $DOM (no guest OS)"
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qio "$IMG" qcow2 "write -P 0x11 0 $((8 * M))" "write -P 0x12 $((512 * M)) $((1 * M))"
TYPE=kvm
[ -e /dev/kvm ] || TYPE=qemu
cat >"$T/domain.xml" <<EOF
<domain type='$TYPE'>
  <name>$DOM</name>
  <memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$IMG'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
virsh -q define "$T/domain.xml"
virsh -q start "$DOM"
pullback init --repo "$REPO"

step "backup 1: virsh backup-begin (pull, full, checkpoint cp1) -> pullback backup --checkpoint cp1"
backup_xml >"$T/backup-full.xml"
checkpoint_xml cp1 >"$T/checkpoint-cp1.xml"
virsh backup-begin "$DOM" "$T/backup-full.xml" "$T/checkpoint-cp1.xml"
EXPORT=$(dumpxml_attr exportname)
URI="nbd+unix:///$EXPORT?socket=$SOCK"
note "export $URI"
DURING=("write -P 0xab $((1 * M)) $((64 * K))" "write -P 0xac $((900 * M)) $((64 * K))")
gwrite "${DURING[@]}" # the guest keeps writing during the backup
pullback backup --repo "$REPO" --vm "$DOM" --disk "vda=$URI" --checkpoint cp1 --json >"$T/b1.json"
cat "$T/b1.json"
nbdcopy "$URI" "$T/pit1.raw"
end_job
P1=$(json_get "$T/b1.json" .point)
[ "$(json_get "$T/b1.json" .mode)" = full ] || fail "backup 1 mode"

step "guest writes after backup 1 (two unaligned to the 64 KiB bitmap granularity)"
AFTER=("write -P 0xc1 $((4 * M)) $((1 * M))" "write -P 0xc2 $((300 * M)) $((128 * K))"
       "write -P 0xc3 $((700 * M + 4 * K)) $((8 * K))" "write -P 0xc4 $((800 * M - 512)) 1024")
gwrite "${AFTER[@]}"

step "backup 2: virsh backup-begin (<incremental>cp1</incremental>, checkpoint cp2) -> pullback --since cp1"
backup_xml cp1 >"$T/backup-inc.xml"
checkpoint_xml cp2 >"$T/checkpoint-cp2.xml"
virsh backup-begin "$DOM" "$T/backup-inc.xml" "$T/checkpoint-cp2.xml"
EXPORT=$(dumpxml_attr exportname)
BITMAP=$(dumpxml_attr exportbitmap)
URI="nbd+unix:///$EXPORT?socket=$SOCK"
note "export $URI, bitmap $BITMAP"
[ "$BITMAP" = backup-vda ] || fail "export bitmap '$BITMAP'"
gwrite "write -P 0xdd $((4 * M)) $((64 * K))" # during backup 2: not in point 2
pullback backup --repo "$REPO" --vm "$DOM" --disk "vda=$URI" \
  --since cp1 --bitmap "vda=$BITMAP" --checkpoint cp2 --json >"$T/b2.json"
cat "$T/b2.json"
nbdcopy "$URI" "$T/pit2.raw"
end_job
virsh checkpoint-list "$DOM" --tree
[ "$(virsh checkpoint-list "$DOM" --name | sed '/^$/d' | sort | tr '\n' ' ')" = "cp1 cp2 " ] || fail "checkpoints"

P2=$(json_get "$T/b2.json" .point)
[ "$(json_get "$T/b2.json" .mode)" = incremental ] || fail "backup 2 mode"
[ "$(json_get "$T/b2.json" .parent)" = "$P1" ] || fail "backup 2 parent"
CS=$(pullback show --repo "$REPO" --point "$P2" --json >"$T/s2.json" && json_get "$T/s2.json" .disks[0].chunk_size)
DIRTY=$(chunks_touched "$CS" "${DURING[@]}" "${AFTER[@]}")
R=$(json_get "$T/b2.json" .disks[0].chunks_read) KEPT=$(json_get "$T/b2.json" .disks[0].chunks_kept)
TOTAL=$(json_get "$T/b2.json" .disks[0].chunks_total)
note "dirty chunks since cp1: $DIRTY; read $R, kept $KEPT of $TOTAL"
[ "$KEPT" = $((TOTAL - DIRTY)) ] || fail "incremental kept $KEPT chunks; the guest dirtied $DIRTY of $TOTAL since cp1"
[ "$R" -le "$DIRTY" ] || fail "incremental read $R chunks; the guest dirtied $DIRTY"
[ "$(json_get "$T/b2.json" .disks[0].bytes_read)" -le $((DIRTY * CS)) ] || fail "incremental read too much"

step "restore both points and check the point-in-time content"
check_restore "$REPO" "$P1" "$DOM" vda "$T/pit1.raw"
check_restore "$REPO" "$P2" "$DOM" vda "$T/pit2.raw"
check_patterns "$T/restore-$DOM-vda-$P1.raw" raw "0x11 0 $((8 * M))" "0x12 $((512 * M)) $((1 * M))" \
  "0 $((900 * M)) $((64 * K))"
check_patterns "$T/restore-$DOM-vda-$P2.raw" raw "0x11 0 $((1 * M))" "0xab $((1 * M)) $((64 * K))" \
  "0xc1 $((4 * M)) $((1 * M))" "0x11 $((5 * M)) $((3 * M))" "0xc2 $((300 * M)) $((128 * K))" \
  "0xc3 $((700 * M + 4 * K)) $((8 * K))" "0xc4 $((800 * M - 512)) 1024" "0xac $((900 * M)) $((64 * K))" \
  "0x12 $((512 * M)) $((1 * M))" "0 $((700 * M)) $((4 * K))"
pullback verify --repo "$REPO"
echo PASS
