# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # names without spaces; VM_DISKS etc. from the harness
# Qubes as the unit of backup and restore (issue 11), on real LVM with the qvm-* stand-ins
# of tests/standins (named as such: Qubes' tools cannot run here; with
# QVM_STANDIN_LVM=1 their qvm-create makes the qube's LVs in the real pool as qubesd's
# lvm_thin driver would). Three qubes: template `tpl` (root + private), AppVM `work` on it,
# standalone `vault` (root + private). Each is added by name, sent, changed, sent again;
# then:
#   * a running qube is refused (and nothing changes);
#   * `work` removed (qube and LV) and restored as of the first session: created from its
#     record (template, label, properties, features, tags, firewall) with its data;
#   * `vault` (halted, existing, its label changed since) restored as of the first
#     session: the record's label set again (shown as a step), each replaced LV kept as
#     <LV>.pre-restore-<time>, then put back by hand as the output says, and equal to
#     the second session;
#   * `tpl` restored --as a new name: a new template with the first session's data;
#   * send after the restore continues `work`'s chain;
#   * disaster recovery: dom0's metadata lost and two qubes gone: arch-recover into a new
#     meta dir, restore-qube --all --dry-run (changes nothing), restore-qube --all.
# Every volume is compared by sha256 with its state at the session restored.
# vm-disks: 2
set -- $VM_DISKS
VG=qubes_dom0 POOL=vm-pool
make_pool $VG $POOL 64k 1G "$1"
archive_disk "$2"

mkdir -p /tmp/standins && cp /share/standins/* /tmp/standins/
export PATH=/tmp/standins:$PATH QVM_STANDIN_STATE=/tmp/qstate QVM_STANDIN_LVM=1 QVM_STANDIN_SIZE=$((16 * MiB))
export SPARSEBAK_QUBES_XML=$QVM_STANDIN_STATE/qubes.xml # kept by the stand-ins
mkdir -p $QVM_STANDIN_STATE
make-qube --pool vm-pool lvm_thin $VG $POOL
qstate() { cat "$QVM_STANDIN_STATE/qubes/$1/$2"; }

log "== three qubes (qvm-create stand-in: real LVs)"
run qvm-create --class TemplateVM --label black tpl
run qvm-create --class AppVM --label red --template tpl work
run qvm-create --class StandaloneVM --label green vault
run qvm-prefs work kernelopts 'nopat $(touch /tmp/pwned)'
run qvm-features work service.cups 1
run qvm-tags work add project-x
run qvm-firewall work add action=accept dsthost=10.0.0.1 proto=tcp dstports=443-443
run qvm-firewall work add action=drop
run qvm-firewall work del --rule-no 0
LVS="vm-tpl-root vm-tpl-private vm-work-private vm-vault-root vm-vault-private"
for lv in $LVS; do write_rand /dev/$VG/$lv 0 $((2 * MiB)); done
echo Running >$QVM_STANDIN_STATE/qubes/work/state    # sent while it runs: as of its LV

arch_init $VG/$POOL q
for q in tpl work vault; do sb_ok add --qube $q; done
assert_contains "$SB_OUT" "qube.$(qstate vault uuid).root" "add --qube vault names its root volume by uuid"
sha_all() { for lv in $LVS; do printf '%s %s\n' $lv "$(sha256sum </dev/$VG/$lv | cut -d' ' -f1)"; done; }

log "== send 1, change, send 2"
sb_ok send
sha_all >/tmp/sha1
S1=$(sessions work | tail -n 1 | cut -d' ' -f1)
sb_ok list
assert_contains "$SB_OUT" "Qubes:" "list shows the qubes"
sleep 1
for lv in $LVS; do write_rand /dev/$VG/$lv $((4 * MiB)) $((64 * KiB)); done
sb_ok send
sha_all >/tmp/sha2
assert_eq 2 "$(session_count work)" "work: two settings sessions"
want() { awk -v l=$2 '$1 == l {print $2}' /tmp/sha$1; }
got() { sha256sum </dev/$VG/$1 | cut -d' ' -f1; }

log "== a running qube is refused"
sb_fails 1 "qube work is running" restore-qube work
assert_eq "$(want 2 vm-work-private)" "$(got vm-work-private)" "refused: work unchanged"
echo Halted >$QVM_STANDIN_STATE/qubes/work/state

log "== work removed (qube and LV), restored as of session 1"
rm -rf $QVM_STANDIN_STATE/qubes/work
run lvremove -q -f $VG/vm-work-private
sb_ok restore-qube work --session=${S1#S_}
assert_contains "$SB_OUT" "create AppVM work (label red, template tpl)" "work created from its record"
assert_eq "$(want 1 vm-work-private)" "$(got vm-work-private)" "work private = session 1"
assert_contains "$(cat $QVM_STANDIN_STATE/qubes/work/prefs)" 'nopat $(touch /tmp/pwned)' "property restored verbatim"
assert_fails test -e /tmp/pwned
assert_eq "action=accept dsthost=10.0.0.1 proto=tcp dstports=443-443
action=drop" "$(qstate work firewall)" "firewall restored"
assert_contains "$(qstate work tags)" project-x "tags restored"
assert_contains "$(qstate work features)" service.cups "features restored"

log "== vault (halted, existing) restored as of session 1, then put back"
run qvm-prefs vault label orange # changed since: its record's label comes back
sb_ok restore-qube vault --session=${S1#S_}
assert_eq "green" "$(awk -F '\t' '$1 == "label" {print $2}' $QVM_STANDIN_STATE/qubes/vault/prefs)" "vault's label is its record's again"
assert_contains "$SB_OUT" 'set vault property label = "green"' "the settings change is shown"
for lv in vm-vault-root vm-vault-private; do
  assert_eq "$(want 1 $lv)" "$(got $lv)" "$lv = session 1"
  kept=$(lv_names $VG | grep "^$lv\.pre-restore-")
  assert_eq "$(want 2 $lv)" "$(sha256sum </dev/$VG/$kept | cut -d' ' -f1)" "$kept holds the replaced state"
  assert_contains "$SB_OUT" "lvrename $VG $kept $lv" "the output says how to go back"
  run lvremove -q -f $VG/$lv
  run lvrename -q $VG $kept $lv
  assert_eq "$(want 2 $lv)" "$(got $lv)" "$lv back to session 2"
done

log "== tpl restored as tpl-old (session 1)"
sb_ok restore-qube tpl --as=tpl-old --session=${S1#S_}
assert_eq "$(want 1 vm-tpl-root)" "$(got vm-tpl-old-root)" "tpl-old root = tpl root at session 1"
assert_eq "$(want 1 vm-tpl-private)" "$(got vm-tpl-old-private)" "tpl-old private = session 1"
assert_eq "$(want 2 vm-tpl-root)" "$(got vm-tpl-root)" "tpl untouched"

log "== send continues the restored work's chain; every session restores"
sb_ok send work
id=$(SPARSEBAK_META_DIR=$META sparsebak list --json | jq -r '.[] | select(.qube == "work" and .qube_volume == "private") | .volume')
assert_eq 3 "$(session_count $id)" "work private: a third session after the restore"
n=0
for s in $(sessions $id | cut -d' ' -f1); do
  n=$((n + 1))
  case $n in 1) w=$(want 1 vm-work-private) ;; 2) w=$(want 2 vm-work-private) ;; 3) w=$(want 1 vm-work-private) ;; esac
  sz=$(sessions $id | sed -n "${n}p" | cut -d' ' -f2)
  restore_check $VG $id $s $w $sz
done

log "== disaster recovery: dom0's metadata lost, arch-recover, restore-qube --all"
rm -rf $QVM_STANDIN_STATE/qubes/work $QVM_STANDIN_STATE/qubes/vault
run lvremove -q -f $VG/vm-work-private $VG/vm-vault-root $VG/vm-vault-private
META=/tmp/meta-recovered
sb_ok arch-recover --dest=internal:/mnt/bk --subdir=q --source=$VG/$POOL
sb_ok restore-qube --all --dry-run
assert_contains "$SB_OUT" "create StandaloneVM vault (label green)" "dry run: vault would be created"
assert_eq "" "$(lv_names $VG | grep -x vm-work-private || true)" "dry run changed nothing"
sb_ok restore-qube --all
assert_eq "$(want 1 vm-work-private)" "$(got vm-work-private)" "work = its latest session (the restored state sent again)"
for lv in vm-vault-root vm-vault-private vm-tpl-root vm-tpl-private; do
  assert_eq "$(want 2 $lv)" "$(got $lv)" "$lv = its latest session"
done
assert_eq "green" "$(awk -F '\t' '$1 == "label" {print $2}' $QVM_STANDIN_STATE/qubes/vault/prefs)" "vault recreated with its label"
